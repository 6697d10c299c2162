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

// sysvNamespace is the shell that runs the test binary in a private mount
// and PID namespace that looks like a SysV-init machine: /run is empty (no
// /run/systemd/system), PID 1 is not systemd, and /etc/init.d, the runlevel
// directories and /var/log are empty tmpfs, so nothing reaches the host
// and every process started there dies with the namespace. sh stays PID 1
// (the test binary is its child, not exec'd) because it reaps the daemons
// the init script orphans, as init does; a zombie would look running to
// the script's /proc check.
const sysvNamespace = `set -e
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /etc/init.d
mount -t tmpfs tmpfs /var/log
for i in 0 1 2 3 4 5 6; do mkdir -p /etc/rc$i.d; mount -t tmpfs tmpfs /etc/rc$i.d; done
"$0" -test.run "^$1\$" -test.v`

// TestServiceInstallSysV installs, controls and removes the service for
// real through kardianos/service on SysV init (what it picks without
// systemd, OpenRC, upstart or procd), with the real `service` command and
// the init script kardianos writes, in a namespace (sysvNamespace).
// Before the fix, State was "unknown" for a service that is not installed,
// and Install then failed removing an init script that did not exist.
func TestServiceInstallSysV(t *testing.T) {
	if os.Getenv("CERTAGENT_SVC_HELPER") == "sysv" {
		serviceSysVInside(t)
		return
	}
	testenv.RequireRoot(t, "a mount and PID namespace")
	unshare := testenv.RequireTool(t, "unshare", "util-linux")
	testenv.RequireTool(t, "service", "init-system-helpers")
	self, err := os.Executable()
	require.NoError(t, err)
	daemon := filepath.Join(t.TempDir(), "fake-certagent")
	require.NoError(t, os.WriteFile(daemon, []byte("#!/bin/sh\nexec sleep 600\n"), 0o755))
	cmd := exec.Command(unshare, "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private",
		"sh", "-c", sysvNamespace, self, "TestServiceInstallSysV")
	cmd.Env = append(os.Environ(), "CERTAGENT_SVC_HELPER=sysv", "SVC_DAEMON="+daemon)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "namespaced SysV test:\n%s", out)
	require.Contains(t, string(out), "--- PASS: TestServiceInstallSysV")
	_, err = os.Stat("/etc/init.d/" + ServiceName)
	require.True(t, os.IsNotExist(err), "init script leaked to the host: %v", err)
}

func serviceSysVInside(t *testing.T) {
	script := "/etc/init.d/" + ServiceName
	daemon := os.Getenv("SVC_DAEMON")
	s, err := NewService(ServiceOptions{Executable: daemon, Arguments: []string{"run"}}, nil)
	require.NoError(t, err)
	require.Equal(t, "unix-systemv", s.Platform())

	state := func(want ServiceState) {
		t.Helper()
		st, err := s.State()
		require.NoError(t, err)
		require.Equal(t, want, st)
	}
	state(ServiceNotInstalled)
	// Uninstalling what is not installed succeeds (package scripts re-run).
	require.NoError(t, s.Uninstall())

	require.NoError(t, s.Install())
	fi, err := os.Stat(script)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o755), fi.Mode().Perm())
	link, err := os.Readlink("/etc/rc2.d/S50" + ServiceName)
	require.NoError(t, err)
	require.Equal(t, script, link)
	state(ServiceStopped)
	require.NoError(t, s.Start())
	state(ServiceRunning)

	// A package upgrade re-runs install: it succeeds and the service runs
	// again afterwards.
	require.NoError(t, s.Install())
	state(ServiceRunning)

	require.NoError(t, s.Uninstall())
	state(ServiceNotInstalled)
	_, err = os.Stat(script)
	require.True(t, os.IsNotExist(err))
	links, _ := filepath.Glob("/etc/rc?.d/*" + ServiceName)
	require.Empty(t, links, "runlevel links left behind")
	require.NoError(t, s.Uninstall())
}
