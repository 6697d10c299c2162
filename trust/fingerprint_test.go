package trust_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

// retired is the old Cloudflare for Teams ECC root, as DESIGN.md §6.3 gives it.
const retired = "F5:E1:56:C4:89:78:77:AD:79:3A:1E:83:FA:77:83:F1:9C:B0:C6:1B:58:2C:2F:50:11:B3:37:72:7C:62:3D:EF"

func TestParseFingerprint(t *testing.T) {
	want := trust.MustFingerprint(retired)
	hexLower := strings.ToLower(strings.ReplaceAll(retired, ":", ""))
	// E9:…:AB:00:31 spelled "AB:0:31", as in a Cloudflare docs example.
	withZero := "E9:19:49:AA:DD:D8:1E:C1:20:2A:D8:22:BF:A5:F8:FC:1A:F7:10:9F:C7:5B:69:AB:00:31:91:8B:61:B4:BF:1C"
	unpadded := strings.Replace(withZero, ":00:", ":0:", 1)
	tests := []struct {
		name    string
		in      string
		want    string // colon form; "" when an error is expected
		wantErr string
	}{
		{"colon upper", retired, retired, ""},
		{"colon lower", strings.ToLower(retired), retired, ""},
		{"plain hex lower", hexLower, retired, ""},
		{"plain hex upper", strings.ToUpper(hexLower), retired, ""},
		{"space separated", strings.ReplaceAll(retired, ":", " "), retired, ""},
		{"surrounding whitespace", "  " + retired + "\n", retired, ""},
		{"unpadded byte", unpadded, withZero, ""},
		{"all unpadded", strings.TrimSuffix(strings.Repeat("0:", 32), ":"), strings.TrimSuffix(strings.Repeat("00:", 32), ":"), ""},
		{"empty", "", "", "0 characters"},
		{"short hex", hexLower[:62], "", "62 characters"},
		{"long hex", hexLower + "00", "", "66 characters"},
		{"31 bytes", retired[:len(retired)-3], "", "31 bytes"},
		{"33 bytes", retired + ":00", "", "33 bytes"},
		{"three digit byte", strings.Replace(retired, "F5:", "F55:", 1), "", "byte 0"},
		{"non-hex in colon form", strings.Replace(retired, "F5:", "G5:", 1), "", "byte 0"},
		{"non-hex plain", "z" + hexLower[1:], "", "invalid byte"},
		{"SHA-1 length", "BB:2D:B6:3D:6B:DE:DA:06:4E:CA:CB:40:F6:F2:61:40:B7:10:F0:6C", "", "20 bytes"},
		{"0x prefix", "0x" + hexLower[2:], "", "invalid byte"},
		{"sign in byte", strings.Replace(retired, "F5:", "+5:", 1), "", "byte 0"},
		{"unicode digits", strings.Replace(hexLower, "5", "٥", 1), "", "characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := trust.ParseFingerprint(tt.in)
			if tt.wantErr != "" {
				require.ErrorIs(t, err, trust.ErrBadFingerprint)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.True(t, got.IsZero(), "a failed parse returns the zero fingerprint")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got.String())
		})
	}
	assert.Equal(t, want.Hex(), hexLower)
}

func TestFingerprintForms(t *testing.T) {
	ca := trusttest.NewCA(t)
	fp := ca.FP
	assert.Len(t, fp.String(), 95)
	assert.Equal(t, strings.ToUpper(fp.String()), fp.String())
	assert.Len(t, fp.Hex(), 64)
	assert.Equal(t, fp.Hex()[:16], fp.Short())
	assert.False(t, fp.IsZero())
	assert.True(t, trust.Fingerprint{}.IsZero())
	for _, s := range []string{fp.String(), fp.Hex()} {
		back, err := trust.ParseFingerprint(s)
		require.NoError(t, err)
		assert.Equal(t, fp, back)
	}

	// JSON uses the colon form and reads every form back.
	b, err := json.Marshal(struct{ FP trust.Fingerprint }{fp})
	require.NoError(t, err)
	assert.JSONEq(t, `{"FP":"`+fp.String()+`"}`, string(b))
	var v struct{ FP trust.Fingerprint }
	require.NoError(t, json.Unmarshal([]byte(`{"FP":"`+fp.Hex()+`"}`), &v))
	assert.Equal(t, fp, v.FP)
	assert.Error(t, json.Unmarshal([]byte(`{"FP":"nope"}`), &v))

	assert.Panics(t, func() { trust.MustFingerprint("nope") })
}

func TestParsePEM(t *testing.T) {
	a, b := trusttest.NewCA(t), trusttest.NewCA(t)
	key := a.KeyPEM()
	tests := []struct {
		name    string
		in      []byte
		want    int
		wantErr error
	}{
		{"one", a.PEM(), 1, nil},
		{"two", append(a.PEM(), b.PEM()...), 2, nil},
		{"text around", []byte("subject=CN x\n" + string(a.PEM()) + "trailer\n"), 1, nil},
		{"key skipped", append(append([]byte(nil), key...), a.PEM()...), 1, nil},
		{"only a key", key, 0, trust.ErrNoCertificate},
		{"empty", nil, 0, trust.ErrNoCertificate},
		{"DER is not PEM", a.X509.Raw, 0, trust.ErrNoCertificate},
		{"CRLF", []byte(strings.ReplaceAll(string(a.PEM()), "\n", "\r\n")), 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := trust.ParsePEM(tt.in)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Len(t, got, tt.want)
			assert.Equal(t, a.FP, got[0].FP)
		})
	}
	bad := []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	_, err := trust.ParsePEM(append(a.PEM(), bad...))
	assert.ErrorContains(t, err, "certificate 2")

	_, err = trust.ParseOnePEM(append(a.PEM(), b.PEM()...))
	assert.ErrorContains(t, err, "found 2")
	one, err := trust.ParseOnePEM(a.PEM())
	require.NoError(t, err)
	assert.Equal(t, a.PEM(), one.PEM())
	assert.Equal(t, a.X509.Subject.CommonName, one.Subject())
}

func FuzzParseFingerprint(f *testing.F) {
	for _, s := range []string{
		retired, strings.ToLower(retired), strings.ReplaceAll(retired, ":", ""),
		strings.ReplaceAll(retired, ":", " "), "AB:0:31", "", ":::::", strings.Repeat("0:", 32),
		strings.Repeat("a", 64), strings.Repeat("é", 32),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fp, err := trust.ParseFingerprint(s)
		if err != nil {
			if !fp.IsZero() {
				t.Fatalf("%q: error %v but fingerprint %s", s, err, fp)
			}
			return
		}
		for _, form := range []string{fp.String(), fp.Hex(), strings.ToLower(fp.String())} {
			back, err := trust.ParseFingerprint(form)
			if err != nil || back != fp {
				t.Fatalf("%q parsed to %s, whose form %q reads back as %s, %v", s, fp, form, back, err)
			}
		}
	})
}
