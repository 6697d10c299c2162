package platform

import (
	"fmt"
	"strings"

	"howett.net/plist"
)

// OSVersion describes the running OS release for people reading a device
// list: "Debian GNU/Linux 12 (bookworm)", "macOS 14.5 (23F79)",
// "Windows 11 Pro 23H2 (build 22631.3737)". Best effort: "" when the
// release cannot be read.
func OSVersion() string { return osVersion() }

// linuxVersion describes an os-release(5) file's release.
func linuxVersion(r OSRelease) string {
	switch {
	case r.PrettyName != "":
		return r.PrettyName
	case r.Name != "":
		return strings.TrimSpace(r.Name + " " + r.VersionID)
	}
	return r.ID
}

// macSystemVersion is what /System/Library/CoreServices/SystemVersion.plist
// says about the release.
type macSystemVersion struct {
	ProductName         string `plist:"ProductName"`
	ProductVersion      string `plist:"ProductVersion"`
	ProductBuildVersion string `plist:"ProductBuildVersion"`
}

// macVersion describes the release from SystemVersion.plist's bytes.
func macVersion(b []byte) (string, error) {
	var v macSystemVersion
	if _, err := plist.Unmarshal(b, &v); err != nil {
		return "", fmt.Errorf("system version: %w", err)
	}
	if v.ProductVersion == "" {
		return "", fmt.Errorf("system version: no ProductVersion")
	}
	name := v.ProductName
	if name == "" || name == "Mac OS X" {
		name = "macOS"
	}
	s := name + " " + v.ProductVersion
	if v.ProductBuildVersion != "" {
		s += " (" + v.ProductBuildVersion + ")"
	}
	return s, nil
}

// windowsRelease is what the registry's CurrentVersion key says.
type windowsRelease struct {
	ProductName    string // "Windows 10 Pro": still "10" on Windows 11
	DisplayVersion string // "23H2"; older releases have ReleaseId "2009"
	Build          uint64 // CurrentBuildNumber
	UBR            uint64 // update build revision
}

// firstWindows11Build is the first build of Windows 11, whose registry
// ProductName still says "Windows 10".
const firstWindows11Build = 22000

func (w windowsRelease) String() string {
	name := w.ProductName
	if name == "" {
		name = "Windows"
	}
	if w.Build >= firstWindows11Build && strings.HasPrefix(name, "Windows 10") {
		name = "Windows 11" + strings.TrimPrefix(name, "Windows 10")
	}
	if w.DisplayVersion != "" {
		name += " " + w.DisplayVersion
	}
	if w.Build == 0 {
		return name
	}
	if w.UBR != 0 {
		return fmt.Sprintf("%s (build %d.%d)", name, w.Build, w.UBR)
	}
	return fmt.Sprintf("%s (build %d)", name, w.Build)
}
