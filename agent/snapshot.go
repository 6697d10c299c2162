package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/certagent/certagent/internal/atomicfile"
	"github.com/certagent/certagent/internal/buildinfo"
	"github.com/certagent/certagent/trust"
)

// Snapshot is the agent's state for `certagent status`: JSON-serialisable,
// persisted to state_dir/status.json so status works with the daemon down.
type Snapshot struct {
	Version         string       `json:"version"`
	ConfigSource    ConfigSource `json:"config_source"`
	ControlPlaneURL string       `json:"control_plane_url"`
	AccountID       string       `json:"account_id"`
	Stores          []string     `json:"stores"`
	PollInterval    string       `json:"poll_interval"`

	// LastPoll is when the control plane was last asked; LastPollStatus
	// how it answered (ok, not_modified, error, auth_error).
	LastPoll       time.Time `json:"last_poll,omitzero"`
	LastPollStatus string    `json:"last_poll_status,omitempty"`
	LastError      string    `json:"last_error,omitempty"`
	// LastSuccess is the last valid answer.
	LastSuccess         time.Time `json:"last_success,omitzero"`
	ConsecutiveFailures int       `json:"consecutive_failures,omitempty"`
	// AuthBlocked reports that the control plane refused our token and
	// polling waits for a new config or token file.
	AuthBlocked bool `json:"auth_blocked,omitempty"`
	// ServerDate is the control plane's Date header at the last poll and
	// ClockSkew our clock minus it (a skewed clock makes valid roots look
	// expired or not yet valid).
	ServerDate time.Time `json:"server_date,omitzero"`
	ClockSkew  string    `json:"clock_skew,omitempty"`
	NextPoll   time.Time `json:"next_poll,omitzero"`

	// LastPass is when the last pass finished; LastChange when one last
	// changed a store.
	LastPass   time.Time `json:"last_pass,omitzero"`
	LastChange time.Time `json:"last_change,omitzero"`
	// LastVerified is when a pass last read every store in full; passes
	// after it that the file watcher let skip the read (PassReport.Watched)
	// move LastPass only.
	LastVerified time.Time `json:"last_verified,omitzero"`
	// Passes counts the passes this process finished (not persisted):
	// scripts/agent-quiet.sh divides the daemon's CPU time by it.
	Passes uint64 `json:"passes,omitempty"`

	Desired  []CertInfo       `json:"desired"`
	Rejected []trust.Rejected `json:"rejected,omitempty"`
	Withheld []CertInfo       `json:"withheld,omitempty"`
	// Results are the per-target truth after the last pass: every
	// (desired root, store, target) ok, skipped or failed, and failed
	// removals.
	Results []TargetResult `json:"results"`
	// LastChanges are the changes of the last pass that changed something.
	LastChanges []TargetResult `json:"last_changes,omitempty"`
	// RetiredRemoved are retired roots removed since the agent started.
	RetiredRemoved []TargetResult `json:"retired_removed,omitempty"`
	// CheckIn is the device id and how the last check-in went.
	CheckIn CheckInState `json:"check_in"`
}

// Snapshot returns a copy of the agent's state.
func (a *Agent) Snapshot() Snapshot {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.snap
	a.fillStatic(&s)
	s.Desired = append([]CertInfo(nil), s.Desired...)
	s.Rejected = append([]trust.Rejected(nil), s.Rejected...)
	s.Withheld = append([]CertInfo(nil), s.Withheld...)
	s.Results = append([]TargetResult(nil), s.Results...)
	s.LastChanges = append([]TargetResult(nil), s.LastChanges...)
	s.RetiredRemoved = append([]TargetResult(nil), s.RetiredRemoved...)
	return s
}

// fillStatic copies config facts into s; a.mu must be held.
func (a *Agent) fillStatic(s *Snapshot) {
	s.Version = buildinfo.Version
	s.ConfigSource = a.cfg.Source
	s.ControlPlaneURL = a.cfg.ControlPlaneURL
	s.AccountID = a.cfg.AccountID
	s.Stores = append([]string(nil), a.cfg.Stores...)
	s.PollInterval = a.cfg.PollInterval.String()
	s.AuthBlocked = a.authBlocked
	s.ConsecutiveFailures = a.failures
}

