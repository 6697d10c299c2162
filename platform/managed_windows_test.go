package platform

import (
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/windows/registry"
)

// requirePolicyKey creates HKLM\SOFTWARE\Policies\certagent for the test and
// deletes it afterwards; it needs an administrator (Wine's default user is
// one). The key must not exist already: a machine's real policy is not ours
// to overwrite.
func requirePolicyKey(t *testing.T) registry.Key {
	t.Helper()
	if k, err := registry.OpenKey(registry.LOCAL_MACHINE, policyKeyPath, registry.QUERY_VALUE); err == nil {
		k.Close()
		t.Fatalf("%s exists on this machine; the test will not overwrite a real policy", ManagedRegistryKey)
	}
	k, _, err := registry.CreateKey(registry.LOCAL_MACHINE, policyKeyPath, registry.ALL_ACCESS)
	if errors.Is(err, registry.ErrNotExist) || errors.Is(err, os.ErrPermission) || err != nil && os.Getenv("CERTAGENT_E2E") != "1" {
		t.Skipf("cannot create %s (needs an administrator): %v", ManagedRegistryKey, err)
	}
	require.NoError(t, err, "create %s", ManagedRegistryKey)
	t.Cleanup(func() {
		k.Close()
		if err := registry.DeleteKey(registry.LOCAL_MACHINE, policyKeyPath); err != nil {
			t.Errorf("delete %s: %v", ManagedRegistryKey, err)
		}
	})
	return k
}

// The policy key as Group Policy, Intune or the MSI writes it, read back
// through the real registry: every value type the agent accepts.
func TestManagedFromRegistryKey(t *testing.T) {
	m, err := ReadManaged(Paths{})
	require.NoError(t, err)
	assert.Empty(t, m.Settings, "no policy key: nothing managed")

	k := requirePolicyKey(t)
	require.NoError(t, k.SetStringValue("Control_Plane_URL", "https://cp.example.test/client/v4"))
	require.NoError(t, k.SetExpandStringValue("api_token_file", `%SystemRoot%\certagent-token`))
	require.NoError(t, k.SetDWordValue("remove_retired", 0))
	require.NoError(t, k.SetQWordValue("poll_interval", 90))
	require.NoError(t, k.SetStringsValue("stores", []string{"system", `bundle:C:\ProgramData\certagent\roots.pem`}))

	m, err = ReadManaged(Paths{})
	require.NoError(t, err)
	assert.Equal(t, ManagedRegistryKey, m.Source)
	got := map[string]any{}
	for name, raw := range m.Settings {
		var v any
		require.NoError(t, json.Unmarshal(raw, &v), name)
		got[name] = v
	}
	root := os.Getenv("SystemRoot")
	require.NotEmpty(t, root)
	assert.Equal(t, map[string]any{
		"control_plane_url": "https://cp.example.test/client/v4",
		"api_token_file":    root + `\certagent-token`,
		"remove_retired":    float64(0),
		"poll_interval":     float64(90),
		"stores":            []any{"system", `bundle:C:\ProgramData\certagent\roots.pem`},
	}, got)

	// Two values whose names differ only in case are one setting twice.
	require.NoError(t, k.SetStringValue("STORES", "nss"))
	_, err = ReadManaged(Paths{})
	if err == nil {
		// The registry itself folds case: the second write replaced the
		// first, which must then read back as the plain string.
		m, err = ReadManaged(Paths{})
		require.NoError(t, err)
		assert.JSONEq(t, `"nss"`, string(m.Settings["stores"]))
	}
}
