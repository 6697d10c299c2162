package dir

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/internal/nstest"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

// TestOpenSSLCApath uses the folder the way OpenSSL-based tools do
// (SSL_CERT_DIR, curl --capath): hashed links from `openssl rehash`, then
// `openssl verify -CApath`. The links do not confuse List.
func TestOpenSSLCApath(t *testing.T) {
	openssl := nstest.Tool(t, "/usr/bin/openssl", "openssl")
	d := t.TempDir()
	s := New(d)
	ca, other := trusttest.NewCA(t), trusttest.NewCA(t)
	leafPEM := filepath.Join(t.TempDir(), "leaf.pem")
	require.NoError(t, os.WriteFile(leafPEM, ca.Issue(t).PEM(), 0o644))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a guard, not an assertion
	defer cancel()
	run := func(args ...string) (string, int) {
		out, err := exec.CommandContext(ctx, openssl, args...).CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		require.NoError(t, err)
		return string(out), 0
	}

	requireOK(t, apply(t, s, install(ca), install(other)))
	out, code := run("rehash", d)
	require.Equal(t, 0, code, "openssl rehash: %s", out)
	out, code = run("verify", "-CApath", d, leafPEM)
	require.Equal(t, 0, code, "openssl verify: %s", out)
	assert.True(t, strings.HasSuffix(strings.TrimSpace(out), ": OK"), out)
	assert.Len(t, entries(t, s), 2, "hash links are not extra roots")

	requireOK(t, apply(t, s, remove(ca.FP)))
	_, code = run("rehash", d)
	require.Equal(t, 0, code)
	_, code = run("verify", "-CApath", d, leafPEM)
	assert.NotEqual(t, 0, code, "a removed root still verifies")
	got := entries(t, s)
	assert.Len(t, got, 1)
	assert.Contains(t, got, other.FP)
	var _ trust.Store = s
}
