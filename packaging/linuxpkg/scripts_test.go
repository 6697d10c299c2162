package linuxpkg_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/internal/nstest"
)

// packagedScripts extracts the maintainer scripts exactly as each package
// carries them, keyed "format/hook".
func packagedScripts(t *testing.T, pkgs map[string]string) map[string]string {
	t.Helper()
	bsdtar := nstest.Tool(t, "/usr/bin/bsdtar", "libarchive-tools")
	rpm := nstest.Tool(t, "/usr/bin/rpm", "rpm")
	s := map[string]string{}
	ctl := t.TempDir()
	run(t, "/usr/bin/dpkg-deb", "-e", pkgs["deb"], ctl)
	for _, h := range []string{"postinst", "prerm", "postrm"} {
		b, err := os.ReadFile(filepath.Join(ctl, h))
		require.NoError(t, err)
		s["deb/"+h] = string(b)
	}
	for _, h := range []string{"POSTIN", "PREUN", "POSTUN"} {
		s["rpm/"+h] = run(t, rpm, "-qp", "--qf", "%{"+h+"}", pkgs["rpm"])
	}
	for _, h := range []string{".post-install", ".post-upgrade", ".pre-deinstall", ".post-deinstall"} {
		s["apk/"+h] = run(t, bsdtar, "-xOf", pkgs["apk"], h)
	}
	s["archlinux/.INSTALL"] = run(t, bsdtar, "-xOf", pkgs["archlinux"], ".INSTALL")
	return s
}

