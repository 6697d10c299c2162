package platform

import (
	"os"
	"path/filepath"
)

func defaultPaths() Paths {
	pd := os.Getenv("ProgramData")
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
