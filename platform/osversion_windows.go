package platform

import (
	"strconv"

	"golang.org/x/sys/windows/registry"
)

// windowsVersionKey is where Windows describes its release.
const windowsVersionKey = `SOFTWARE\Microsoft\Windows NT\CurrentVersion`

func osVersion() string {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, windowsVersionKey, registry.QUERY_VALUE)
	if err != nil {
		return ""
	}
	defer k.Close()
	return readWindowsRelease(k).String()
}

// readWindowsRelease reads what the key has; a value it lacks stays zero.
func readWindowsRelease(k registry.Key) windowsRelease {
	var w windowsRelease
	w.ProductName, _, _ = k.GetStringValue("ProductName")
	if w.DisplayVersion, _, _ = k.GetStringValue("DisplayVersion"); w.DisplayVersion == "" {
		w.DisplayVersion, _, _ = k.GetStringValue("ReleaseId")
	}
	if s, _, err := k.GetStringValue("CurrentBuildNumber"); err == nil {
		w.Build, _ = strconv.ParseUint(s, 10, 32)
	}
	w.UBR, _, _ = k.GetIntegerValue("UBR")
	return w
}
