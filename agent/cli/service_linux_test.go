package cli

import (
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/internal/testenv"
)

// TestServiceCommandSysV runs `certagent service status|install|uninstall`
// on SysV init, in a private mount and PID namespace where /run (so no
// /run/systemd/system), /etc/init.d, the runlevel directories and /var/log
// are empty tmpfs and PID 1 is a shell: status says "not installed" (exit
// 4), uninstall of nothing succeeds, install works, and uninstall removes
// it. Before the fix, status said "unknown" (exit 3) and install failed
// with "remove /etc/init.d/certagent: no such file or directory".
func TestServiceCommandSysV(t *testing.T) {
	if os.Getenv("CERTAGENT_SVC_CMD_HELPER") == "1" {
		serviceCommandInside(t)
		return
	}
	testenv.RequireRoot(t, "a mount and PID namespace")
	unshare := testenv.RequireTool(t, "unshare", "util-linux")
	testenv.RequireTool(t, "service", "init-system-helpers")
	self, err := os.Executable()
	require.NoError(t, err)
	const ns = `set -e
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /etc/init.d
mount -t tmpfs tmpfs /var/log
for i in 0 1 2 3 4 5 6; do mkdir -p /etc/rc$i.d; mount -t tmpfs tmpfs /etc/rc$i.d; done
"$0" -test.run '^TestServiceCommandSysV$' -test.v`
	cmd := exec.Command(unshare, "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private", "sh", "-c", ns, self)
	cmd.Env = append(os.Environ(), "CERTAGENT_SVC_CMD_HELPER=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "namespaced service command test:\n%s", out)
	require.Contains(t, string(out), "--- PASS: TestServiceCommandSysV")
	_, err = os.Stat("/etc/init.d/certagent")
	require.True(t, os.IsNotExist(err), "init script leaked to the host: %v", err)
}

func serviceCommandInside(t *testing.T) {
	steps := []struct {
		args []string
		want int
	}{
		{[]string{"status"}, 4},
		{[]string{"uninstall"}, 0},
		{[]string{"install", "--no-start"}, 0},
		{[]string{"status"}, 3},
		{[]string{"install", "--no-start"}, 0}, // a package upgrade re-runs it
		{[]string{"uninstall"}, 0},
		{[]string{"status"}, 4},
		{[]string{"uninstall"}, 0},
	}
	for _, s := range steps {
		if got := cmdService(s.args); got != s.want {
			t.Fatalf("certagent service %v: exit code: got %v, want %v", s.args, got, s.want)
		}
	}
	_, err := os.Stat("/etc/init.d/certagent")
	require.True(t, os.IsNotExist(err))
}
