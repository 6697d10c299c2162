package platform

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/windows"
)

// defaultPaths puts everything under %ProgramData%\certagent, which only
// administrators and SYSTEM may write. The folder comes from the shell's
// known-folder API, not from the environment, which a service must not
// trust; the environment and the usual location are fallbacks.
func defaultPaths() Paths {
	pd, err := windows.KnownFolderPath(windows.FOLDERID_ProgramData, 0)
	if err != nil || pd == "" {
		pd = os.Getenv("ProgramData")
	}
	if pd == "" {
		pd = `C:\ProgramData`
	}
	dir := filepath.Join(pd, "certagent")
	return Paths{
		ConfigFile: filepath.Join(dir, "config.json"),
		StateDir:   filepath.Join(dir, "state"),
		LogDir:     filepath.Join(dir, "logs"),
		Socket:     `\\.\pipe\certagent`,
	}
}
