// Package status is what `certagent status` shows and what the LocalAPI
// serves: one Report with the daemon's state, where the config came from,
// how the control plane answered, every certificate against every store
// and user, the retired roots removed, and health warnings each with a fix.
//
// Health is data (Tailscale's model): Warnings derives them from a
// Report, ExitCode turns them into 0 healthy, 1 degraded, 2 down or
// misconfigured, and Render prints the ten-second help-desk view. The same
// Report is printed as JSON for fleet tools.
package status

import (
	"time"
)

// Report is the whole status. Its JSON form is the `status --json` and
// LocalAPI contract: fields are only ever added.
type Report struct {
	// Version is the agent's version.
	Version string `json:"version"`
	// OS is runtime.GOOS of the agent, for OS-specific hints.
	OS string `json:"os"`
	// GeneratedAt is when this report was made.
	GeneratedAt time.Time `json:"generated_at"`
	Daemon      Daemon    `json:"daemon"`
	Config      Config    `json:"config"`
	// ControlPlane is the last poll's outcome.
	ControlPlane ControlPlane `json:"control_plane"`
	// LastSync is when the last reconcile pass finished (zero: never).
	LastSync time.Time `json:"last_sync,omitzero"`
	// LastVerified is when a pass last read every store in full. Passes
	// in between found, through the daemon's file watcher, that no store
	// changed since, and read none (at least every few minutes a pass
	// reads them all anyway).
	LastVerified time.Time `json:"last_verified,omitzero"`
	// Passes counts the daemon's finished passes since it started.
	Passes uint64 `json:"passes,omitempty"`
	// LastChange is when a pass last changed a store (zero: never).
	LastChange time.Time `json:"last_change,omitzero"`
	// Stores are the configured stores and whether each is usable here.
	Stores []Store `json:"stores"`
	// Certificates are the account's certificates the agent knows of:
	// desired, rejected, and ones still installed but withdrawn.
	Certificates []Certificate `json:"certificates"`
	// Retired are retired or withdrawn roots the agent removed.
	Retired []Removal `json:"retired,omitempty"`
	// Device is this device's id and its check-ins (rotation readiness).
	Device Device `json:"device"`
	// Health are the warnings, most severe first.
	Health []Warning `json:"health"`
	// Runtimes are the programs found on this machine that keep trust
	// stores of their own, and whether each will trust the in-use root
	// (filled by the CLI, which reads each one's CA store; never by the
	// daemon).
	Runtimes []Runtime `json:"runtimes,omitempty"`
}

// Runtime is one program found on the machine and whether it will trust
// the in-use root.
type Runtime struct {
	// Name is the runtime ("node", "python requests", "Firefox").
	Name string `json:"name"`
	// Program is where it was found.
	Program string `json:"program"`
	// Sources are the CA stores it loads, each as "what: path".
	Sources []string `json:"sources"`
	// Trusted reports whether it will trust the in-use root; nil when that
	// could not be told (no root in use, or a store could not be read).
	Trusted *bool `json:"trusted,omitempty"`
	// Detail says why, or what is missing.
	Detail string `json:"detail,omitempty"`
}

