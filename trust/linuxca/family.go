package linuxca

import (
	"fmt"
	"slices"
	"strings"

	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
)

// Family is one row of the distro table: where a distribution family keeps
// the administrator's extra roots and which tool folds them into the
// extracted bundle every TLS library reads.
type Family struct {
	// Name names the row in reports ("debian", "fedora").
	Name string
	// IDs are the os-release ids the row serves; ID is looked up first, then
	// each ID_LIKE in order.
	IDs []string
	// AnchorDir holds the administrator's roots; we write our files there.
	AnchorDir string
	// Ext is the extension of the files we write.
	Ext string
	// Consumes are the extensions the refresh tool reads in AnchorDir; nil
	// means every file (p11-kit reads them all).
	Consumes []string
	// Flat says the refresh tool reads only AnchorDir's own files, not its
	// subdirectories (p11-kit; TestP11KitSkipsOurTempDir). Otherwise
	// subdirectories are read too, as Debian's find -L does.
	Flat bool
	// Tools are candidate absolute paths of the refresh tool, first existing
	// wins (merged and split /usr both exist in the wild).
	Tools []string
	// Args are the refresh tool's arguments.
	Args []string
	// RemoveArgs, when non-nil, replace Args for a refresh after a removal
	// (when LinksBesideBundle is set: only if unlinking failed).
	RemoveArgs []string
	// LinksBesideBundle says the refresh tool keeps, in the bundle's
	// directory, a link to every anchor and hash links (<hash>.N) to those
	// links, and a plain run leaves them dangling after a removal. Apply
	// then deletes, itself, the links that dangle into AnchorDir and the
	// hash links naming them, so a plain refresh suffices: --fresh would
	// rebuild every link of the distribution's ~150 roots.
	LinksBesideBundle bool
	// Bundle is the extracted PEM bundle the refresh writes: what curl,
	// OpenSSL and Go actually read, so List checks it.
	Bundle string
	// Writes are the directories the refresh tool (and the hooks it runs)
	// writes besides AnchorDir: links, extracted bundles, Java keystores.
	Writes []string
	// Package provides the refresh tool, for "install it" hints.
	Package string
	// Unsupported, when set, says why we never write here.
	Unsupported string
}

