// Package sandbox holds no code: its test runs a real pass over every store
// kind inside a stand-in for certagent's systemd sandbox (a mount namespace
// where / is read-only except the unit's ReadWritePaths=, as
// ProtectSystem=strict makes it), so a store that writes where the unit
// does not let it fails in `make test`, not on a fleet.
package sandbox
