package keychain

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/smallstep/pkcs7"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"howett.net/plist"

	"github.com/certagent/certagent/internal/testenv"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

var uuidRE = regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-5[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`)

func TestMobileConfig(t *testing.T) {
	cas := trusttest.NewCAs(t, 3)
	certs := []*trust.Cert{cas[2].Cert, cas[0].Cert, cas[1].Cert, cas[0].Cert} // a duplicate, out of order
	out, err := MobileConfig(certs, ProfileOptions{Organization: "Example Corp"})
	require.NoError(t, err)

	var p profile
	format, err := plist.Unmarshal(out, &p)
	require.NoError(t, err)
	assert.Equal(t, plist.XMLFormat, format)
	assert.Equal(t, "Configuration", p.PayloadType)
	assert.Equal(t, "System", p.PayloadScope)
	assert.Equal(t, DefaultProfileIdentifier, p.PayloadIdentifier)
	assert.Equal(t, "Example Corp", p.PayloadOrganization)
	assert.Equal(t, 1, p.PayloadVersion)
	assert.Regexp(t, uuidRE, p.PayloadUUID)

	require.Len(t, p.PayloadContent, 3, "one payload per distinct root")
	seen := map[trust.Fingerprint]bool{}
	uuids := map[string]bool{p.PayloadUUID: true}
	for _, pl := range p.PayloadContent {
		assert.Equal(t, RootPayloadType, pl.PayloadType)
		c, err := x509.ParseCertificate(pl.PayloadContent)
		require.NoError(t, err, "PayloadContent is the DER")
		fp := trust.FingerprintOf(c.Raw)
		seen[fp] = true
		assert.Equal(t, PayloadUUID(fp), pl.PayloadUUID)
		assert.Regexp(t, uuidRE, pl.PayloadUUID)
		assert.False(t, uuids[pl.PayloadUUID], "UUIDs are unique")
		uuids[pl.PayloadUUID] = true
		assert.Equal(t, DefaultProfileIdentifier+".root."+fp.Hex()[:16], pl.PayloadIdentifier)
		assert.Equal(t, c.Subject.CommonName, pl.PayloadDisplayName)
	}
	for _, ca := range cas {
		assert.True(t, seen[ca.FP])
	}

	// Stable: the same roots in another order give the same bytes.
	again, err := MobileConfig([]*trust.Cert{cas[1].Cert, cas[0].Cert, cas[2].Cert}, ProfileOptions{Organization: "Example Corp"})
	require.NoError(t, err)
	assert.Equal(t, out, again)

	// A different set is a different profile (same identifier, new UUID),
	// but the payload of a root kept keeps its UUID.
	fewer, err := MobileConfig([]*trust.Cert{cas[0].Cert}, ProfileOptions{})
	require.NoError(t, err)
	var q profile
	_, err = plist.Unmarshal(fewer, &q)
	require.NoError(t, err)
	assert.Equal(t, p.PayloadIdentifier, q.PayloadIdentifier)
	assert.NotEqual(t, p.PayloadUUID, q.PayloadUUID)
	assert.Equal(t, PayloadUUID(cas[0].FP), q.PayloadContent[0].PayloadUUID)
}

func TestMobileConfigRefuses(t *testing.T) {
	ca := trusttest.NewCA(t)
	leaf := ca.Issue(t)
	forged := &trust.Cert{X509: ca.X509, FP: trusttest.RandomFingerprint(t)}
	tests := []struct {
		name  string
		certs []*trust.Cert
		opts  ProfileOptions
		want  string
	}{
		{"nothing", nil, ProfileOptions{}, "no certificates"},
		{"a leaf", []*trust.Cert{leaf.Cert}, ProfileOptions{}, "not a CA"},
		{"nil", []*trust.Cert{nil}, ProfileOptions{}, "empty"},
		{"fingerprint mismatch", []*trust.Cert{forged}, ProfileOptions{}, "fingerprint"},
		{"bad identifier", []*trust.Cert{ca.Cert}, ProfileOptions{Identifier: "a b"}, "reverse-DNS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := MobileConfig(tt.certs, tt.opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestSignMobileConfig(t *testing.T) {
	signingRoot := trusttest.NewCA(t, trusttest.WithCommonName("Profile Signing Root"))
	inter := signingRoot.Issue(t, trusttest.AsCA(), trusttest.WithCommonName("Profile Signing Intermediate"))
	signer := inter.Issue(t, trusttest.WithCommonName("profiles.example.com"))
	roots := trusttest.NewCAs(t, 2)
	profileXML, err := MobileConfig([]*trust.Cert{roots[0].Cert, roots[1].Cert}, ProfileOptions{})
	require.NoError(t, err)

	signed, err := SignMobileConfig(profileXML, signer.X509, signer.Key, []*x509.Certificate{inter.X509})
	require.NoError(t, err)

	p7, err := pkcs7.Parse(signed)
	require.NoError(t, err)
	assert.Equal(t, profileXML, p7.Content, "the signed content is the profile, byte for byte")
	pool := x509.NewCertPool()
	pool.AddCert(signingRoot.X509)
	require.NoError(t, p7.VerifyWithChain(pool))

	// A tampered profile does not verify.
	tampered := bytes.Replace(signed, []byte("certagent inspection roots"), []byte("certagent inspection rootz"), 1)
	require.NotEqual(t, signed, tampered)
	if p, err := pkcs7.Parse(tampered); err == nil {
		assert.Error(t, p.VerifyWithChain(pool))
	}

	// openssl agrees.
	t.Run("openssl cms -verify", func(t *testing.T) {
		openssl := testenv.RequireTool(t, "openssl", "openssl")
		dir := t.TempDir()
		write := func(name string, data []byte) string {
			p := filepath.Join(dir, name)
			require.NoError(t, os.WriteFile(p, data, 0o600))
			return p
		}
		in := write("signed.mobileconfig", signed)
		ca := write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: signingRoot.X509.Raw}))
		outFile := filepath.Join(dir, "out.xml")
		cmd := exec.Command(openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", in, "-CAfile", ca, "-purpose", "any", "-out", outFile)
		msg, err := cmd.CombinedOutput()
		require.NoError(t, err, "openssl cms -verify: %s", msg)
		got, err := os.ReadFile(outFile)
		require.NoError(t, err)
		assert.Equal(t, profileXML, got)
	})
}

func BenchmarkMobileConfig(b *testing.B) {
	cas := trusttest.NewCAs(b, 15)
	certs := make([]*trust.Cert, len(cas))
	for i, c := range cas {
		certs[i] = c.Cert
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := MobileConfig(certs, ProfileOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
