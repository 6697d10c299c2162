package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/internal/nstest"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/stores"
	"github.com/certagent/certagent/trust/trusttest"
)

// Everything a store may write is private in the namespace: /etc and
// /usr/local/share whole (firefox-policy and runtimes create directories
// there), the Debian store, the JDKs, and empty homes.
//
// In the process TestEveryStoreUnderTheUnitSandbox starts, TestMain runs
// the sandboxed pass instead of the tests.
func TestMain(m *testing.M) {
	if base := os.Getenv(childEnv); base != "" {
		if err := sandboxedPass(layout{base}, os.Getenv(urlEnv)); err != nil {
			fmt.Fprintln(os.Stderr, "sandboxed pass:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	nstest.Main(m, nstest.Config{
		Overlays: []string{"/etc", "/usr/local/share", "/etc/ssl/certs", "/usr/local/share/ca-certificates", "/etc/ca-certificates", "/usr/lib/jvm"},
		Tmpfs:    []string{"/home", "/root"},
	})
}

const (
	account = "0123456789abcdef0123456789abcdef"
	token   = "sandbox-token"
	// childEnv carries the scratch layout to the sandboxed child.
	childEnv = "CERTAGENT_TEST_SANDBOX_CHILD"
	urlEnv   = "CERTAGENT_TEST_SANDBOX_URL"
)

// layout is the test's own part of the namespace.
type layout struct{ base string }

func (l layout) state() string  { return filepath.Join(l.base, "state") }
func (l layout) roots() string  { return filepath.Join(l.base, "srv", "roots") }
func (l layout) bundle() string { return filepath.Join(l.base, "srv", "bundle", "ca.pem") }

// storeNames is every store kind certagent has on Linux.
func (l layout) storeNames() []string {
	return append(append([]string(nil), stores.Kinds...), "dir:"+l.roots(), "bundle:"+l.bundle())
}

// unitWritable renders the unit the service install would write and
// returns its ReadWritePaths= (without systemd's "-").
func unitWritable(l layout) ([]string, error) {
	write, _ := stores.SandboxPaths(l.storeNames(), stores.Env{})
	unit := platform.SystemdUnit("sandbox test", "/usr/bin/certagent", []string{"run"}, append([]string{l.state()}, write...))
	var out []string
	for _, line := range strings.Split(unit, "\n") {
		v, ok := strings.CutPrefix(line, "ReadWritePaths=")
		if !ok {
			continue
		}
		for _, f := range strings.Fields(v) {
			out = append(out, strings.TrimPrefix(f, "-"))
		}
	}
	if len(out) == 0 {
		return nil, errors.New("the unit has no ReadWritePaths=")
	}
	return out, nil
}

// TestEveryStoreUnderTheUnitSandbox installs a root into every store kind
// from a child process whose file system is read-only except the unit's
// writable paths (and /tmp, /dev, /proc, /sys, which systemd leaves
// private or to other options), after doing what `certagent service install` does
// first: create the directories the configured stores create.
func TestEveryStoreUnderTheUnitSandbox(t *testing.T) {
	nstest.Require(t)
	nstest.MinimalDebianStore(t)
	nstest.Tool(t, "/usr/bin/certutil", "libnss3-tools")
	// Outside /tmp (private and writable in the sandbox, PrivateTmp=yes):
	// dir:, bundle: and the state dir are writable only if declared.
	l := layout{"/usr/local/share/certagent-sandbox-test"}
	ca := trusttest.NewCA(t, trusttest.WithCommonName("Sandbox Root"))

	// root's NSS database, so the nss store has a target.
	db := "/root/.pki/nssdb"
	require.NoError(t, os.MkdirAll(db, 0o700))
	out, err := exec.Command("/usr/bin/certutil", "-N", "-d", "sql:"+db, "--empty-password").CombinedOutput()
	require.NoError(t, err, "%s", out)

	// systemd creates the state dir (StateDirectory=); the service install
	// creates what the configured stores create.
	_, create := stores.SandboxPaths(l.storeNames(), stores.Env{})
	for _, d := range append(create, l.state()) {
		require.NoError(t, os.MkdirAll(d, 0o755), "service install creates %s", d)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(401)
			return
		}
		certs := []api.Certificate{{
			ID: "00000000-0000-4000-8000-000000000001", BindingStatus: api.StatusAvailable,
			Certificate: string(ca.PEM()), Fingerprint: ca.FP.String(), Type: api.TypeGatewayManaged,
		}}
		b, _ := json.Marshal(certs)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"success":true,"errors":[],"messages":[],"result":%s}`, b)
	}))
	t.Cleanup(srv.Close)

	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+l.base, urlEnv+"="+srv.URL+"/client/v4")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err = cmd.CombinedOutput()
	t.Logf("sandboxed child:\n%s", out)
	require.NoError(t, err, "the pass under the sandbox")
}

// sandboxedPass runs in the child: it makes the sandbox, proves it, then
// runs a pass and checks every result.
func sandboxedPass(l layout, url string) error {
	unit, err := unitWritable(l)
	if err != nil {
		return err
	}
	writable := append(unit, "/tmp", "/dev", "/proc", "/sys")
	if err := readOnlyExcept(writable); err != nil {
		return err
	}
	fmt.Printf("writable: %s\n", strings.Join(writable, " "))

	// The sandbox is real: outside the writable paths nothing can be
	// written, even by root.
	if err := os.WriteFile("/etc/certagent-sandbox-probe", nil, 0o644); !errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("/etc is not read-only in the sandbox: %v", err)
	}
	if err := os.MkdirAll("/usr/local/share/certagent-sandbox-probe", 0o755); !errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("/usr/local/share is not read-only in the sandbox: %v", err)
	}

	cfg := &agent.Config{
		ControlPlaneURL: url, AccountID: account, APIToken: token,
		PollInterval: time.Minute, RemoveRetired: true, StateDir: l.state(), LogLevel: "info",
		Stores: l.storeNames(),
	}
	a, err := agent.New(cfg, agent.Deps{})
	if err != nil {
		return err
	}
	rep, err := a.SyncOnce(context.Background(), false)
	if err != nil {
		return err
	}
	var problems []string
	installed := map[string]bool{}
	for _, r := range rep.Results {
		fmt.Printf("%s %s %s %s %s %s\n", r.Store, r.Target.String(), r.Op, r.Status, r.Reason, r.Error)
		if r.Status == trust.StatusFailed || strings.Contains(r.Error+r.Reason, "read-only file system") {
			problems = append(problems, fmt.Sprintf("%s %s: %s %s", r.Store, r.Target.String(), r.Status, r.Error))
		}
		if r.Op == trust.OpInstall && r.Status == trust.StatusOK {
			installed[strings.SplitN(r.Store, ":", 2)[0]] = true
		}
	}
	for _, kind := range []string{"system", "nss", "firefox-policy", "dir", "bundle", "runtimes"} {
		if !installed[kind] {
			problems = append(problems, kind+" did not install the root under the sandbox")
		}
	}
	if rep.Failed() {
		problems = append(problems, fmt.Sprintf("the pass failed: %+v", rep.Fetch))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// readOnlyExcept does what ProtectSystem=strict plus ReadWritePaths= do:
// each writable path that exists is bind-mounted onto itself, then every
// mount not at or under a writable path is remounted read-only. A missing
// path is skipped, as systemd skips a "-" entry.
func readOnlyExcept(writable []string) error {
	var kept []string
	for _, p := range writable {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if err := syscall.Mount(p, p, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", p, err)
		}
		kept = append(kept, p)
	}
	ms, err := nstest.Mounts()
	if err != nil {
		return err
	}
	under := func(p string) bool {
		for _, w := range kept {
			if p == w || strings.HasPrefix(p, w+"/") {
				return true
			}
		}
		return false
	}
	// Deepest first, so a parent's remount does not hide a child's path.
	for i := len(ms) - 1; i >= 0; i-- {
		m := ms[i]
		if under(m.Point) {
			continue
		}
		err := syscall.Mount("", m.Point, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, "")
		if err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.EACCES) {
			return fmt.Errorf("remount %s read-only: %w", m.Point, err)
		}
	}
	return nil
}
