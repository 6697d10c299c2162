// Package winpkg builds certagent's Windows Installer package on Linux with
// Debian's wixl (msitools), then patches, with msibuild, the few rows wixl
// cannot express, and optionally Authenticode-signs the exe and the MSI with
// osslsigncode.
package winpkg

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/certagent/certagent/packaging"
	"github.com/certagent/certagent/platform"
)

// ErrBadOptions reports options that cannot produce a package.
var ErrBadOptions = errors.New("winpkg: bad options")

// UpgradeCode ties every certagent MSI together (major upgrades, Intune and
// SCCM detection). It must never change; certagent.wxs carries the same.
const UpgradeCode = "{5E0C7A3B-2D4F-4B8A-9C61-8F2E4D7A1B05}"

// Properties are the public properties an admin passes on the msiexec
// command line; each lands in HKLM\SOFTWARE\Policies\certagent under the
// config key of the same meaning.
var Properties = map[string]string{
	"CONTROL_PLANE_URL": "control_plane_url",
	"ACCOUNT_ID":        "account_id",
	"API_TOKEN":         "api_token",
}

// msiVersionRE is Windows Installer's ProductVersion: three or four
// numbers (it goes into msibuild SQL too, so nothing else may pass).
var msiVersionRE = regexp.MustCompile(`^\d{1,3}\.\d{1,3}\.\d{1,5}(\.\d{1,5})?$`)

// Options say what to build.
type Options struct {
	// Version is the MSI's numeric a.b.c[.d] (packaging.Version.MSI).
	Version string
	// Name is the file's version label (packaging.Version.Display).
	Name string
	// Arch is the GOARCH of Exe. wixl 0.101 builds x64 (and x86) MSIs
	// only; arm64 is refused with ErrBadOptions.
	Arch string
	// Exe is certagent.exe for windows/Arch.
	Exe string
	// OutDir receives the MSI.
	OutDir string
	// SignCert and SignKey (PEM) Authenticode-sign the exe before it goes
	// in and the MSI afterwards; both empty means unsigned.
	SignCert, SignKey string
	// TimestampURL is an RFC 3161 server for the signatures ("" = none).
	TimestampURL string
	// MTime is stamped on the staged exe (the cabinet records file dates).
	MTime time.Time
}

