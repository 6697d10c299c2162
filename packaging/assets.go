// Package packaging holds the files the native packages ship (systemd unit,
// maintainer scripts, launchd plist, WiX source, MDM templates) and embeds
// them, so the builders under packaging/cmd produce the same bytes wherever
// they run. The builders themselves live in linuxpkg, macpkg and winpkg.
package packaging

import "embed"

// Assets are the per-OS files: linux/, macos/ and windows/.
//
//go:embed linux macos windows
var Assets embed.FS
