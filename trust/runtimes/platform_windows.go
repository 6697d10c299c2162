package runtimes

import (
	"os"
	"path/filepath"
)

// DefaultDir holds the bundle on Windows.
var DefaultDir = filepath.Join(programData(), "certagent", "runtimes")

func programData() string {
	if d := os.Getenv("ProgramData"); d != "" {
		return d
	}
	return `C:\ProgramData`
}

// platformSystemRoots is nil: Windows keeps its roots in the certificate
// store, not a file, so the bundle holds only ours and only the additive
// NODE_EXTRA_CA_CERTS is set.
var platformSystemRoots []string

func newWiring(o Options) wiring {
	return &machineEnvWiring{env: registryEnv{}, log: o.Logger.Named(Name)}
}
