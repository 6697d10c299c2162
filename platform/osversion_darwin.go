package platform

import "os"

// macSystemVersionFile is where macOS describes its release.
const macSystemVersionFile = "/System/Library/CoreServices/SystemVersion.plist"

func osVersion() string {
	b, err := os.ReadFile(macSystemVersionFile)
	if err != nil {
		return ""
	}
	s, err := macVersion(b)
	if err != nil {
		return ""
	}
	return s
}
