// Package demotest runs scripts/demo.sh (make demo) end to end, including
// on a machine slow enough that its servers take seconds to come up.
package demotest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/internal/testenv"
)

// slowOpenSSL stands in for openssl: s_server first does $S_SERVER_MODE
// (sleep N seconds then serve; "exit": die at once; "hang": never listen),
// everything else is the real openssl.
const slowOpenSSL = `#!/bin/sh
if [ "$1" = s_server ]; then
	case "$S_SERVER_MODE" in
	exit) echo "s_server: cannot load the key (simulated)" >&2; exit 1 ;;
	hang) exec sleep 3600 ;;
	*) sleep "$S_SERVER_MODE" ;;
	esac
fi
exec "$REAL_OPENSSL" "$@"
`

// TestDemo runs the demo with the test TLS server starting 12 s late (a
// loaded machine): the demo waits for it and passes. Before the fix it
// gave up silently after about 5 s and curl failed with "connection
// refused". When the server dies, or never listens within DEMO_TIMEOUT,
// the demo fails saying what it was waiting for.
func TestDemo(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the demo is a Linux shell script")
	}
	realOpenSSL := testenv.RequireTool(t, "openssl", "openssl")
	testenv.RequireTool(t, "curl", "curl")
	goBin := testenv.RequireTool(t, "go", "golang-go")
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	bin := t.TempDir()
	build := exec.Command(goBin, "build", "-o", bin+"/", "./cmd/certagent", "./cmd/certplane")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	fake := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(fake, "openssl"), []byte(slowOpenSSL), 0o755))

	tests := []struct {
		name, mode, timeout string
		ok                  bool
		want                string
	}{
		{name: "slow TLS server", mode: "12", timeout: "120", ok: true, want: "demo complete"},
		{name: "TLS server dies", mode: "exit", timeout: "120", want: "the test TLS server (openssl s_server's ACCEPT line): the process"},
		{name: "TLS server never listens", mode: "hang", timeout: "3", want: "still not ready after 3s (DEMO_TIMEOUT)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("bash", filepath.Join(root, "scripts", "demo.sh"))
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "BIN="+bin, "PATH="+fake+":"+os.Getenv("PATH"), "REAL_OPENSSL="+realOpenSSL,
				"S_SERVER_MODE="+tc.mode, "DEMO_TIMEOUT="+tc.timeout, "TMPDIR="+t.TempDir())
			out, err := cmd.CombinedOutput()
			assert.Equal(t, tc.ok, err == nil, "demo: %v\n%s", err, out)
			assert.Contains(t, string(out), tc.want)
			if !tc.ok {
				assert.NotContains(t, string(out), "demo complete")
				assert.NotContains(t, strings.ToLower(string(out)), "connection refused", "it must fail on the wait, not on curl")
			}
		})
	}
}

// TestDemoHasNoEarlyExitPipes: under pipefail, `cmd | grep -q …` fails
// whenever grep finds its match and exits before cmd has written
// everything (cmd dies of SIGPIPE): a demo that passes or fails by chance.
func TestDemoHasNoEarlyExitPipes(t *testing.T) {
	b, err := os.ReadFile("../demo.sh")
	require.NoError(t, err)
	for i, line := range strings.Split(string(b), "\n") {
		code, _, _ := strings.Cut(line, "#")
		if strings.Contains(code, "| grep -q") || strings.Contains(code, "|grep -q") {
			t.Errorf("demo.sh:%d: %s: capture the output, then grep -q <<<\"$out\"", i+1, strings.TrimSpace(line))
		}
	}
}
