package keychain

import (
	"crypto/sha1"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/trust/trusttest"
)

func listing(t testing.TB, cas ...*trusttest.CA) string {
	var b strings.Builder
	for _, ca := range cas {
		fmt.Fprintf(&b, "SHA-256 hash: %X\nSHA-1 hash: %X\n", sha256Of(ca.X509.Raw), sha1.Sum(ca.X509.Raw))
		b.Write(ca.PEM())
	}
	return b.String()
}

func TestParseFindCertificate(t *testing.T) {
	a, b := trusttest.NewCA(t), trusttest.NewCA(t)
	good := listing(t, a, b)
	tests := []struct {
		name    string
		in      string
		want    int
		wantErr string
	}{
		{"empty", "", 0, ""},
		{"two", good, 2, ""},
		{"CRLF and indentation", strings.ReplaceAll(strings.ReplaceAll(good, "\n", "\r\n"), "SHA-1", "  SHA-1"), 2, ""},
		{"old tool without SHA-256 lines", "SHA-1 hash: " + fmt.Sprintf("%X", sha1.Sum(a.X509.Raw)) + "\n" + string(a.PEM()), 1, ""},
		{"PEM only", string(a.PEM()), 1, ""},
		{"lower-case hashes", strings.ToLower(listing(t, a)[:120]) + listing(t, a)[120:], 1, ""},
		{"noise lines are ignored", "keychain: \"/Library/Keychains/System.keychain\"\n" + good, 2, ""},
		{"wrong SHA-256", strings.Replace(good, "SHA-256 hash: ", "SHA-256 hash: 00", 1), 0, "SHA-256"},
		{"wrong SHA-1", strings.Replace(good, "SHA-1 hash: ", "SHA-1 hash: FF", 1), 0, "SHA-1"},
		{"truncated PEM", good[:len(good)-40], 0, "truncated"},
		{"garbage in PEM", "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n", 0, "certificate at line 1"},
		{"PEM that is not a certificate", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})), 0, "certificate at line 1"},
		{"very long line", strings.Repeat("A", 2<<20), 0, "token too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFindCertificate([]byte(tt.in))
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.True(t, errors.Is(err, ErrBadListing))
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Len(t, got, tt.want)
			for _, c := range got {
				assert.Equal(t, sha256Of(c.DER), [32]byte(c.FP), "the fingerprint is computed from the DER")
				assert.Equal(t, sha1.Sum(c.DER), c.SHA1)
			}
		})
	}
}

func TestParseTrustSettings(t *testing.T) {
	const head = `<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>trustList</key><dict>`
	const tail = `</dict><key>trustVersion</key><integer>1</integer></dict></plist>`
	entry := func(hash, settings string) string {
		return `<key>` + hash + `</key><dict><key>trustSettings</key><array>` + settings + `</array></dict>`
	}
	result := func(n int) string {
		return fmt.Sprintf(`<dict><key>kSecTrustSettingsResult</key><integer>%d</integer></dict>`, n)
	}
	tests := []struct {
		name    string
		in      string
		want    map[string]bool
		wantErr bool
	}{
		{"always trust (empty array)", head + entry("AA", "") + tail, map[string]bool{"AA": true}, false},
		{"trustRoot default (no result key)", head + entry("bb", `<dict><key>kSecTrustSettingsPolicyName</key><string>sslServer</string></dict>`) + tail, map[string]bool{"BB": true}, false},
		{"trustAsRoot", head + entry("CC", result(resultTrustAsRoot)) + tail, map[string]bool{"CC": true}, false},
		{"deny wins", head + entry("DD", result(resultTrustRoot)+result(resultDeny)) + tail, map[string]bool{"DD": false}, false},
		{"unspecified only", head + entry("EE", result(resultUnspecified)) + tail, map[string]bool{"EE": false}, false},
		{"no entries", head + tail, map[string]bool{}, false},
		{"not a plist", "hello", nil, true},
		{"wrong shape", `<plist version="1.0"><array><string>x</string></array></plist>`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseTrustSettings([]byte(tt.in))
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func FuzzParseFindCertificate(f *testing.F) {
	ca := trusttest.NewCA(f)
	f.Add([]byte(listing(f, ca)))
	f.Add([]byte("SHA-256 hash: \n-----BEGIN CERTIFICATE-----\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := parseFindCertificate(data)
		if err != nil {
			return
		}
		for _, c := range certs {
			if sha256Of(c.DER) != [32]byte(c.FP) || c.X509 == nil {
				t.Fatalf("got certificate with fingerprint %x not matching its DER", c.FP)
			}
		}
	})
}

func FuzzParseTrustSettings(f *testing.F) {
	f.Add([]byte(`<plist version="1.0"><dict><key>trustList</key><dict><key>AA</key><dict><key>trustSettings</key><array/></dict></dict></dict></plist>`))
	f.Add([]byte("bplist00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseTrustSettings(data) // must not panic
	})
}
