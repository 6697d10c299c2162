package linuxpkg_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/internal/nstest"
	"github.com/certagent/certagent/packaging/linuxpkg"
)

// syncRoot configures the installed agent against the fake control plane
// with a dir: store and runs one real pass, so a root is installed that the
// package removal must take away again.
func syncRoot(t *testing.T, store string) controlPlane {
	t.Helper()
	cp := newControlPlane(t)
	writeManaged(t, cp, store)
	out := run(t, linuxpkg.BinPath, "sync")
	t.Logf("certagent sync:\n%s", out)
	require.FileExists(t, filepath.Join(store, cp.RootFile), "the agent installed the root")
	return cp
}

// TestDeb installs, upgrades and purges the deb with this machine's dpkg.
func TestDeb(t *testing.T) {
	nstest.Require(t)
	dpkg := nstest.Tool(t, "/usr/bin/dpkg", "dpkg")
	requireClean(t)
	v1 := buildPackages(t, "1.0.0", "deb")["deb"]
	v2 := buildPackages(t, "1.0.1", "deb")["deb"]
	t.Cleanup(func() { _, _ = runErr(dpkg, "--purge", "--force-all", "certagent") })

	run(t, dpkg, "-i", v1)
	assert.Contains(t, run(t, "/usr/bin/dpkg-query", "-W", "-f=${Status} ${Version}", "certagent"), "install ok installed 1.0.0")
	st, err := os.Stat(linuxpkg.StateDir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), st.Mode().Perm(), "state dir mode (status.json is read by any user)")
	assert.FileExists(t, "/lib/systemd/system/certagent.service")
	assert.Contains(t, run(t, "/usr/bin/dpkg-query", "-W", "-f=${Conffiles}", "certagent"), linuxpkg.ConfigPath)

	store := t.TempDir()
	cp := syncRoot(t, store)
	edited := editConfig(t)

	// The upgrade must not stop at a conffile prompt (stdin is not a
	// terminal: it would fail), and must keep the edit and the site file.
	run(t, dpkg, "-i", v2)
	assert.Contains(t, run(t, "/usr/bin/dpkg-query", "-W", "-f=${Status} ${Version}", "certagent"), "install ok installed 1.0.1")
	got, err := os.ReadFile(linuxpkg.ConfigPath)
	require.NoError(t, err)
	assert.Equal(t, string(edited), string(got), "config after upgrade")
	assert.FileExists(t, "/etc/certagent/managed.json", "site settings after upgrade")
	assert.FileExists(t, filepath.Join(store, cp.RootFile), "an upgrade removes no root")

	owned := strings.Fields(run(t, "/usr/bin/dpkg-query", "-L", "certagent"))
	assert.NotContains(t, owned, "/etc/certagent/managed.json", "the package must not own the site settings")
	run(t, dpkg, "--purge", "certagent")
	_, err = runErr("/usr/bin/dpkg-query", "-W", "certagent")
	assert.Error(t, err, "dpkg still knows certagent after purge")
	assert.NoFileExists(t, filepath.Join(store, cp.RootFile), "purge left the root in the store")
	for _, p := range owned {
		if shared[p] {
			continue
		}
		assert.False(t, exists(p), "%s left behind by dpkg --purge", p)
	}
	for _, p := range []string{linuxpkg.ConfigDir, linuxpkg.StateDir, "/var/log/certagent"} {
		assert.False(t, exists(p), "%s left behind by dpkg --purge", p)
	}
}

// shared are directories the package lists but other packages own too.
var shared = map[string]bool{
	"/.": true, "/etc": true, "/usr": true, "/usr/bin": true, "/usr/share": true, "/usr/share/doc": true,
	"/usr/share/man": true, "/usr/share/man/man8": true, "/usr/share/lintian": true,
	"/usr/share/lintian/overrides": true, "/lib": true, "/lib/systemd": true, "/lib/systemd/system": true,
	"/var": true, "/var/lib": true,
}

