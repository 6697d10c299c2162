package platform

import "encoding/json"

// Managed is settings pushed by MDM. They win over the config file, key by
// key; the keys are the config file's.
type Managed struct {
	// Source names where the settings came from, for status ("/etc/certagent/managed.json",
	// "HKLM\SOFTWARE\Policies\certagent", "/Library/Managed Preferences/dev.certagent.agent.plist").
	Source string
	// Settings maps config keys to JSON values. Empty when nothing is managed.
	Settings map[string]json.RawMessage
}

// ReadManaged returns this machine's managed settings. Nothing managed is
// not an error: it returns an empty Managed. p.ManagedFile is used on Linux
// (and wherever it is set, so tests can point at a file on any OS).
func ReadManaged(p Paths) (Managed, error) { return readManaged(p) }
