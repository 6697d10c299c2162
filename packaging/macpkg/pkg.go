// Package macpkg writes macOS installer packages on any OS, with the
// standard library only: cpio (odc) payloads, the BOM, xar archives with an
// optional RSA signature, universal Mach-O binaries, and the product archive
// (Distribution + component package) that MDMs (Jamf, Intune, Kandji)
// install with `installer`. Debian has no xar writer suited to pkg and no
// mkbom, and the Go modules that exist are not reachable here, hence this.
//
// None of it has been run through Apple's installer on a real Mac; see
// packaging/README.md for what a macOS CI job must check before release.
package macpkg

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certagent/certagent/packaging"
)

// Identifiers shared by the pkg, its scripts, the LaunchDaemon and the MDM
// profiles in packaging/macos.
const (
	// Label is the LaunchDaemon label and the managed-preferences domain.
	Label = "dev.certagent.agent"
	// PkgID is the component package identifier (`pkgutil --pkgs`).
	PkgID = Label + ".pkg"
	// AppDir holds the binary and uninstall.sh.
	AppDir = "/Library/Application Support/certagent"
)

// ErrBadOptions reports options that cannot produce a package.
var ErrBadOptions = errors.New("macpkg: bad options")

// Options say what to build.
type Options struct {
	// Version is the package version (packaging.Version.Mac: dotted
	// numbers, which MDM tools compare).
	Version string
	// Name labels the file, certagent-<Name>.pkg (packaging.Version.Display);
	// "" means Version.
	Name string
	// AMD64 and ARM64 are the darwin builds joined into one universal
	// binary.
	AMD64, ARM64 string
	// OutDir receives certagent-<Name>.pkg.
	OutDir string
	// MTime is stamped on every entry (SOURCE_DATE_EPOCH); zero means the
	// Unix epoch.
	MTime time.Time
	// SignCert (PEM chain, leaf first) and SignKey (PEM RSA key) sign the
	// product archive; both empty means unsigned.
	SignCert, SignKey string
}

// Build writes the product archive and returns its path.
func Build(ctx context.Context, opts Options) (string, error) {
	if opts.Version == "" || opts.AMD64 == "" || opts.ARM64 == "" || opts.OutDir == "" {
		return "", fmt.Errorf("%w: version, both binaries and out dir are required", ErrBadOptions)
	}
	if opts.Name == "" {
		opts.Name = opts.Version
	}
	if strings.ContainsAny(opts.Version, "/\\<>&\"'") {
		return "", fmt.Errorf("%w: version %q", ErrBadOptions, opts.Version)
	}
	if strings.ContainsAny(opts.Name, "/\\<>&\"'") {
		return "", fmt.Errorf("%w: name %q", ErrBadOptions, opts.Name)
	}
	if (opts.SignCert == "") != (opts.SignKey == "") {
		return "", fmt.Errorf("%w: signing needs both a certificate and a key", ErrBadOptions)
	}
	mtime := opts.MTime
	if mtime.IsZero() {
		mtime = time.Unix(0, 0)
	}
	var signer *Signer
	if opts.SignCert != "" {
		s, err := LoadSigner(opts.SignCert, opts.SignKey)
		if err != nil {
			return "", err
		}
		signer = s
	}
	amd, err := os.ReadFile(opts.AMD64)
	if err != nil {
		return "", fmt.Errorf("macpkg: %w", err)
	}
	arm, err := os.ReadFile(opts.ARM64)
	if err != nil {
		return "", fmt.Errorf("macpkg: %w", err)
	}
	bin, slices, err := Universal(amd, arm)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	asset := func(name string) ([]byte, error) {
		b, err := fs.ReadFile(packaging.Assets, "macos/"+name)
		if err != nil {
			return nil, fmt.Errorf("macpkg: asset %s: %w", name, err)
		}
		return b, nil
	}
	var plist, uninstall, pre, post []byte
	for _, a := range []struct {
		dst  *[]byte
		name string
	}{{&plist, Label + ".plist"}, {&uninstall, "uninstall.sh"}, {&pre, "preinstall"}, {&post, "postinstall"}} {
		if *a.dst, err = asset(a.name); err != nil {
			return "", err
		}
	}

	payload := []Entry{
		{Path: ".", Dir: true, Mode: 0o755},
		{Path: "./Library", Dir: true, Mode: 0o755},
		// As on a stock Mac: root:admin.
		{Path: "./Library/Application Support", Dir: true, Mode: 0o755, GID: 80},
		{Path: "." + AppDir, Dir: true, Mode: 0o755},
		{Path: "." + AppDir + "/certagent", Mode: 0o755, Data: bin, Archs: slices},
		{Path: "." + AppDir + "/uninstall.sh", Mode: 0o755, Data: uninstall},
		{Path: "./Library/LaunchDaemons", Dir: true, Mode: 0o755},
		{Path: "./Library/LaunchDaemons/" + Label + ".plist", Mode: 0o644, Data: plist},
	}
	scripts := []Entry{
		{Path: ".", Dir: true, Mode: 0o755},
		{Path: "./postinstall", Mode: 0o755, Data: post},
		{Path: "./preinstall", Mode: 0o755, Data: pre},
	}
	comp, err := Component(payload, scripts, opts.Version, mtime)
	if err != nil {
		return "", err
	}
	dist := Distribution(opts.Version, installKBytes(payload))
	nodes := []*XarNode{
		XarFile("Distribution", 0o644, dist),
		XarDir("certagent.pkg", comp...),
	}
	var out bytes.Buffer
	if err := WriteXar(&out, nodes, mtime, signer); err != nil {
		return "", err
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return "", fmt.Errorf("macpkg: out dir: %w", err)
	}
	dst := filepath.Join(opts.OutDir, "certagent-"+opts.Name+".pkg")
	if err := os.WriteFile(dst, out.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("macpkg: %w", err)
	}
	return dst, nil
}