// TestRPM installs, upgrades and erases the rpm with rpm and a private
// database (--dbpath), the files going to the (overlaid) root.
func TestRPM(t *testing.T) {
	nstest.Require(t)
	rpm := nstest.Tool(t, "/usr/bin/rpm", "rpm")
	requireClean(t)
	pk1 := buildPackages(t, "1.0.0", "rpm")["rpm"]
	pk2 := buildPackages(t, "1.0.1", "rpm")["rpm"]
	db := t.TempDir()
	t.Cleanup(func() {
		_, _ = runErr(rpm, "--dbpath", db, "-e", "--noscripts", "certagent")
		_ = os.RemoveAll(linuxpkg.ConfigDir)
	})
	run(t, rpm, "--initdb", "--dbpath", db)
	run(t, rpm, "--dbpath", db, "-ivh", pk1)
	assert.Contains(t, run(t, rpm, "--dbpath", db, "-q", "certagent"), "certagent-1.0.0")
	assert.FileExists(t, "/usr/lib/systemd/system/certagent.service")
	assert.Contains(t, run(t, rpm, "--dbpath", db, "-qc", "certagent"), linuxpkg.ConfigPath)

	store := t.TempDir()
	cp := syncRoot(t, store)
	edited := editConfig(t)

	run(t, rpm, "--dbpath", db, "-Uvh", pk2)
	assert.Contains(t, run(t, rpm, "--dbpath", db, "-q", "certagent"), "certagent-1.0.1")
	got, err := os.ReadFile(linuxpkg.ConfigPath)
	require.NoError(t, err)
	assert.Equal(t, string(edited), string(got), "config after rpm -U (noreplace)")
	// rpm runs the old package's %preun with 1 after the new %post: the
	// scripts must read that as an upgrade and keep the roots.
	assert.FileExists(t, filepath.Join(store, cp.RootFile), "an upgrade removes no root")

	owned := strings.Fields(run(t, rpm, "--dbpath", db, "-ql", "certagent"))
	run(t, rpm, "--dbpath", db, "-e", "certagent")
	assert.NoFileExists(t, filepath.Join(store, cp.RootFile), "rpm -e left the root in the store")
	for _, p := range owned {
		if p == linuxpkg.ConfigDir || shared[p] {
			continue
		}
		assert.False(t, exists(p), "%s left behind by rpm -e", p)
	}
	assert.False(t, exists(linuxpkg.StateDir), "state left behind by rpm -e")
	// rpm has no purge: like config.json.rpmsave, the admin's site file
	// stays (documented in packaging/README.md).
	assert.FileExists(t, linuxpkg.ConfigPath+".rpmsave")
	assert.FileExists(t, "/etc/certagent/managed.json")
}

// TestArch installs and removes the Arch package with pacman into a
// throwaway root. The root has no shell, so scriptlets are off here;
// TestScripts runs the packaged .INSTALL functions.
func TestArch(t *testing.T) {
	nstest.Require(t)
	pacman := nstest.Tool(t, "/usr/bin/pacman", "pacman-package-manager")
	t.Parallel()
	bsdtar := nstest.Tool(t, "/usr/bin/bsdtar", "libarchive-tools")
	pkg := buildPackages(t, "1.0.0", "archlinux")["archlinux"]
	pkg2 := buildPackages(t, "1.0.1", "archlinux")["archlinux"]
	root := t.TempDir()
	db := filepath.Join(root, "var/lib/pacman")
	require.NoError(t, os.MkdirAll(db, 0o755))
	common := []string{"--root", root, "--dbpath", db, "--noconfirm", "--noscriptlet", "--noprogressbar"}
	run(t, pacman, append([]string{"-U"}, append(common, pkg)...)...)
	assert.Contains(t, run(t, pacman, "--root", root, "--dbpath", db, "-Q", "certagent"), "certagent 1.0.0-1")
	for _, p := range []string{"usr/bin/certagent", "usr/lib/systemd/system/certagent.service", "etc/certagent/config.json"} {
		assert.FileExists(t, filepath.Join(root, p))
	}
	assert.Contains(t, run(t, bsdtar, "-xOf", pkg, ".PKGINFO"), "backup = etc/certagent/config.json")

	// pacman keeps a modified backup file when the new package ships the
	// same default.
	cfg := filepath.Join(root, "etc/certagent/config.json")
	edited := []byte("{\"log_level\": \"debug\"}\n")
	require.NoError(t, os.WriteFile(cfg, edited, 0o644))
	run(t, pacman, append([]string{"-U"}, append(common, pkg2)...)...)
	assert.Contains(t, run(t, pacman, "--root", root, "--dbpath", db, "-Q", "certagent"), "certagent 1.0.1-1")
	got, err := os.ReadFile(cfg)
	require.NoError(t, err)
	assert.Equal(t, string(edited), string(got), "config after pacman -U")
	run(t, pacman, append([]string{"-R"}, append(common, "certagent")...)...)
	for _, p := range []string{"usr/bin/certagent", "usr/lib/systemd/system/certagent.service"} {
		assert.NoFileExists(t, filepath.Join(root, p))
	}
}
