package platform

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"howett.net/plist"
)

func jsonOf(t *testing.T, m map[string]json.RawMessage) map[string]string {
	t.Helper()
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

func TestDecodeManagedPlist(t *testing.T) {
	good := map[string]any{
		"control_plane_url":  "https://certplane.example.com/client/v4",
		"account_id":         "0123456789abcdef0123456789abcdef",
		"poll_interval":      120,
		"remove_retired":     false,
		"stores":             []string{"system", "bundle:/Library/certagent/bundle.pem"},
		"PayloadUUID":        "8B6C0E7E-0000-5000-8000-000000000000", // profile bookkeeping
		"PayloadDisplayName": "certagent settings",
	}
	want := map[string]string{
		"control_plane_url": `"https://certplane.example.com/client/v4"`,
		"account_id":        `"0123456789abcdef0123456789abcdef"`,
		"poll_interval":     `120`,
		"remove_retired":    `false`,
		"stores":            `["system","bundle:/Library/certagent/bundle.pem"]`,
	}
	for _, format := range []int{plist.XMLFormat, plist.BinaryFormat} {
		b, err := plist.Marshal(good, format)
		require.NoError(t, err)
		got, err := decodeManagedPlist(b)
		require.NoError(t, err, "format %d", format)
		assert.Equal(t, want, jsonOf(t, got), "format %d", format)
	}

	bad := []struct {
		name string
		v    any
		want string
	}{
		{"date", map[string]any{"poll_interval": time.Unix(0, 0)}, `"poll_interval": a date`},
		{"data", map[string]any{"api_token": []byte("secret")}, `"api_token": a data value`},
		{"dictionary", map[string]any{"stores": map[string]any{"a": "b"}}, "dictionary"},
		{"nested array", map[string]any{"stores": []any{[]any{"system"}}}, "nested arrays"},
		{"not a dictionary", []string{"system"}, "not a property list dictionary"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			b, err := plist.Marshal(tt.v, plist.XMLFormat)
			require.NoError(t, err)
			_, err = decodeManagedPlist(b)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	_, err := decodeManagedPlist([]byte("not a plist"))
	assert.Error(t, err)
}

func TestManagedFromRegistry(t *testing.T) {
	got, err := managedFromRegistry([]registryValue{
		{Name: "", Type: regSZ, String: "(Default) is ignored"},
		{Name: "Control_Plane_URL", Type: regSZ, String: "https://certplane.example.com/client/v4"},
		{Name: "api_token_file", Type: regExpandSZ, String: `C:\ProgramData\certagent\token`},
		{Name: "poll_interval", Type: regDWORD, Integer: 300},
		{Name: "remove_retired", Type: regDWORD, Integer: 0},
		{Name: "stores", Type: regMultiSZ, Strings: []string{"system", "", `bundle:C:\certagent\bundle.pem`}},
		{Name: "big", Type: regQWORD, Integer: 1 << 40},
	})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{
		"control_plane_url": `"https://certplane.example.com/client/v4"`,
		"api_token_file":    `"C:\\ProgramData\\certagent\\token"`,
		"poll_interval":     `300`,
		"remove_retired":    `0`,
		"stores":            `["system","bundle:C:\\certagent\\bundle.pem"]`,
		"big":               `1099511627776`,
	}, jsonOf(t, got))

	tests := []struct {
		name string
		vals []registryValue
		want string
	}{
		{"binary", []registryValue{{Name: "api_token", Type: regBinary}}, `value "api_token": registry type 3`},
		{"same name twice", []registryValue{{Name: "Stores", Type: regSZ}, {Name: "stores", Type: regSZ}}, "set twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := managedFromRegistry(tt.vals)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestReadManagedFile(t *testing.T) {
	dir := t.TempDir()
	m, err := readManagedFile(filepath.Join(dir, "missing.plist"))
	require.NoError(t, err)
	assert.Empty(t, m.Settings)

	pl := filepath.Join(dir, ManagedPreferenceDomain+".plist")
	b, err := plist.Marshal(map[string]any{"log_level": "debug"}, plist.BinaryFormat)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(pl, b, 0o644))
	m, err = readManagedFile(pl)
	require.NoError(t, err)
	assert.Equal(t, pl, m.Source)
	assert.Equal(t, map[string]string{"log_level": `"debug"`}, jsonOf(t, m.Settings))

	js := filepath.Join(dir, "managed.json")
	require.NoError(t, os.WriteFile(js, []byte(`{"log_level":"warn"}`), 0o644))
	m, err = readManagedFile(js)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"log_level": `"warn"`}, jsonOf(t, m.Settings))

	require.NoError(t, os.WriteFile(js, []byte(`["x"]`), 0o644))
	_, err = readManagedFile(js)
	assert.ErrorContains(t, err, "not a JSON object")
}

func FuzzDecodeManagedPlist(f *testing.F) {
	b, _ := plist.Marshal(map[string]any{"stores": []string{"system"}, "poll_interval": 60}, plist.BinaryFormat)
	f.Add(b)
	f.Add([]byte(`<plist><dict><key>a</key><string>b</string></dict></plist>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeManagedPlist(data)
		if err != nil {
			return
		}
		for k, v := range m {
			if !json.Valid(v) {
				t.Fatalf("key %q: got invalid JSON %q", k, v)
			}
		}
	})
}
