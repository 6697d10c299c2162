package platform

func defaultPaths() Paths {
	return Paths{
		ConfigFile: "/Library/Application Support/certagent/config.json",
		StateDir:   "/Library/Application Support/certagent/state",
		LogDir:     "/Library/Logs/certagent",
		Socket:     "/var/run/certagent.sock",
	}
}
