package platform

import "os"

// Paths are the agent's well-known locations on this OS. Every one can be
// overridden (config keys, CERTAGENT_* environment variables) so tests never
// touch the real ones unless they mean to.
type Paths struct {
	// ConfigFile is the admin's JSON config.
	ConfigFile string
	// ManagedFile is the Linux MDM settings file ("" where managed settings
	// come from the OS: macOS managed preferences, Windows policy registry).
	ManagedFile string
	// StateDir holds the ledger and the last status.
	StateDir string
	// LogDir holds the daemon's own log file.
	LogDir string
	// Socket is the LocalAPI endpoint: a unix socket path or a Windows named
	// pipe name.
	Socket string
}

// DefaultPaths returns this OS's paths, with CERTAGENT_CONFIG,
// CERTAGENT_MANAGED, CERTAGENT_STATE_DIR and CERTAGENT_SOCKET applied.
func DefaultPaths() Paths {
	p := defaultPaths()
	override := func(dst *string, env string) {
		if v := os.Getenv(env); v != "" {
			*dst = v
		}
	}
	override(&p.ConfigFile, "CERTAGENT_CONFIG")
	override(&p.ManagedFile, "CERTAGENT_MANAGED")
	override(&p.StateDir, "CERTAGENT_STATE_DIR")
	override(&p.Socket, "CERTAGENT_SOCKET")
	return p
}
