package platform

func defaultPaths() Paths {
	return Paths{
		ConfigFile:  "/etc/certagent/config.json",
		ManagedFile: "/etc/certagent/managed.json",
		StateDir:    "/var/lib/certagent",
		LogDir:      "/var/log/certagent",
		Socket:      "/run/certagent/certagent.sock",
	}
}
