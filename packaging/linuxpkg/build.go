// Package linuxpkg builds certagent's deb, rpm, apk and Arch packages with
// nfpm used as a library: no YAML, no nfpm binary, the same contents and
// maintainer scripts for every format.
package linuxpkg

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	// Each packager registers itself with nfpm in init().
	_ "github.com/goreleaser/nfpm/v2/apk"
	_ "github.com/goreleaser/nfpm/v2/arch"
	_ "github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm"

	"github.com/certagent/certagent/packaging"
)

// Formats are nfpm's names for the packages we build, in build order.
var Formats = []string{"deb", "rpm", "apk", "archlinux"}

// ErrBadOptions reports options that cannot produce a package.
var ErrBadOptions = errors.New("linuxpkg: bad options")

// versionRE is a semver-like version every format accepts (it ends up in
// file names and control fields).
var versionRE = regexp.MustCompile(`^\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$`)

// Options say what to build.
type Options struct {
	// Version is the package version, semver-like ("1.2.3",
	// "1.2.3+4.gabcdef0"); see PackageVersion.
	Version string
	// Arch is the GOARCH the binary was built for (amd64, arm64).
	Arch string
	// Binary is the certagent executable for linux/Arch.
	Binary string
	// OutDir receives the packages; it is created if missing.
	OutDir string
	// Formats to build; empty means all of Formats.
	Formats []string
	// MTime is stamped on every file and header, for reproducible output
	// (SOURCE_DATE_EPOCH). Zero means the Unix epoch, never "now".
	MTime time.Time
}

// Paths of what the package installs. The unit lives under /lib on Debian
// (usrmerge is not assumed) and under /usr/lib elsewhere.
const (
	BinPath        = "/usr/bin/certagent"
	ConfigPath     = "/etc/certagent/config.json"
	ConfigDir      = "/etc/certagent"
	StateDir       = "/var/lib/certagent"
	debUnitPath    = "/lib/systemd/system/certagent.service"
	otherUnitPath  = "/usr/lib/systemd/system/certagent.service"
	docDir         = "/usr/share/doc/certagent"
	lintianPath    = "/usr/share/lintian/overrides/certagent"
	maintainerLine = "certagent maintainers <certagent@users.noreply.github.com>"
)

// Build writes one package per format into opts.OutDir and returns their
// paths.
func Build(ctx context.Context, opts Options) ([]string, error) {
	if opts.Version == "" || opts.Arch == "" || opts.Binary == "" || opts.OutDir == "" {
		return nil, fmt.Errorf("%w: version, arch, binary and out dir are required", ErrBadOptions)
	}
	if !versionRE.MatchString(opts.Version) {
		return nil, fmt.Errorf("%w: version %q", ErrBadOptions, opts.Version)
	}
	if opts.Arch != "amd64" && opts.Arch != "arm64" {
		return nil, fmt.Errorf("%w: arch %q: certagent ships amd64 and arm64", ErrBadOptions, opts.Arch)
	}
	if _, err := os.Stat(opts.Binary); err != nil {
		return nil, fmt.Errorf("linuxpkg: binary: %w", err)
	}
	formats := opts.Formats
	if len(formats) == 0 {
		formats = Formats
	}
	mtime := opts.MTime
	if mtime.IsZero() {
		mtime = time.Unix(0, 0)
	}
	mtime = mtime.UTC()

	src, err := os.MkdirTemp("", "certagent-linuxpkg-")
	if err != nil {
		return nil, fmt.Errorf("linuxpkg: temp dir: %w", err)
	}
	defer os.RemoveAll(src)
	if err := stage(src, opts.Version, mtime); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("linuxpkg: out dir: %w", err)
	}

	cfg := config(src, opts, mtime)
	var out []string
	for _, format := range formats {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		p, err := buildOne(cfg, format, opts.OutDir)
		if err != nil {
			return out, err
		}
		out = append(out, p)
	}
	return out, nil
}

func buildOne(cfg nfpm.Config, format, outDir string) (string, error) {
	info, err := cfg.Get(format)
	if err != nil {
		return "", fmt.Errorf("linuxpkg: %s: config: %w", format, err)
	}
	if format == "apk" || format == "archlinux" {
		// Their description is one line (pkgdesc); nfpm would join the
		// long deb text into a run-on sentence.
		info.Description, _, _ = strings.Cut(info.Description, "\n")
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, format); err != nil {
		return "", fmt.Errorf("linuxpkg: %s: contents: %w", format, err)
	}
	pkgr, err := nfpm.Get(format)
	if err != nil {
		return "", fmt.Errorf("linuxpkg: %s: %w", format, err)
	}
	path := filepath.Join(outDir, pkgr.ConventionalFileName(info))
	// Write beside the target and rename, so a failed build never leaves a
	// truncated package that looks complete.
	tmp, err := os.CreateTemp(outDir, ".partial-*")
	if err != nil {
		return "", fmt.Errorf("linuxpkg: %s: %w", format, err)
	}
	defer os.Remove(tmp.Name())
	if err := pkgr.Package(info, tmp); err != nil {
		tmp.Close()
		return "", fmt.Errorf("linuxpkg: %s: package: %w", format, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return "", fmt.Errorf("linuxpkg: %s: %w", format, err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("linuxpkg: %s: %w", format, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("linuxpkg: %s: %w", format, err)
	}
	return path, nil
}

// stage copies the embedded linux/ assets into dir, with every mtime set to
// mtime (nfpm's apk writer takes script mtimes from the source files), and
// writes the Debian changelog.
func stage(dir, version string, mtime time.Time) error {
	sub, err := fs.Sub(packaging.Assets, "linux")
	if err != nil {
		return fmt.Errorf("linuxpkg: assets: %w", err)
	}
	if err := os.CopyFS(dir, sub); err != nil {
		return fmt.Errorf("linuxpkg: stage assets: %w", err)
	}
	cl, err := gzipBytes(changelog(version, mtime), mtime)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "changelog.gz"), cl, 0o644); err != nil {
		return fmt.Errorf("linuxpkg: changelog: %w", err)
	}
	man, err := os.ReadFile(filepath.Join(dir, "certagent.8"))
	if err != nil {
		return fmt.Errorf("linuxpkg: man page: %w", err)
	}
	if man, err = gzipBytes(man, mtime); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "certagent.8.gz"), man, 0o644); err != nil {
		return fmt.Errorf("linuxpkg: man page: %w", err)
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, mtime, mtime)
	})
}

