package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

const cliAccount = "00112233445566778899aabbccddeeff"

// capture runs fn with os.Stdout redirected and returns what it printed.
func capture(t *testing.T, fn func() int) (int, string) {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	old := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	code := fn()
	os.Stdout = old
	w.Close()
	return code, <-done
}

func TestCLISyncCertsUninstall(t *testing.T) {
	ca := trusttest.NewCA(t, trusttest.WithCommonName("cli test root"))
	var fail atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if fail.Load() {
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, `{"success":false,"errors":[{"code":1,"message":"upstream"}],"messages":[],"result":null}`)
			return
		}
		certs := []api.Certificate{{ID: "c1", BindingStatus: api.StatusAvailable, Certificate: string(ca.PEM()), Fingerprint: ca.FP.String()}}
		res, _ := json.Marshal(certs)
		json.NewEncoder(w).Encode(api.Envelope{Success: true, Errors: []api.Message{}, Messages: []api.Message{}, Result: res})
	}))
	defer srv.Close()

	dir := t.TempDir()
	anchors := filepath.Join(dir, "anchors")
	token := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(token, []byte("tok\n"), 0o600))
	cfgPath := filepath.Join(dir, "config.json")
	t.Setenv("CERTAGENT_CONFIG", cfgPath)
	t.Setenv("CERTAGENT_MANAGED", filepath.Join(dir, "managed.json"))
	// No daemon answers here: the commands do the work themselves.
	t.Setenv("CERTAGENT_SOCKET", filepath.Join(dir, "none.sock"))

	// No config yet: misconfigured.
	assert.Equal(t, exitConfig, Main([]string{"sync"}))

	cfg := fmt.Sprintf(`{"control_plane_url":%q,"account_id":%q,"api_token_file":%q,"stores":["dir:%s"],"state_dir":%q}`,
		srv.URL, cliAccount, token, anchors, filepath.Join(dir, "state"))
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o644))

	code, out := capture(t, func() int { return Main([]string{"sync", "--dry-run"}) })
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, "planned")
	_, err := os.Stat(anchors)
	assert.ErrorIs(t, err, os.ErrNotExist, "dry run created the store")

	code, out = capture(t, func() int { return Main([]string{"sync", "--json"}) })
	require.Equal(t, exitOK, code, out)
	var rep struct {
		Changes int `json:"changes"`
		Fetch   struct{ Status string }
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	assert.Equal(t, 1, rep.Changes)
	assert.Equal(t, "ok", rep.Fetch.Status)

	code, out = capture(t, func() int { return Main([]string{"certs"}) })
	assert.Equal(t, exitOK, code)
	got, err := trust.ParsePEM([]byte(out))
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, ca.FP, got[0].FP)

	// The control plane fails: exit 1, nothing removed.
	fail.Store(true)
	code, out = capture(t, func() int { return Main([]string{"sync"}) })
	assert.Equal(t, exitFailed, code)
	assert.Contains(t, out, "fail static")
	entries, err := os.ReadDir(anchors)
	require.NoError(t, err)
	assert.Len(t, entries, 1)

	// uninstall needs --purge, and works without the control plane.
	assert.Equal(t, exitConfig, Main([]string{"uninstall"}))
	code, out = capture(t, func() int { return Main([]string{"uninstall", "--purge"}) })
	assert.Equal(t, exitOK, code, out)
	entries, err = os.ReadDir(anchors)
	require.NoError(t, err)
	assert.Empty(t, entries)
	_, err = os.Stat(filepath.Join(dir, "state", "ledger.json"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestCLIDispatch(t *testing.T) {
	code, out := capture(t, func() int { return Main([]string{"--help"}) })
	assert.Equal(t, exitOK, code)
	for _, want := range []string{"sync", "uninstall", "api_token_file", "Exit codes"} {
		assert.Contains(t, out, want)
	}
	code, out = capture(t, func() int { return Main([]string{"version"}) })
	assert.Equal(t, exitOK, code)
	assert.True(t, strings.HasPrefix(out, "certagent "))
	assert.Equal(t, exitConfig, Main([]string{"frobnicate"}))
	assert.Equal(t, exitConfig, Main(nil))
}

// TestPrintReportNeutralisesTerminalControls: `certagent sync` run by an
// admin prints targets a local user named (a Firefox profile path) and
// tool output; escape sequences in them must not reach the terminal.
func TestPrintReportNeutralisesTerminalControls(t *testing.T) {
	ca := trusttest.NewCA(t)
	rep := &agent.PassReport{
		Fetch:   agent.FetchReport{Status: "ok"},
		Desired: []agent.CertInfo{{FP: ca.FP, Subject: "Root \u202eevil"}},
		Results: []agent.TargetResult{{
			Store: "nss", FP: ca.FP, Op: trust.OpInstall, Status: trust.StatusFailed,
			Target: trust.Target{User: "mallory", Path: "/home/mallory/.mozilla/firefox/\x1b]0;owned\x07"},
			Error:  "certutil: \x1b[2Jcleared",
		}},
	}
	var b strings.Builder
	printReport(&b, rep)
	out := b.String()
	for _, bad := range []string{"\x1b", "\x07", "\u202e"} {
		assert.NotContains(t, out, bad)
	}
	assert.Contains(t, out, "/home/mallory/.mozilla/firefox/?]0;owned?")
	assert.Contains(t, out, "summary: 0 ok, 0 skipped, 1 failed")
}
