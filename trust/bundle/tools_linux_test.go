package bundle

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/internal/nstest"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

// TestRealDistroBundle builds a bundle from this machine's own CA bundle
// (read only): every distro root is copied, ours is added and Tagged.
func TestRealDistroBundle(t *testing.T) {
	s := New(filepath.Join(t.TempDir(), "bundle.pem"))
	src := s.SystemRootsFile()
	if src == "" {
		nstest.Skipf(t, "no distro CA bundle: install ca-certificates (scripts/install-deps.sh)")
	}
	distro, err := os.ReadFile(src)
	require.NoError(t, err)
	want := 0
	for rest := distro; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			want++
		}
	}
	require.NotZero(t, want)

	ca := trusttest.NewCA(t)
	requireOK(t, s.Apply(context.Background(), install(ca)))
	data, err := os.ReadFile(s.Path())
	require.NoError(t, err)
	certs, err := trust.ParsePEM(data)
	require.NoError(t, err)
	assert.Len(t, certs, want+1)
	inv, err := s.List(context.Background())
	require.NoError(t, err)
	tagged := 0
	for _, e := range inv.Entries {
		if e.Tagged {
			tagged++
			assert.Equal(t, ca.FP, e.FP)
		}
	}
	assert.Equal(t, 1, tagged)
}

// TestCurlAndOpenSSLTrustIt hands the bundle to the real tools people point
// at it: curl --cacert (like REQUESTS_CA_BUNDLE) and openssl verify.
func TestCurlAndOpenSSLTrustIt(t *testing.T) {
	curl := nstest.Tool(t, "/usr/bin/curl", "curl")
	openssl := nstest.Tool(t, "/usr/bin/openssl", "openssl")
	f := newFixture(t, 2)
	ca := trusttest.NewCA(t)
	leaf := ca.Issue(t)
	leafPEM := filepath.Join(t.TempDir(), "leaf.pem")
	require.NoError(t, os.WriteFile(leafPEM, leaf.PEM(), 0o644))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("trusted")) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate()}}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a guard, not an assertion
	defer cancel()
	run := func(name string, args ...string) (string, int) {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env = append(os.Environ(), "NO_PROXY=*", "no_proxy=*")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		require.NoError(t, err)
		return string(out), 0
	}

	requireOK(t, f.store.Apply(ctx, install(ca)))
	out, code := run(curl, "-sS", "--cacert", f.store.Path(), srv.URL)
	require.Equal(t, 0, code, "curl: %s", out)
	assert.Equal(t, "trusted", out)
	out, code = run(openssl, "verify", "-CAfile", f.store.Path(), leafPEM)
	require.Equal(t, 0, code, "openssl verify: %s", out)
	assert.True(t, bytes.Contains([]byte(out), []byte(": OK")), out)

	requireOK(t, f.store.Apply(ctx, remove(ca.FP)))
	out, code = run(curl, "-sS", "--cacert", f.store.Path(), srv.URL)
	assert.Equal(t, 60, code, "curl must refuse the removed root (exit 60): %s", out)
	_, code = run(openssl, "verify", "-CAfile", f.store.Path(), leafPEM)
	assert.NotEqual(t, 0, code)
}