// changelog is the minimal Debian-format changelog a native package must
// carry; release notes live with the project, not in the package.
func changelog(version string, mtime time.Time) []byte {
	return []byte(fmt.Sprintf("certagent (%s) stable; urgency=medium\n\n"+
		"  * Release %s.\n"+
		"    Notes: https://github.com/certagent/certagent/releases\n\n"+
		" -- %s  %s\n", DebVersion(version), version, maintainerLine, mtime.Format(time.RFC1123Z)))
}

// gzipBytes compresses b the way Debian wants documentation compressed:
// maximum compression, no file name, a fixed mtime (reproducible bytes).
func gzipBytes(b []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("linuxpkg: gzip: %w", err)
	}
	zw.ModTime = mtime
	if _, err := zw.Write(b); err != nil {
		return nil, fmt.Errorf("linuxpkg: gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("linuxpkg: gzip: %w", err)
	}
	return buf.Bytes(), nil
}

func config(src string, opts Options, mtime time.Time) nfpm.Config {
	s := func(name string) string { return filepath.Join(src, name) }
	fi := func(mode os.FileMode) *files.ContentFileInfo {
		return &files.ContentFileInfo{Mode: mode, MTime: mtime, Owner: "root", Group: "root"}
	}
	contents := files.Contents{
		{Source: opts.Binary, Destination: BinPath, FileInfo: fi(0o755)},
		// The admin's file: kept across upgrades (deb conffile, rpm
		// %config(noreplace)). Site settings from MDM/Ansible go in
		// managed.json, which no package owns.
		{Source: s("config.json"), Destination: ConfigPath, Type: files.TypeConfigNoReplace, FileInfo: fi(0o644)},
		{Destination: ConfigDir, Type: files.TypeDir, FileInfo: fi(0o755)},
		{Destination: StateDir, Type: files.TypeDir, FileInfo: fi(0o755)},
		{Source: s("certagent.service"), Destination: debUnitPath, Packager: "deb", FileInfo: fi(0o644)},
		{Source: s("certagent.service"), Destination: otherUnitPath, Packager: "rpm", FileInfo: fi(0o644)},
		{Source: s("certagent.service"), Destination: otherUnitPath, Packager: "apk", FileInfo: fi(0o644)},
		{Source: s("certagent.service"), Destination: otherUnitPath, Packager: "archlinux", FileInfo: fi(0o644)},
		{Source: s("copyright"), Destination: docDir + "/copyright", FileInfo: fi(0o644)},
		{Source: s("changelog.gz"), Destination: docDir + "/changelog.gz", Packager: "deb", FileInfo: fi(0o644)},
		{Source: s("certagent.8.gz"), Destination: "/usr/share/man/man8/certagent.8.gz", FileInfo: fi(0o644)},
		{Source: s("lintian-overrides"), Destination: lintianPath, Packager: "deb", FileInfo: fi(0o644)},
	}
	return nfpm.Config{Info: nfpm.Info{
		Name:       "certagent",
		Arch:       opts.Arch,
		Platform:   "linux",
		Version:    opts.Version,
		Section:    "admin",
		Priority:   "optional",
		Maintainer: maintainerLine,
		Vendor:     "certagent",
		Homepage:   "https://github.com/certagent/certagent",
		License:    "LicenseRef-certagent",
		MTime:      mtime,
		Description: "keeps the organisation's TLS-inspection root CAs trusted\n" +
			"certagent polls a Cloudflare Zero Trust compatible control plane and\n" +
			"installs every available inspection root into the system, NSS\n" +
			"(Chrome, Firefox) and Java trust stores, and removes the ones that\n" +
			"were withdrawn. Removing the package removes every root it installed.",
		Overridables: nfpm.Overridables{
			Contents: contents,
			Scripts: nfpm.Scripts{
				PostInstall: s("postinstall.sh"),
				PreRemove:   s("preremove.sh"),
				PostRemove:  s("postremove.sh"),
			},
			// Arch and apk upgrades call only their upgrade hooks; the
			// post-install work (restart on the new binary) is the same.
			ArchLinux: nfpm.ArchLinux{
				Packager: maintainerLine,
				Scripts:  nfpm.ArchLinuxScripts{PostUpgrade: s("postinstall.sh")},
			},
			APK: nfpm.APK{Scripts: nfpm.APKScripts{PostUpgrade: s("postinstall.sh")}},
			RPM: nfpm.RPM{
				Summary: "Keeps the organisation's TLS-inspection root CAs trusted",
				Group:   "System Environment/Daemons",
				// A fixed build host: the default is os.Hostname(), which
				// would make the rpm differ per builder.
				BuildHost: "certagent-build",
				Packager:  maintainerLine,
			},
		},
	}}
}

// DebVersion is how nfpm spells a semver version in a deb: the prerelease
// follows a tilde, so 1.2.4~git5 sorts before 1.2.4.
func DebVersion(semver string) string {
	return strings.Replace(semver, "-", "~", 1)
}