// Families is the distro table. Detection is by os-release, never by which
// directory happens to exist: a Debian box with /etc/pki from a stray
// package must still use the Debian layout.
var Families = []Family{
	// Debian, Ubuntu, Mint, Pop!_OS (ID_LIKE=debian or ubuntu): only *.crt in
	// PEM form are read. After a removal a plain run leaves the dangling
	// links and their <hash>.0 twins behind; we delete those ourselves
	// (LinksBesideBundle) and keep --fresh for when that fails.
	{
		Name: "debian", IDs: []string{"debian", "ubuntu"},
		AnchorDir: "/usr/local/share/ca-certificates", Ext: ".crt", Consumes: []string{".crt"},
		Tools: []string{"/usr/sbin/update-ca-certificates", "/usr/bin/update-ca-certificates", "/sbin/update-ca-certificates"},
		Args:  nil, RemoveArgs: []string{"--fresh"}, LinksBesideBundle: true,
		Bundle: "/etc/ssl/certs/ca-certificates.crt", Package: "ca-certificates",
		// certs/ holds the links, the bundle and (jks-keystore hook) java/cacerts;
		// /etc/ca-certificates the hooks' state.
		Writes: []string{"/etc/ssl/certs", "/etc/ca-certificates"},
	},
	// Fedora, RHEL, CentOS, Rocky, Alma, Oracle, Amazon Linux (ID_LIKE
	// carries fedora or rhel): p11-kit reads every file in the anchors dir,
	// PEM or DER; update-ca-trust extract regenerates every format.
	{
		Name: "fedora", IDs: []string{"fedora", "rhel", "centos", "amzn", "rocky", "almalinux", "ol"},
		AnchorDir: "/etc/pki/ca-trust/source/anchors", Ext: ".pem", Flat: true,
		Tools:  []string{"/usr/bin/update-ca-trust", "/usr/sbin/update-ca-trust"},
		Args:   []string{"extract"},
		Bundle: "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", Package: "ca-certificates",
		Writes: []string{"/etc/pki/ca-trust/extracted"},
	},
	// Arch, Manjaro, EndeavourOS (ID_LIKE=arch): p11-kit's trust tool
	// extracts the compat bundles (ca-certificates-utils).
	{
		Name: "arch", IDs: []string{"arch", "manjaro", "endeavouros"},
		AnchorDir: "/etc/ca-certificates/trust-source/anchors", Ext: ".crt", Flat: true,
		Tools:  []string{"/usr/bin/trust"},
		Args:   []string{"extract-compat"},
		Bundle: "/etc/ca-certificates/extracted/tls-ca-bundle.pem", Package: "p11-kit",
		Writes: []string{"/etc/ca-certificates/extracted", "/etc/ssl/certs"},
	},
	// openSUSE Leap/Tumbleweed, SLES (ID_LIKE "suse opensuse"): admins use
	// /etc/pki/trust/anchors (/usr/share/pki/trust/anchors is for packages);
	// SUSE's update-ca-certificates is p11-kit based and handles removals.
	{
		Name: "suse", IDs: []string{"suse", "opensuse", "sles", "sled", "opensuse-leap", "opensuse-tumbleweed"},
		AnchorDir: "/etc/pki/trust/anchors", Ext: ".pem", Flat: true,
		Tools:  []string{"/usr/sbin/update-ca-certificates", "/usr/bin/update-ca-certificates"},
		Bundle: "/var/lib/ca-certificates/ca-bundle.pem", Package: "ca-certificates",
		Writes: []string{"/var/lib/ca-certificates", "/etc/ssl/certs"},
	},
	// Alpine: its own C update-ca-certificates, Debian's layout, *.crt.
	{
		Name: "alpine", IDs: []string{"alpine"},
		AnchorDir: "/usr/local/share/ca-certificates", Ext: ".crt", Consumes: []string{".crt"},
		Tools:  []string{"/usr/sbin/update-ca-certificates", "/usr/bin/update-ca-certificates"},
		Bundle: "/etc/ssl/certs/ca-certificates.crt", Package: "ca-certificates",
		Writes: []string{"/etc/ssl/certs"},
	},
	// Gentoo ships Debian's update-ca-certificates script and layout.
	{
		Name: "gentoo", IDs: []string{"gentoo"},
		AnchorDir: "/usr/local/share/ca-certificates", Ext: ".crt", Consumes: []string{".crt"},
		Tools:      []string{"/usr/sbin/update-ca-certificates", "/usr/bin/update-ca-certificates"},
		RemoveArgs: []string{"--fresh"}, LinksBesideBundle: true,
		Bundle: "/etc/ssl/certs/ca-certificates.crt", Package: "app-misc/ca-certificates",
		Writes: []string{"/etc/ssl/certs", "/etc/ca-certificates"},
	},
	// NixOS builds /etc/ssl/certs from configuration.nix into the read-only
	// /nix/store: anything we wrote would be gone at the next rebuild.
	{
		Name: "nixos", IDs: []string{"nixos"},
		Unsupported: "NixOS builds its trust store from configuration.nix into the read-only /nix/store; " +
			"add the root to security.pki.certificateFiles, or use the bundle:PATH store",
	},
}

// Detect returns the table row for osr: ID first, then each ID_LIKE.
func Detect(osr platform.OSRelease) (Family, error) {
	for _, id := range osr.IDs() {
		for _, f := range Families {
			if slices.Contains(f.IDs, id) {
				return f, nil
			}
		}
	}
	return Family{}, fmt.Errorf("%w: system: distribution %s is not one we know (%s); use the bundle:PATH or dir:PATH store",
		trust.ErrUnavailable, osr, knownIDs())
}

func knownIDs() string {
	var ids []string
	for _, f := range Families {
		if f.Unsupported == "" {
			ids = append(ids, f.IDs...)
		}
	}
	return "known: " + strings.Join(ids, ", ")
}

// consumes reports whether the refresh tool reads a file named name.
func (f Family) consumes(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	if f.Consumes == nil {
		return true
	}
	for _, ext := range f.Consumes {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}