// Build writes certagent-<Name>-x64.msi into opts.OutDir and returns its
// path.
func Build(ctx context.Context, opts Options) (string, error) {
	if opts.Version == "" || opts.Exe == "" || opts.OutDir == "" {
		return "", fmt.Errorf("%w: version, exe and out dir are required", ErrBadOptions)
	}
	if !msiVersionRE.MatchString(opts.Version) {
		return "", fmt.Errorf("%w: version %q is not a numeric MSI version (a.b.c or a.b.c.d)", ErrBadOptions, opts.Version)
	}
	if opts.Arch != "amd64" {
		return "", fmt.Errorf("%w: arch %q: wixl 0.101 builds x64 MSIs only (no arm64 support)", ErrBadOptions, opts.Arch)
	}
	if (opts.SignCert == "") != (opts.SignKey == "") {
		return "", fmt.Errorf("%w: signing needs both a certificate and a key", ErrBadOptions)
	}
	name := opts.Name
	if name == "" {
		name = opts.Version
	}
	if strings.ContainsAny(name, `/\`) {
		return "", fmt.Errorf("%w: name %q", ErrBadOptions, name)
	}
	stage, err := os.MkdirTemp("", "certagent-winpkg-")
	if err != nil {
		return "", fmt.Errorf("winpkg: temp dir: %w", err)
	}
	defer os.RemoveAll(stage)
	sub, err := fs.Sub(packaging.Assets, "windows")
	if err != nil {
		return "", fmt.Errorf("winpkg: assets: %w", err)
	}
	if err := os.CopyFS(stage, sub); err != nil {
		return "", fmt.Errorf("winpkg: stage assets: %w", err)
	}
	exe := filepath.Join(stage, "certagent.exe")
	if err := copyFile(opts.Exe, exe); err != nil {
		return "", err
	}
	mtime := opts.MTime
	if mtime.IsZero() {
		mtime = time.Unix(0, 0)
	}
	if opts.SignCert != "" {
		if err := sign(ctx, exe, opts, ""); err != nil {
			return "", err
		}
	}
	if err := os.Chtimes(exe, mtime, mtime); err != nil {
		return "", fmt.Errorf("winpkg: %w", err)
	}

	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return "", fmt.Errorf("winpkg: out dir: %w", err)
	}
	exeBytes, err := os.ReadFile(exe)
	if err != nil {
		return "", fmt.Errorf("winpkg: %w", err)
	}
	wxs, err := os.ReadFile(filepath.Join(stage, "certagent.wxs"))
	if err != nil {
		return "", fmt.Errorf("winpkg: %w", err)
	}
	msi := filepath.Join(stage, "certagent.msi")
	started := time.Now()
	if _, err := run(ctx, stage, "wixl", "-a", "x64",
		"-D", "Version="+opts.Version, "-D", "ProductCode="+ProductCode(opts.Version),
		"-D", "AgentExe=certagent.exe", // wixl wants a path relative to its cwd
		"-o", msi, filepath.Join(stage, "certagent.wxs")); err != nil {
		return "", err
	}
	for _, q := range Patches(opts.Version) {
		if _, err := run(ctx, stage, "msibuild", msi, "-q", q); err != nil {
			return "", fmt.Errorf("winpkg: patch: %w", err)
		}
	}
	// wixl ignores Package/@Id and draws a random package code; set one
	// derived from everything that went in, as the reproducible equivalent.
	pkgCode := guid("package", opts.Version, string(wxs), string(exeBytes))
	if _, err := run(ctx, stage, "msibuild", msi, "-s", "certagent trust-store agent", "certagent", "x64;1033", pkgCode); err != nil {
		return "", fmt.Errorf("winpkg: summary: %w", err)
	}
	if err := fixSummaryTimes(msi, started.Add(-2*time.Second), time.Now().Add(2*time.Second), mtime); err != nil {
		return "", err
	}
	if opts.SignCert != "" {
		if err := sign(ctx, msi, opts, "-add-msi-dse"); err != nil {
			return "", err
		}
	}
	out := filepath.Join(opts.OutDir, "certagent-"+name+"-x64.msi")
	if err := copyFile(msi, out); err != nil {
		return "", err
	}
	return out, nil
}

// Patches are the msibuild SQL statements applied after wixl, each for a
// feature wixl 0.101 cannot express in WiX source.
func Patches(version string) []string {
	secure := []string{"WIX_DOWNGRADE_DETECTED", "WIX_UPGRADE_DETECTED"}
	for _, p := range []string{"CONTROL_PLANE_URL", "ACCOUNT_ID", "API_TOKEN"} {
		secure = append(secure, p, "SAVED_"+p)
	}
	const (
		// Custom action type 34 (exe in a directory) + 0x40 (ignore the
		// exit code) + 0x400 (deferred) + 0x800 (no impersonation: SYSTEM).
		scType = 34 | 0x40 | 0x400 | 0x800
		// Upgrade attributes: migrate features | VersionMaxInclusive, the
		// equivalent of AllowSameVersionUpgrades.
		upgradeAttrs = 0x1 | 0x200
	)
	q := []string{
		// Public properties must be "secure" to pass from the client to
		// the elevated server side of a managed install; declaring this in
		// WiX next to MajorUpgrade makes wixl write a duplicate row.
		"UPDATE `Property` SET `Value` = '" + strings.Join(secure, ";") + "' WHERE `Property` = 'SecureCustomProperties'",
		// The Upgrade row's Attributes is part of its primary key, so it is
		// replaced rather than updated.
		"DELETE FROM `Upgrade` WHERE `ActionProperty` = 'WIX_UPGRADE_DETECTED'",
		fmt.Sprintf("INSERT INTO `Upgrade` (`UpgradeCode`, `VersionMax`, `Attributes`, `ActionProperty`) VALUES ('%s', '%s', %d, 'WIX_UPGRADE_DETECTED')", UpgradeCode, version, upgradeAttrs),
		// Service recovery through sc.exe (no ServiceConfig in wixl), right
		// after InstallServices (5800) and before StartServices (5900).
		fmt.Sprintf("INSERT INTO `CustomAction` (`Action`, `Type`, `Source`, `Target`) VALUES ('ServiceRecovery', %d, 'System64Folder', '\"[System64Folder]sc.exe\" failure certagent %s')", scType, ScFailureArgs()),
		fmt.Sprintf("INSERT INTO `CustomAction` (`Action`, `Type`, `Source`, `Target`) VALUES ('ServiceRecoveryFlag', %d, 'System64Folder', '\"[System64Folder]sc.exe\" failureflag certagent 1')", scType),
		// Delayed automatic start, as `certagent service install` sets it:
		// after the boot rush, when the network is up.
		fmt.Sprintf("INSERT INTO `CustomAction` (`Action`, `Type`, `Source`, `Target`) VALUES ('ServiceDelayedStart', %d, 'System64Folder', '\"[System64Folder]sc.exe\" config certagent start= delayed-auto')", scType),
		"INSERT INTO `InstallExecuteSequence` (`Action`, `Condition`, `Sequence`) VALUES ('ServiceRecovery', 'NOT REMOVE=\"ALL\"', 5810)",
		"INSERT INTO `InstallExecuteSequence` (`Action`, `Condition`, `Sequence`) VALUES ('ServiceRecoveryFlag', 'NOT REMOVE=\"ALL\"', 5811)",
		"INSERT INTO `InstallExecuteSequence` (`Action`, `Condition`, `Sequence`) VALUES ('ServiceDelayedStart', 'NOT REMOVE=\"ALL\"', 5812)",
	}
	// An unset property writes no registry value at all (wixl cannot parse
	// Component/Condition).
	for comp, prop := range map[string]string{
		"PolicyControlPlaneURL": "CONTROL_PLANE_URL",
		"PolicyAccountID":       "ACCOUNT_ID",
		"PolicyAPIToken":        "API_TOKEN",
	} {
		q = append(q, "UPDATE `Component` SET `Condition` = '"+prop+"' WHERE `Component` = '"+comp+"'")
	}
	return q
}

// ProductCode is the MSI ProductCode for a version: new per version, as
// major upgrades require, and stable across rebuilds.
func ProductCode(version string) string { return guid("product", UpgradeCode, version) }

// guid derives a GUID from its inputs (SHA-256, shaped as a version-5-style
// name-based UUID).
func guid(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	b := h.Sum(nil)[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return strings.ToUpper(fmt.Sprintf("{%x-%x-%x-%x-%x}", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
}

// fixSummaryTimes replaces the creation and last-saved times that wixl and
// msibuild stamp into the summary information (VT_FILETIME properties:
// type 0x40, then 100 ns ticks since 1601) with mtime. msitools 0.101 has no
// SOURCE_DATE_EPOCH support. Only FILETIMEs inside [from, to], the build's
// own window, are touched, and exactly two must be found.
func fixSummaryTimes(msi string, from, to, mtime time.Time) error {
	b, err := os.ReadFile(msi)
	if err != nil {
		return fmt.Errorf("winpkg: %w", err)
	}
	ticks := func(t time.Time) uint64 { return uint64(t.Unix()+11644473600) * 1e7 }
	lo, hi, want := ticks(from), ticks(to), ticks(mtime)
	n := 0
	for i := 0; i+12 <= len(b); i++ {
		if binary.LittleEndian.Uint32(b[i:]) != 0x40 {
			continue
		}
		if ft := binary.LittleEndian.Uint64(b[i+4:]); ft >= lo && ft <= hi {
			binary.LittleEndian.PutUint64(b[i+4:], want)
			n++
			i += 11
		}
	}
	if n != 2 {
		return fmt.Errorf("winpkg: summary times: found %d build-time stamps, want 2 (created, last saved)", n)
	}
	if err := os.WriteFile(msi, b, 0o644); err != nil {
		return fmt.Errorf("winpkg: %w", err)
	}
	return nil
}

func sign(ctx context.Context, path string, opts Options, extra string) error {
	signed := path + ".signed"
	args := []string{"sign", "-certs", opts.SignCert, "-key", opts.SignKey, "-h", "sha256",
		"-n", "certagent", "-i", "https://github.com/certagent/certagent"}
	if extra != "" {
		args = append(args, extra)
	}
	if opts.TimestampURL != "" {
		args = append(args, "-ts", opts.TimestampURL)
	}
	args = append(args, "-in", path, "-out", signed)
	if _, err := run(ctx, filepath.Dir(path), "osslsigncode", args...); err != nil {
		return fmt.Errorf("winpkg: sign %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(signed, path); err != nil {
		return fmt.Errorf("winpkg: sign %s: %w", filepath.Base(path), err)
	}
	return nil
}

// run runs a build tool and returns its output; a failure keeps the argv
// and the tool's output in the error.
func run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("winpkg: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.Bytes(), nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("winpkg: %w", err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		return fmt.Errorf("winpkg: %w", err)
	}
	return nil
}

// ScFailureArgs are `sc.exe failure certagent`'s arguments for the recovery
// schedule `certagent service install` sets (platform.WindowsRecoveryDelays),
// so the MSI and the agent agree.
func ScFailureArgs() string {
	var acts []string
	for _, d := range platform.WindowsRecoveryDelays() {
		acts = append(acts, fmt.Sprintf("restart/%d", d.Milliseconds()))
	}
	return fmt.Sprintf("reset= %d actions= %s", int64(platform.WindowsRecoveryReset/time.Second), strings.Join(acts, "/"))
}
