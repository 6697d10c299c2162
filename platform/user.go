package platform

// User is a local account whose per-user stores (NSS databases, browser
// profiles) the agent manages.
type User struct {
	Name  string
	UID   int
	GID   int
	Home  string
	Shell string
	// Groups are supplementary group ids; nil means just GID.
	Groups []int
}