// Component returns the xar nodes of a component package: Bom, PackageInfo,
// Payload and Scripts.
func Component(payload, scripts []Entry, version string, mtime time.Time) ([]*XarNode, error) {
	bom, err := BOM(payload, mtime)
	if err != nil {
		return nil, err
	}
	var pl, sc bytes.Buffer
	if err := writeCpio(&pl, payload, mtime); err != nil {
		return nil, err
	}
	if err := writeCpio(&sc, scripts, mtime); err != nil {
		return nil, err
	}
	files := 0
	for _, e := range payload {
		if !e.Dir {
			files++
		}
	}
	return []*XarNode{
		XarFile("Bom", 0o644, bom),
		XarFile("PackageInfo", 0o644, PackageInfo(version, len(payload), installKBytes(payload))),
		XarFile("Payload", 0o644, pl.Bytes()),
		XarFile("Scripts", 0o644, sc.Bytes()),
	}, nil
}

func installKBytes(entries []Entry) int {
	n := 0
	for _, e := range entries {
		n += len(e.Data)
	}
	return (n + 1023) / 1024
}

// PackageInfo is the component package's metadata: installed as root at /,
// not relocatable (Installer would otherwise "find" an old copy elsewhere and
// upgrade that), existing directory permissions left alone.
func PackageInfo(version string, numberOfFiles, kbytes int) []byte {
	v := html.EscapeString(version)
	return []byte(`<?xml version="1.0" encoding="utf-8"?>
<pkg-info format-version="2" identifier="` + PkgID + `" version="` + v + `" install-location="/" auth="root" relocatable="false" overwrite-permissions="false" postinstall-action="none" generator-version="certagent-mkpkg">
    <payload numberOfFiles="` + fmt.Sprint(numberOfFiles) + `" installKBytes="` + fmt.Sprint(kbytes) + `"/>
    <bundle-version/>
    <upgrade-bundle/>
    <update-bundle/>
    <atomic-update-bundle/>
    <strict-identifier/>
    <relocate/>
    <scripts>
        <preinstall file="./preinstall"/>
        <postinstall file="./postinstall"/>
    </scripts>
</pkg-info>
`)
}

// Distribution is the product archive's installer script: one hidden
// choice, system volume only, Intel and Apple silicon, macOS 11 or later.
func Distribution(version string, kbytes int) []byte {
	v := html.EscapeString(version)
	return []byte(`<?xml version="1.0" encoding="utf-8"?>
<installer-gui-script minSpecVersion="2">
    <title>certagent</title>
    <options customize="never" require-scripts="false" hostArchitectures="x86_64,arm64" rootVolumeOnly="true"/>
    <domains enable_anywhere="false" enable_currentUserHome="false" enable_localSystem="true"/>
    <volume-check>
        <allowed-os-versions>
            <os-version min="11.0"/>
        </allowed-os-versions>
    </volume-check>
    <choices-outline>
        <line choice="default">
            <line choice="` + PkgID + `"/>
        </line>
    </choices-outline>
    <choice id="default"/>
    <choice id="` + PkgID + `" visible="false">
        <pkg-ref id="` + PkgID + `"/>
    </choice>
    <pkg-ref id="` + PkgID + `" version="` + v + `" onConclusion="none" installKBytes="` + fmt.Sprint(kbytes) + `">#certagent.pkg</pkg-ref>
</installer-gui-script>
`)
}

// LoadSigner reads a PEM certificate chain (leaf first) and a PEM RSA key
// (PKCS#1 or PKCS#8).
func LoadSigner(certFile, keyFile string) (*Signer, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSigner, err)
	}
	var chain []*x509.Certificate
	for {
		var blk *pem.Block
		blk, cb = pem.Decode(cb)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrSigner, certFile, err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: %s: no certificate", ErrSigner, certFile)
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSigner, err)
	}
	blk, _ := pem.Decode(kb)
	if blk == nil {
		return nil, fmt.Errorf("%w: %s: no PEM block", ErrSigner, keyFile)
	}
	var key *rsa.PrivateKey
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		key = k
	} else if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%w: %s: xar signatures need an RSA key", ErrSigner, keyFile)
		}
		key = rk
	} else {
		return nil, fmt.Errorf("%w: %s: not a PKCS#1 or PKCS#8 key", ErrSigner, keyFile)
	}
	return &Signer{Key: key, Chain: chain}, nil
}
