package daemon

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust/runtimes"
)

// linuxAnchorDirs are where the distro families keep local anchors (the
// system store writes ours there); a deleted anchor file shows up here.
var linuxAnchorDirs = []string{
	"/usr/local/share/ca-certificates",          // Debian, Ubuntu (update-ca-certificates)
	"/etc/pki/ca-trust/source/anchors",          // Fedora, RHEL (update-ca-trust)
	"/etc/ca-certificates/trust-source/anchors", // Arch (trust extract-compat)
	"/etc/pki/trust/anchors",                    // SUSE (update-ca-certificates)
}

// linuxBundles are the extracted bundles the refresh tools write. The
// system store counts a root as trusted while the bundle holds it, so a
// deleted anchor is only lost once something rebuilds the bundle (a package
// upgrade, an admin's update-ca-certificates); watching the bundle repairs
// it right then.
var linuxBundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",                // Debian, Ubuntu
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // Fedora, RHEL
	"/etc/ca-certificates/extracted/tls-ca-bundle.pem",  // Arch
	"/var/lib/ca-certificates/ca-bundle.pem",            // SUSE
}

// nssProfileRoots are, relative to a home, the directories holding NSS
// databases or browser profiles that each hold one.
var nssProfileRoots = []string{
	".pki/nssdb",                                    // Chrome, Chromium (deb/rpm)
	"snap/chromium/current/.pki/nssdb",              // Chromium snap
	".mozilla/firefox",                              // Firefox (deb/rpm/tarball)
	"snap/firefox/common/.mozilla/firefox",          // Firefox snap
	".var/app/org.mozilla.firefox/.mozilla/firefox", // Firefox flatpak
	".var/app/org.chromium.Chromium/.pki/nssdb",     // Chromium flatpak
}

// DerivedWatchPaths returns the paths to watch for a store that does not
// name its own (see watch.Watchable): the path of dir: and bundle: stores,
// the distro anchor directories for system, every user's NSS databases and
// profile roots for nss, the policy directories for firefox-policy. Stores
// it knows nothing about (java, Windows and macOS system stores, whose
// content lives in registries and keychains) rely on polling.
func DerivedWatchPaths(name string, users func() ([]platform.User, error)) []string {
	kind, arg, _ := strings.Cut(name, ":")
	switch kind {
	case "dir", "bundle":
		if filepath.IsAbs(arg) {
			return []string{filepath.Clean(arg)}
		}
		return nil
	case "system":
		if runtime.GOOS == "linux" {
			return append(append([]string(nil), linuxAnchorDirs...), linuxBundles...)
		}
		return nil
	case "runtimes":
		// The bundle; the wiring is checked at every pass (Refresh).
		return []string{runtimes.DefaultDir}
	case "firefox-policy":
		if runtime.GOOS == "linux" {
			return []string{"/etc/firefox/policies", "/usr/lib/firefox/distribution", "/usr/lib/firefox-esr/distribution", "/usr/lib/mozilla/certificates"}
		}
		return nil
	case "nss":
		if users == nil {
			return nil
		}
		us, err := users()
		if err != nil {
			return nil
		}
		var out []string
		for _, u := range us {
			if u.Home == "" || !filepath.IsAbs(u.Home) {
				continue
			}
			for _, rel := range nssProfileRoots {
				root := filepath.Join(u.Home, rel)
				out = append(out, root)
				// Each existing profile directory holds a database whose
				// entries can be deleted behind our back.
				if strings.HasSuffix(rel, "firefox") {
					out = append(out, profileDirs(root)...)
				}
			}
		}
		if runtime.GOOS == "linux" {
			out = append(out, "/etc/pki/nssdb")
		}
		return out
	}
	return nil
}

// profileDirs lists the subdirectories of root that hold an NSS database.
func profileDirs(root string) []string {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "cert9.db")); err == nil {
			out = append(out, dir)
		}
	}
	return out
}
