package platform

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/internal/testenv"
)

// fakeSystemctl answers like systemctl for one unit and records every call.
const fakeSystemctl = `#!/bin/sh
echo "$*" >> "$SVC_LOG"
case "$1" in
is-active)
	if [ -f "$SVC_STATE/running" ]; then echo active; exit 0; fi
	echo inactive; exit 3 ;;
list-unit-files)
	if [ -f /etc/systemd/system/certagent.service ]; then echo "certagent.service enabled enabled"; exit 0; fi
	echo "0 unit files listed."; exit 1 ;;
start|restart) touch "$SVC_STATE/running" ;;
stop) rm -f "$SVC_STATE/running" ;;
--version) echo "systemd 252 (252.38-1~deb12u1)" ;;
esac
exit 0
`

// TestServiceInstallSystemd installs the service for real through
// kardianos/service into /etc/systemd/system, inside a private mount
// namespace where that directory is an empty tmpfs and /run/systemd/system
// exists (so systemd is detected), with a recording systemctl. It checks
// the unit written, that install is idempotent, and that uninstall stops
// before it disables.
func TestServiceInstallSystemd(t *testing.T) {
	if os.Getenv("CERTAGENT_SVC_HELPER") == "1" {
		serviceInstallInside(t)
		return
	}
	skip := func(why string) {
		t.Helper()
		testenv.Skipf(t, "%s", why)
	}
	if os.Getuid() != 0 {
		skip("needs root for a mount namespace")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		skip("needs unshare(1)")
	}
	bin := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bin, "systemctl"), []byte(fakeSystemctl), 0o755))
	state := t.TempDir()
	log := filepath.Join(state, "systemctl.log")
	self, err := os.Executable()
	require.NoError(t, err)
	script := `set -e
mount -t tmpfs tmpfs /etc/systemd/system
mount -t tmpfs tmpfs /run/systemd
mkdir /run/systemd/system
exec "$0" -test.run '^TestServiceInstallSystemd$' -test.v`
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c", script, self)
	cmd.Env = append(os.Environ(), "CERTAGENT_SVC_HELPER=1", "SVC_LOG="+log, "SVC_STATE="+state,
		"PATH="+bin+":/usr/sbin:/usr/bin:/sbin:/bin")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "namespaced install test:\n%s", out)
	require.Contains(t, string(out), "--- PASS: TestServiceInstallSystemd")
	// Nothing leaked to the host.
	_, err = os.Stat(SystemdUnitPath)
	require.True(t, os.IsNotExist(err), "unit file leaked to the host: %v", err)
}

func serviceInstallInside(t *testing.T) {
	log := os.Getenv("SVC_LOG")
	calls := func() []string {
		b, _ := os.ReadFile(log)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	s, err := NewService(ServiceOptions{Executable: "/usr/local/bin/certagent", Arguments: []string{"run"},
		ReadWritePaths: []string{"/srv/roots"}}, nil)
	require.NoError(t, err)
	require.Equal(t, "linux-systemd", s.Platform())

	st, err := s.State()
	require.NoError(t, err)
	require.Equal(t, ServiceNotInstalled, st)

	require.NoError(t, s.Install())
	got, err := os.ReadFile(SystemdUnitPath)
	require.NoError(t, err)
	want := SystemdUnit(s.o.Description, "/usr/local/bin/certagent", []string{"run"}, []string{"/srv/roots"})
	require.Equal(t, want, string(got), "the unit on disk is the one we rendered")
	require.Contains(t, calls(), "enable certagent.service")
	require.Contains(t, calls(), "daemon-reload")

	st, err = s.State()
	require.NoError(t, err)
	require.Equal(t, ServiceStopped, st)
	require.NoError(t, s.Start())
	st, _ = s.State()
	require.Equal(t, ServiceRunning, st)

	// A package upgrade re-runs install: it succeeds, rewrites the unit
	// (here with a new binary path) and restarts the running service.
	s2, err := NewService(ServiceOptions{Executable: "/usr/bin/certagent", Arguments: []string{"run"}}, nil)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(log, nil, 0o644))
	require.NoError(t, s2.Install())
	got, err = os.ReadFile(SystemdUnitPath)
	require.NoError(t, err)
	require.Contains(t, string(got), "ExecStart=/usr/bin/certagent run\n")
	require.NotContains(t, string(got), "/srv/roots")
	require.Contains(t, calls(), "restart certagent.service")

	// Uninstall stops first, then disables and removes the unit.
	require.NoError(t, os.WriteFile(log, nil, 0o644))
	require.NoError(t, s2.Uninstall())
	c := calls()
	stop, disable := index(c, "stop certagent.service"), index(c, "disable certagent.service")
	require.True(t, stop >= 0 && disable > stop, "want stop before disable, got %v", c)
	_, err = os.Stat(SystemdUnitPath)
	require.True(t, os.IsNotExist(err))
	// And again: nothing to do, no error (package scripts re-run).
	require.NoError(t, s2.Uninstall())
}

func index(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// TestSystemdUnitVerifies runs systemd's own checker over the rendered
// unit: unknown directives, bad values and typos fail it.
func TestSystemdUnitVerifies(t *testing.T) {
	sa := testenv.RequireTool(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	unit := filepath.Join(dir, "certagent.service")
	require.NoError(t, os.WriteFile(unit, []byte(SystemdUnit("certagent", "/bin/true", []string{"run"}, []string{"/srv/roots"})), 0o644))
	out, err := exec.Command(sa, "verify", unit).CombinedOutput()
	require.NoError(t, err, "systemd-analyze verify:\n%s", out)
	require.Empty(t, strings.TrimSpace(string(out)), "systemd-analyze warnings")
}
