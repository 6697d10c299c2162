package cli

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"howett.net/plist"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/keychain"
	"github.com/certagent/certagent/trust/trusttest"
)

type mdmProfile struct {
	PayloadIdentifier   string `plist:"PayloadIdentifier"`
	PayloadOrganization string `plist:"PayloadOrganization"`
	PayloadScope        string `plist:"PayloadScope"`
	PayloadContent      []struct {
		PayloadType    string `plist:"PayloadType"`
		PayloadUUID    string `plist:"PayloadUUID"`
		PayloadContent []byte `plist:"PayloadContent"`
	} `plist:"PayloadContent"`
}

// payloadFPs parses a profile and returns the fingerprints of its root
// payloads.
func payloadFPs(t *testing.T, data []byte) (mdmProfile, []trust.Fingerprint) {
	t.Helper()
	var p mdmProfile
	_, err := plist.Unmarshal(data, &p)
	require.NoError(t, err)
	var fps []trust.Fingerprint
	for _, pl := range p.PayloadContent {
		require.Equal(t, keychain.RootPayloadType, pl.PayloadType)
		fp := trust.FingerprintOf(pl.PayloadContent)
		assert.Equal(t, keychain.PayloadUUID(fp), pl.PayloadUUID)
		fps = append(fps, fp)
	}
	return p, fps
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, data, 0o600))
	return p
}

func TestMDMProfileFromPEM(t *testing.T) {
	dir := t.TempDir()
	a, b := trusttest.NewCA(t), trusttest.NewCA(t)
	bundle := writeFile(t, dir, "roots.pem", append(a.PEM(), b.PEM()...))
	out := filepath.Join(dir, "roots.mobileconfig")

	require.Equal(t, exitOK, cmdMDMProfile([]string{"--from", bundle, "--org", "Example Corp", "-o", out}))
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	p, fps := payloadFPs(t, data)
	assert.Equal(t, "System", p.PayloadScope)
	assert.Equal(t, "Example Corp", p.PayloadOrganization)
	assert.ElementsMatch(t, []trust.Fingerprint{a.FP, b.FP}, fps)
}

func TestMDMProfileRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	good := trusttest.NewCA(t)
	tests := []struct {
		name string
		pem  []byte
	}{
		{"expired root", append(good.PEM(), trusttest.NewCA(t, trusttest.Expired()).PEM()...)},
		{"not a CA", append(good.PEM(), good.Issue(t).PEM()...)},
		{"SHA-1 signed", trusttest.NewCA(t, trusttest.WithSHA1()).PEM()},
		{"no certificate", []byte("hello\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, tt.name+".mobileconfig")
			in := writeFile(t, dir, tt.name+".pem", tt.pem)
			assert.Equal(t, exitFailed, cmdMDMProfile([]string{"--from", in, "-o", out}))
			_, err := os.Stat(out)
			assert.True(t, os.IsNotExist(err), "nothing is written")
		})
	}
	assert.Equal(t, exitConfig, cmdMDMProfile([]string{"--sign-cert", "x.pem"}), "--sign-cert needs --sign-key")
	assert.Equal(t, exitConfig, cmdMDMProfile([]string{"extra"}))
}

func TestMDMProfileFromLedger(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	require.NoError(t, os.MkdirAll(state, 0o700))
	t.Setenv("CERTAGENT_CONFIG", filepath.Join(dir, "config.json"))
	t.Setenv("CERTAGENT_MANAGED", filepath.Join(dir, "managed.json"))
	t.Setenv("CERTAGENT_STATE_DIR", state)

	installed, leaving := trusttest.NewCA(t), trusttest.NewCA(t)
	l := agent.NewLedger()
	now := time.Now().UTC().Truncate(time.Second)
	for _, c := range []struct {
		ca    *trusttest.CA
		state agent.EntryState
	}{{installed, agent.StateInstalled}, {leaving, agent.StateRemoving}} {
		l.Entries = append(l.Entries, agent.LedgerEntry{
			LedgerKey: agent.LedgerKey{Store: "system", FP: c.ca.FP},
			Subject:   c.ca.Subject(), NotAfter: c.ca.X509.NotAfter, State: c.state, Since: now,
		})
		l.Certs[c.ca.FP] = agent.LedgerCert{Subject: c.ca.Subject(), NotAfter: c.ca.X509.NotAfter, PEM: string(c.ca.PEM())}
	}
	require.NoError(t, l.Save(filepath.Join(state, "ledger.json")))

	out := filepath.Join(dir, "roots.mobileconfig")
	require.Equal(t, exitOK, cmdMDMProfile([]string{"-o", out}))
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	_, fps := payloadFPs(t, data)
	assert.Equal(t, []trust.Fingerprint{installed.FP}, fps, "roots being removed are left out")

	// An empty ledger is an error, with a hint.
	require.NoError(t, agent.NewLedger().Save(filepath.Join(state, "ledger.json")))
	assert.Equal(t, exitFailed, cmdMDMProfile([]string{"-o", filepath.Join(dir, "empty.mobileconfig")}))
}

func TestMDMProfileSigned(t *testing.T) {
	dir := t.TempDir()
	root := trusttest.NewCA(t, trusttest.WithCommonName("Signing Root"))
	inter := root.Issue(t, trusttest.AsCA())
	signer := inter.Issue(t, trusttest.WithCommonName("profiles.example.com"))
	keyDER, err := x509.MarshalPKCS8PrivateKey(signer.Key)
	require.NoError(t, err)
	certs := writeFile(t, dir, "signer.pem", append(signer.PEM(), inter.PEM()...))
	key := writeFile(t, dir, "signer.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	ca := trusttest.NewCA(t)
	bundle := writeFile(t, dir, "roots.pem", ca.PEM())
	out := filepath.Join(dir, "signed.mobileconfig")

	require.Equal(t, exitOK, cmdMDMProfile([]string{"--from", bundle, "--sign-cert", certs, "--sign-key", key, "-o", out}))
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	p7, err := pkcs7.Parse(data)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(root.X509)
	require.NoError(t, p7.VerifyWithChain(pool))
	_, fps := payloadFPs(t, p7.Content)
	assert.Equal(t, []trust.Fingerprint{ca.FP}, fps)

	// A key that does not belong to the certificate is refused.
	otherDER, err := x509.MarshalPKCS8PrivateKey(trusttest.NewCA(t).Key)
	require.NoError(t, err)
	wrong := writeFile(t, dir, "wrong.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: otherDER}))
	out2 := filepath.Join(dir, "wrong.mobileconfig")
	assert.Equal(t, exitFailed, cmdMDMProfile([]string{"--from", bundle, "--sign-cert", certs, "--sign-key", wrong, "-o", out2}))
	_, err = os.Stat(out2)
	assert.True(t, os.IsNotExist(err))
	assert.False(t, bytes.Contains(data, []byte("PRIVATE KEY")))
}