// recordFetch updates the fetch state after a poll.
func (a *Agent) recordFetch(rep *PassReport, last *answer, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.snap.LastPoll = now.UTC()
	a.snap.LastPollStatus = rep.Fetch.Status
	if !rep.Fetch.ServerDate.IsZero() {
		a.snap.ServerDate = rep.Fetch.ServerDate.UTC()
		a.snap.ClockSkew = now.Sub(rep.Fetch.ServerDate).Round(time.Second).String()
	}
	switch rep.Fetch.Status {
	case "ok", "not_modified":
		a.last, a.lastFetchOK = last, true
		a.failures, a.authBlocked = 0, false
		a.snap.LastSuccess = now.UTC()
		a.snap.LastError = ""
	case "auth_error":
		a.lastFetchOK = false
		a.failures++
		// authSince is the last refused attempt: the next one waits
		// AuthRetry from here.
		a.authSince = now
		if !a.authBlocked {
			a.authBlocked = true
			a.log.Error("control plane refused the token; waiting for a new config or token file", "error", rep.Fetch.Error)
		}
		a.snap.LastError = rep.Fetch.Error
	default:
		a.lastFetchOK = false
		a.failures++
		a.snap.LastError = rep.Fetch.Error
		a.log.Warn("poll failed, keeping the last desired set", "error", rep.Fetch.Error, "failures", a.failures)
	}
}

func (a *Agent) recordError(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.snap.LastError = err.Error()
}

// updateSnapshot stores the pass's outcome.
func (a *Agent) updateSnapshot(rep *PassReport, cfg *Config) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.deps.Now().UTC()
	a.snap.LastPass = now
	a.snap.Passes++
	if !rep.Watched {
		a.snap.LastVerified = rep.Started
	}
	a.snap.Desired, a.snap.Rejected, a.snap.Withheld = rep.Desired, rep.Rejected, rep.Withheld
	// Results describe the state after the pass (so an unchanged state
	// gives an unchanged snapshot); the changes themselves go to
	// LastChanges and stay until the next pass that changes something.
	var state, changes []TargetResult
	for _, r := range rep.Results {
		if r.Op != "" {
			changes = append(changes, r)
		}
		switch {
		case r.Op == trust.OpRemove && r.Status == trust.StatusOK:
			if r.Retired {
				a.snap.RetiredRemoved = append(a.snap.RetiredRemoved, r)
			}
			continue
		case r.Op == trust.OpInstall && r.Status == trust.StatusOK:
			r.Op, r.Reason = "", "present"
		}
		state = append(state, r)
	}
	sort.SliceStable(state, func(i, j int) bool {
		return keyLess(LedgerKey{Store: state[i].Store, Target: state[i].Target, FP: state[i].FP},
			LedgerKey{Store: state[j].Store, Target: state[j].Target, FP: state[j].FP})
	})
	a.snap.Results = state
	if len(changes) > 0 {
		a.snap.LastChanges = changes
		a.snap.LastChange = now
	}
}

// material returns the snapshot without its clock-driven fields: the status
// file is rewritten only when this changes, so a quiet pass writes nothing.
func material(s Snapshot) []byte {
	s.LastPoll, s.LastSuccess, s.ServerDate, s.NextPoll, s.LastPass, s.LastVerified = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	// ok and not_modified are the same health; an error shows in LastError.
	s.ClockSkew, s.ConsecutiveFailures, s.LastPollStatus, s.Passes = "", 0, "", 0
	// Check-in outcomes live in memory (status asks the daemon); only the
	// device id is material, so a quiet pass after a check-in writes nothing.
	s.CheckIn = CheckInState{DeviceID: s.CheckIn.DeviceID}
	b, _ := json.Marshal(s)
	return b
}

// persistSnapshot writes status.json when its material content changed, or
// always when force (clean shutdown, so the times are fresh).
func (a *Agent) persistSnapshot(force bool) {
	s := a.Snapshot()
	m := material(s)
	a.mu.Lock()
	same := bytes.Equal(m, a.persisted)
	path, dir := a.cfg.StatusPath(), a.cfg.StateDir
	a.mu.Unlock()
	if same && !force {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		a.log.Warn("cannot write status", "error", err)
		return
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		a.log.Warn("cannot encode status", "error", err)
		return
	}
	// Status holds no secret (certificates are public, the token is never
	// in it), and `certagent status` run by a user reads it.
	if err := atomicfile.Write(path, append(b, '\n'), 0o644); err != nil {
		a.log.Warn("cannot write status", "error", err)
		return
	}
	a.mu.Lock()
	a.persisted = m
	a.mu.Unlock()
}

// LoadSnapshot reads a persisted snapshot (status with the daemon down).
func LoadSnapshot(path string) (*Snapshot, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent: status file: %w", err)
	}
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("agent: status file %s: %w", path, err)
	}
	return &s, nil
}
