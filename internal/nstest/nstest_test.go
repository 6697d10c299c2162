package nstest

import (
	"bytes"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/trust/trusttest"
)

func TestMain(m *testing.M) { Main(m, Config{}) }

// TestIsolationIsReal writes into every private directory and checks through
// the host's view (/proc/<host pid>/root) that nothing arrived there.
func TestIsolationIsReal(t *testing.T) {
	Require(t)
	for _, dir := range []string{"/etc/ssl/certs", "/usr/local/share/ca-certificates", "/etc/ca-certificates"} {
		t.Run(dir, func(t *testing.T) {
			if !IsPrivate(dir) {
				t.Fatalf("%s is not private", dir)
			}
			marker := filepath.Join(dir, "nstest-marker-"+filepath.Base(t.TempDir()))
			require.NoError(t, os.WriteFile(marker, []byte("x"), 0o644))
			t.Cleanup(func() { os.Remove(marker) })
			_, err := os.Stat(HostPath(marker))
			assert.True(t, os.IsNotExist(err), "host sees %s: %v", marker, err)
		})
	}
	hooks, err := os.ReadDir("/etc/ca-certificates/update.d")
	if err == nil {
		assert.Empty(t, hooks, "update.d hooks are not masked")
	}
}

func fileHash(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return sha256.Sum256(b)
}

// TestChecksFollowTheSystemStore proves the trust checks themselves: curl
// and a fresh Go process reject a test CA, trust it once it is in the
// (minimal, namespaced) Debian store, and reject it again after removal,
// while the host's bundle never changes.
func TestChecksFollowTheSystemStore(t *testing.T) {
	Require(t)
	MinimalDebianStore(t)
	hostBundle := fileHash(t, HostPath(DebianBundle))
	ca := trusttest.NewCA(t, trusttest.WithCommonName("nstest self-check CA"))
	srv := Serve(t, ca)
	assert.False(t, CurlTrusts(t, srv), "curl trusts the CA before install")
	assert.False(t, GoClientTrusts(t, srv), "go trusts the CA before install")

	anchor := filepath.Join(DebianAnchorDir, "nstest-selfcheck.crt")
	require.NoError(t, os.WriteFile(anchor, ca.PEM(), 0o644))
	update(t)
	assert.True(t, CurlTrusts(t, srv), "curl does not trust the installed CA")
	assert.True(t, GoClientTrusts(t, srv), "go does not trust the installed CA")
	assert.Equal(t, hostBundle, fileHash(t, HostPath(DebianBundle)), "the host's bundle changed")

	require.NoError(t, os.Remove(anchor))
	update(t, "--fresh")
	assert.False(t, CurlTrusts(t, srv), "curl trusts the CA after removal")
	assert.False(t, GoClientTrusts(t, srv), "go trusts the CA after removal")
}

func update(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(UpdateCACertificates, args...)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.False(t, bytes.Contains(out, []byte("E: ")), "hook errors: %s", out)
}