// TestScripts runs every packaged maintainer script with the arguments its
// package manager passes, against stub certagent and systemctl commands
// that record their calls, with and without systemd. The rule under test:
// only an explicit upgrade keeps the roots; anything else purges them.
func TestScripts(t *testing.T) {
	nstest.Require(t)
	bash := nstest.Tool(t, "/bin/bash", "bash")
	pkgs := buildPackages(t, "1.0.0", "deb", "rpm", "apk", "archlinux")
	scripts := packagedScripts(t, pkgs)

	stubs := t.TempDir()
	calls := filepath.Join(t.TempDir(), "calls")
	for _, name := range []string{"certagent", "systemctl"} {
		stub := "#!/bin/sh\necho \"" + name + " $*\" >>" + calls + "\n"
		require.NoError(t, os.WriteFile(filepath.Join(stubs, name), []byte(stub), 0o755))
	}
	t.Cleanup(func() {
		for _, p := range []string{"/etc/certagent", "/var/lib/certagent", "/var/log/certagent", "/run/systemd"} {
			_ = os.RemoveAll(p)
		}
	})

	const (
		purge   = "certagent uninstall --purge"
		stop    = "systemctl disable --now certagent.service"
		restart = "systemctl restart certagent.service"
	)
	type want struct {
		calls        []string // in order; nil means no call at all
		stateRemoved bool
		siteRemoved  bool
	}
	tests := []struct {
		name, script string
		args         []string
		systemd      bool
		want         want
	}{
		{"deb postinst configure", "deb/postinst", []string{"configure", ""}, true, want{calls: []string{"systemctl daemon-reload", "systemctl enable certagent.service", restart}}},
		{"deb postinst without systemd", "deb/postinst", []string{"configure", ""}, false, want{}},
		{"deb prerm remove", "deb/prerm", []string{"remove"}, true, want{calls: []string{stop, purge}}},
		{"deb prerm remove without systemd", "deb/prerm", []string{"remove"}, false, want{calls: []string{purge}}},
		{"deb prerm upgrade", "deb/prerm", []string{"upgrade", "1.0.1"}, true, want{}},
		{"deb prerm failed-upgrade", "deb/prerm", []string{"failed-upgrade", "1.0.1"}, true, want{}},
		{"deb prerm deconfigure", "deb/prerm", []string{"deconfigure", "in-favour", "other", "1"}, true, want{}},
		{"deb postrm remove", "deb/postrm", []string{"remove"}, true, want{calls: []string{"systemctl daemon-reload"}, stateRemoved: true}},
		{"deb postrm purge", "deb/postrm", []string{"purge"}, false, want{stateRemoved: true, siteRemoved: true}},
		{"deb postrm upgrade", "deb/postrm", []string{"upgrade", "1.0.1"}, true, want{}},
		{"deb postrm abort-install", "deb/postrm", []string{"abort-install"}, true, want{}},
		{"rpm %post install", "rpm/POSTIN", []string{"1"}, true, want{calls: []string{"systemctl daemon-reload", "systemctl enable certagent.service", restart}}},
		{"rpm %post upgrade", "rpm/POSTIN", []string{"2"}, true, want{calls: []string{"systemctl daemon-reload", "systemctl enable certagent.service", restart}}},
		{"rpm %preun erase", "rpm/PREUN", []string{"0"}, true, want{calls: []string{stop, purge}}},
		{"rpm %preun upgrade", "rpm/PREUN", []string{"1"}, true, want{}},
		{"rpm %postun erase", "rpm/POSTUN", []string{"0"}, false, want{stateRemoved: true}},
		{"rpm %postun upgrade", "rpm/POSTUN", []string{"1"}, false, want{}},
		{"apk post-install", "apk/.post-install", []string{"1.0.0-r0"}, true, want{calls: []string{"systemctl daemon-reload", "systemctl enable certagent.service", restart}}},
		{"apk post-upgrade", "apk/.post-upgrade", []string{"1.0.1-r0", "1.0.0-r0"}, true, want{calls: []string{"systemctl daemon-reload", "systemctl enable certagent.service", restart}}},
		{"apk pre-deinstall", "apk/.pre-deinstall", []string{"1.0.0-r0"}, false, want{calls: []string{purge}}},
		{"apk post-deinstall", "apk/.post-deinstall", []string{"1.0.0-r0"}, false, want{stateRemoved: true}},
		{"arch post_install", "post_install", []string{"1.0.0-1"}, true, want{calls: []string{"systemctl daemon-reload", "systemctl enable certagent.service", restart}}},
		{"arch post_upgrade", "post_upgrade", []string{"1.0.1-1", "1.0.0-1"}, true, want{calls: []string{"systemctl daemon-reload", "systemctl enable certagent.service", restart}}},
		{"arch pre_remove", "pre_remove", []string{"1.0.0-1"}, true, want{calls: []string{stop, purge}}},
		{"arch post_remove", "post_remove", []string{"1.0.0-1"}, false, want{stateRemoved: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A machine with the agent installed and configured.
			require.NoError(t, os.MkdirAll("/etc/certagent", 0o755))
			require.NoError(t, os.WriteFile("/etc/certagent/managed.json", []byte("{}"), 0o600))
			require.NoError(t, os.MkdirAll("/var/lib/certagent", 0o700))
			require.NoError(t, os.WriteFile("/var/lib/certagent/ledger.json", []byte("{}"), 0o600))
			_ = os.RemoveAll("/run/systemd")
			if tt.systemd {
				require.NoError(t, os.MkdirAll("/run/systemd/system", 0o755))
			}
			_ = os.Remove(calls)

			var cmd *exec.Cmd
			if strings.Contains(tt.script, "/") {
				body, ok := scripts[tt.script]
				require.True(t, ok, "no script %s in the package", tt.script)
				require.NotEmpty(t, strings.TrimSpace(body), "script %s is empty", tt.script)
				f := filepath.Join(t.TempDir(), "script")
				require.NoError(t, os.WriteFile(f, []byte(body), 0o755))
				// dash, as Debian runs /bin/sh: proves the scripts are POSIX.
				cmd = exec.Command("/bin/sh", append([]string{f}, tt.args...)...)
			} else {
				// pacman sources .INSTALL and calls the hook function.
				f := filepath.Join(t.TempDir(), "INSTALL")
				require.NoError(t, os.WriteFile(f, []byte(scripts["archlinux/.INSTALL"]), 0o644))
				cmd = exec.Command(bash, append([]string{"-c", `. "$0"; ` + tt.script + ` "$@"`, f}, tt.args...)...)
			}
			cmd.Env = []string{"PATH=" + stubs + ":/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "script failed: %s", out)

			var got []string
			if b, err := os.ReadFile(calls); err == nil {
				got = strings.Split(strings.TrimSpace(string(b)), "\n")
			}
			assert.Equal(t, tt.want.calls, got, "calls (output: %s)", out)
			assert.Equal(t, tt.want.stateRemoved, !exists("/var/lib/certagent/ledger.json"), "state removed")
			assert.Equal(t, tt.want.siteRemoved, !exists("/etc/certagent/managed.json"), "site settings removed")
			if !tt.systemd && strings.Contains(tt.script, "post") && strings.Contains(tt.name, "postinst") {
				assert.Contains(t, string(out), "systemd is not running")
			}
		})
	}
}