// Device is the device's identity towards the control plane and how its
// last check-in went.
type Device struct {
	// ID is made on the first pass and kept in state_dir ("" before).
	ID string `json:"id,omitempty"`
	// CheckIn is accepted, refused, failed or unsupported ("" before the
	// first attempt or when the daemon is down).
	CheckIn string `json:"check_in,omitempty"`
	// Accepted reports whether the last check-in was accepted.
	Accepted bool `json:"accepted"`
	// LastCheckIn is the last check-in the control plane accepted;
	// LastAttempt the last one tried.
	LastCheckIn time.Time `json:"last_check_in,omitzero"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	Error       string    `json:"error,omitempty"`
}

// Daemon is the service's state as the CLI saw it.
type Daemon struct {
	// Running reports whether the daemon answered on the LocalAPI.
	Running bool `json:"running"`
	// PID is the daemon's process id (0 when not running).
	PID int `json:"pid,omitempty"`
	// StartedAt is when the daemon started (zero when not running).
	StartedAt time.Time `json:"started_at,omitzero"`
	// Service is the service manager's view: "running", "stopped",
	// "not installed" or "unknown".
	Service string `json:"service,omitempty"`
	// Source says where this report came from: "localapi" (the live
	// daemon) or "state file" (the last status the daemon persisted).
	Source string `json:"source"`
	// Error is why the daemon could not be reached, when it could not.
	Error string `json:"error,omitempty"`
}

// Config is where the config came from and what is wrong with it.
type Config struct {
	File        string   `json:"file"`
	FileMissing bool     `json:"file_missing,omitempty"`
	Managed     string   `json:"managed,omitempty"`
	ManagedKeys []string `json:"managed_keys,omitempty"`
	// Valid reports whether the config in effect loaded without error.
	Valid bool `json:"valid"`
	// Problems are load errors. When the daemon runs with an older valid
	// config because the new one is invalid, the problem is here and Valid
	// stays true.
	Problems     []string      `json:"problems,omitempty"`
	PollInterval time.Duration `json:"poll_interval"`
	StateDir     string        `json:"state_dir,omitempty"`
	// ReloadedAt is when the daemon last (re)loaded the config.
	ReloadedAt time.Time `json:"reloaded_at,omitzero"`
}

// ControlPlane is the last poll's outcome.
type ControlPlane struct {
	URL       string `json:"url"`
	AccountID string `json:"account_id,omitempty"`
	// Reachable reports whether the last poll got a valid answer.
	Reachable bool `json:"reachable"`
	// LastPoll is when the agent last asked (zero: never).
	LastPoll time.Time `json:"last_poll,omitzero"`
	// LastSuccess is the last complete, authenticated, valid answer.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// LastError is the last poll's error ("" when it succeeded).
	LastError string `json:"last_error,omitempty"`
	// HTTPStatus is the last failed poll's HTTP status (0: none or no
	// answer); 401 and 403 mean the token was rejected.
	HTTPStatus int `json:"http_status,omitempty"`
	// NextPoll is when the next interval poll is due (zero: unknown).
	NextPoll time.Time `json:"next_poll,omitzero"`
	// Failures counts consecutive failed polls.
	Failures int `json:"consecutive_failures,omitempty"`
	// TokenRejected reports that the control plane refused the token (401
	// or 403) and polling waits for a new token.
	TokenRejected bool `json:"token_rejected,omitempty"`
	// ClockSkew is local time minus the server's Date header at the last
	// answer (positive: the local clock is ahead).
	ClockSkew time.Duration `json:"clock_skew"`
}

// Store is one configured store.
type Store struct {
	Name string `json:"name"`
	// Available reports whether the store can be used here.
	Available bool `json:"available"`
	// Error is why not, with how to fix it.
	Error string `json:"error,omitempty"`
	// Targets counts the places the store writes to (NSS: databases).
	Targets int `json:"targets"`
	// Skipped are places the store knows of but cannot serve.
	Skipped []Skipped `json:"skipped,omitempty"`
}

// Skipped is a store place that cannot be served, with why.
type Skipped struct {
	User   string `json:"user,omitempty"`
	Path   string `json:"path,omitempty"`
	Reason string `json:"reason"`
}

// CertState is a certificate's standing.
type CertState string

// The certificate states.
const (
	// CertAvailable: desired and accepted; it should be everywhere.
	CertAvailable CertState = "available"
	// CertRejected: available on the control plane but refused by policy.
	CertRejected CertState = "rejected"
	// CertWithdrawn: no longer available; removal pending or failed.
	CertWithdrawn CertState = "withdrawn"
	// CertNotDeployed: known to the control plane but not available
	// (inactive, pending deployment or deletion); never installed.
	CertNotDeployed CertState = "not deployed"
)

// Certificate is one certificate and where it stands in every store.
type Certificate struct {
	ID          string    `json:"id,omitempty"`
	Fingerprint string    `json:"fingerprint"`
	Subject     string    `json:"subject"`
	NotAfter    time.Time `json:"not_after,omitzero"`
	InUse       bool      `json:"in_use"`
	State       CertState `json:"state"`
	// Reason is why a certificate was rejected.
	Reason     string      `json:"reason,omitempty"`
	Placements []Placement `json:"placements,omitempty"`
}

// PlacementState is where a certificate stands in one store target.
type PlacementState string

// The placement states. Nothing skipped is ever "installed".
const (
	PlacementInstalled    PlacementState = "installed"
	PlacementTrustPending PlacementState = "trust pending"
	PlacementMissing      PlacementState = "missing"
	PlacementSkipped      PlacementState = "skipped"
	PlacementFailed       PlacementState = "failed"
)

// Placement is one (certificate, store, target) result.
type Placement struct {
	Store string         `json:"store"`
	User  string         `json:"user,omitempty"`
	Path  string         `json:"path,omitempty"`
	State PlacementState `json:"state"`
	// Trusted reports whether the OS verifier accepts the root (nil: not
	// checked for this store).
	Trusted *bool `json:"trusted,omitempty"`
	// Reason is why it was skipped, or what remains to do.
	Reason string `json:"reason,omitempty"`
	// Error is the failure, with the command and its output.
	Error string `json:"error,omitempty"`
}

// Removal is a retired or withdrawn root the agent removed.
type Removal struct {
	Fingerprint string    `json:"fingerprint"`
	Subject     string    `json:"subject,omitempty"`
	Store       string    `json:"store"`
	User        string    `json:"user,omitempty"`
	Path        string    `json:"path,omitempty"`
	RemovedAt   time.Time `json:"removed_at,omitzero"`
	// Why is "retired" (a known-dead root) or "withdrawn" (no longer
	// available on the control plane).
	Why string `json:"why"`
}
