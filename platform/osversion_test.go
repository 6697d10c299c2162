package platform

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLinuxVersion(t *testing.T) {
	tests := []struct {
		name string
		in   OSRelease
		want string
	}{
		{"pretty name", OSRelease{ID: "debian", Name: "Debian GNU/Linux", VersionID: "12", PrettyName: "Debian GNU/Linux 12 (bookworm)"}, "Debian GNU/Linux 12 (bookworm)"},
		{"name and version", OSRelease{ID: "fedora", Name: "Fedora Linux", VersionID: "40"}, "Fedora Linux 40"},
		{"name only (rolling)", OSRelease{ID: "arch", Name: "Arch Linux"}, "Arch Linux"},
		{"id only", OSRelease{ID: "alpine"}, "alpine"},
		{"nothing", OSRelease{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := linuxVersion(tt.in); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// sonoma is SystemVersion.plist as macOS 14.5 ships it.
const sonoma = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>BuildID</key>
	<string>7CD2C818-0C41-11EF-A1A7-4DA2A7A1B3E4</string>
	<key>ProductBuildVersion</key>
	<string>23F79</string>
	<key>ProductCopyright</key>
	<string>1983-2024 Apple Inc.</string>
	<key>ProductName</key>
	<string>macOS</string>
	<key>ProductUserVisibleVersion</key>
	<string>14.5</string>
	<key>ProductVersion</key>
	<string>14.5</string>
	<key>iOSSupportVersion</key>
	<string>17.5</string>
</dict>
</plist>
`

func TestMacVersion(t *testing.T) {
	tests := []struct {
		name, in, want, err string
	}{
		{"sonoma", sonoma, "macOS 14.5 (23F79)", ""},
		{"old product name", `<plist version="1.0"><dict><key>ProductName</key><string>Mac OS X</string><key>ProductVersion</key><string>10.15.7</string></dict></plist>`, "macOS 10.15.7", ""},
		{"no version", `<plist version="1.0"><dict><key>ProductName</key><string>macOS</string></dict></plist>`, "", "no ProductVersion"},
		{"not a plist", "ProductVersion=14.5", "", "system version"},
		{"an array", `<plist version="1.0"><array><string>14.5</string></array></plist>`, "", "system version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := macVersion([]byte(tt.in))
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestWindowsReleaseString(t *testing.T) {
	tests := []struct {
		name string
		in   windowsRelease
		want string
	}{
		{"windows 11 reports itself as 10", windowsRelease{ProductName: "Windows 10 Pro", DisplayVersion: "23H2", Build: 22631, UBR: 3737}, "Windows 11 Pro 23H2 (build 22631.3737)"},
		{"windows 10", windowsRelease{ProductName: "Windows 10 Enterprise", DisplayVersion: "22H2", Build: 19045, UBR: 4529}, "Windows 10 Enterprise 22H2 (build 19045.4529)"},
		{"server keeps its name", windowsRelease{ProductName: "Windows Server 2022 Datacenter", DisplayVersion: "21H2", Build: 20348, UBR: 2527}, "Windows Server 2022 Datacenter 21H2 (build 20348.2527)"},
		{"no update revision", windowsRelease{ProductName: "Windows 10 Pro", Build: 19041}, "Windows 10 Pro (build 19041)"},
		{"no build", windowsRelease{ProductName: "Windows 10 Pro"}, "Windows 10 Pro"},
		{"nothing", windowsRelease{}, "Windows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
