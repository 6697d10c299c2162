package platform

// defaultPaths follows macOS conventions for a system daemon: settings and
// state under /Library/Application Support (root-owned), logs where Console
// looks, and the LocalAPI socket in /var/run.
func defaultPaths() Paths {
	return Paths{
		ConfigFile: "/Library/Application Support/certagent/config.json",
		StateDir:   "/Library/Application Support/certagent/state",
		LogDir:     "/Library/Logs/certagent",
		Socket:     "/var/run/certagent.sock",
	}
}
