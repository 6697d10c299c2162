package status

import (
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/internal/buildinfo"
	"github.com/certagent/certagent/trust"
)

// Inputs are what FromSnapshot needs besides the agent's snapshot.
type Inputs struct {
	// Daemon is the daemon's state as the caller knows it.
	Daemon Daemon
	// ConfigProblems are config load errors: a rejected reload (the daemon
	// runs on the previous config) or, with the daemon down, the file's
	// current errors.
	ConfigProblems []string
	// ConfigInvalid reports that no valid config is in effect.
	ConfigInvalid bool
	// StoreErrors are stores that could not be opened, by name.
	StoreErrors map[string]string
	// StateDir is the state directory (for the report).
	StateDir string
	// ReloadedAt is when the daemon last loaded its config.
	ReloadedAt time.Time
	// Now is the report time; zero means time.Now.
	Now time.Time
}

// trustPendingMark is how the planner marks a root a store holds but the
// OS does not trust yet (a skipped result whose reason says so).
const trustPendingMark = "trust pending"

// FromSnapshot builds the Report from the agent's snapshot (live, or the
// one persisted in state_dir/status.json) and evaluates its health.
func FromSnapshot(s *agent.Snapshot, in Inputs) *Report {
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	poll, _ := time.ParseDuration(s.PollInterval)
	skew, _ := time.ParseDuration(s.ClockSkew)
	version := s.Version
	if version == "" {
		version = buildinfo.Version
	}
	r := &Report{
		Version:     version,
		OS:          runtime.GOOS,
		GeneratedAt: now.UTC(),
		Daemon:      in.Daemon,
		Config: Config{
			File: s.ConfigSource.File, FileMissing: s.ConfigSource.FileMissing,
			Managed: s.ConfigSource.Managed, ManagedKeys: s.ConfigSource.ManagedKeys,
			Valid: !in.ConfigInvalid, Problems: in.ConfigProblems,
			PollInterval: poll, StateDir: in.StateDir, ReloadedAt: in.ReloadedAt,
		},
		ControlPlane: ControlPlane{
			URL: s.ControlPlaneURL, AccountID: s.AccountID,
			Reachable: s.LastPollStatus == "ok" || s.LastPollStatus == "not_modified",
			LastPoll:  s.LastPoll, LastSuccess: s.LastSuccess, LastError: s.LastError,
			Failures: s.ConsecutiveFailures, TokenRejected: s.AuthBlocked || s.LastPollStatus == "auth_error",
			ClockSkew: skew, NextPoll: s.NextPoll,
		},
		LastSync:     s.LastPass,
		LastVerified: s.LastVerified,
		Passes:       s.Passes,
		LastChange:   s.LastChange,
	}
	r.Device = Device{
		ID: s.CheckIn.DeviceID, CheckIn: s.CheckIn.Status, Accepted: s.CheckIn.Status == agent.CheckInAccepted,
		LastCheckIn: s.CheckIn.LastAccepted, LastAttempt: s.CheckIn.LastAttempt, Error: s.CheckIn.Error,
	}
	r.Stores = storesOf(s, in.StoreErrors)
	r.Certificates = certificatesOf(s)
	r.Retired = removalsOf(s)
	r.Health = Warnings(r, now)
	return r
}

func storesOf(s *agent.Snapshot, openErrs map[string]string) []Store {
	out := make([]Store, 0, len(s.Stores))
	for _, name := range s.Stores {
		st := Store{Name: name, Available: true}
		if e, ok := openErrs[name]; ok {
			st.Available, st.Error = false, e
		}
		targets := map[trust.Target]bool{}
		skipped := map[trust.Target]bool{}
		for _, res := range s.Results {
			if res.Store != name {
				continue
			}
			if res.Status == trust.StatusSkipped && !strings.Contains(res.Reason, trustPendingMark) {
				if res.Target == (trust.Target{}) {
					// The planner reports an unusable store as a skip of
					// its zero target, with the store's error as reason.
					if st.Available {
						st.Available, st.Error = false, res.Reason
					}
					continue
				}
				if !skipped[res.Target] {
					skipped[res.Target] = true
					st.Skipped = append(st.Skipped, Skipped{User: res.Target.User, Path: res.Target.Path, Reason: res.Reason})
				}
				continue
			}
			targets[res.Target] = true
		}
		st.Targets = len(targets)
		out = append(out, st)
	}
	return out
}

func certificatesOf(s *agent.Snapshot) []Certificate {
	var out []Certificate
	for _, c := range s.Desired {
		cert := Certificate{ID: c.ID, Fingerprint: c.FP.String(), Subject: c.Subject, NotAfter: c.NotAfter, InUse: c.InUse, State: CertAvailable}
		for _, res := range s.Results {
			if res.FP != c.FP || res.Op == trust.OpRemove {
				continue
			}
			cert.Placements = append(cert.Placements, placementOf(res))
		}
		out = append(out, cert)
	}
	for _, rj := range s.Rejected {
		fp := ""
		if !rj.FP.IsZero() {
			fp = rj.FP.String()
		}
		out = append(out, Certificate{ID: rj.ID, Fingerprint: fp, State: CertRejected, Reason: rj.Reason})
	}
	for _, c := range s.Withheld {
		out = append(out, Certificate{ID: c.ID, Fingerprint: c.FP.String(), Subject: c.Subject, NotAfter: c.NotAfter,
			InUse: c.InUse, State: CertNotDeployed, Reason: c.BindingStatus})
	}
	// Roots still installed but no longer desired: removal pending/failed.
	desired := map[trust.Fingerprint]bool{}
	for _, c := range s.Desired {
		desired[c.FP] = true
	}
	withdrawn := map[trust.Fingerprint]int{}
	for _, res := range s.Results {
		if res.Op != trust.OpRemove || res.Retired || res.Status == trust.StatusOK || desired[res.FP] {
			continue
		}
		i, ok := withdrawn[res.FP]
		if !ok {
			i = len(out)
			withdrawn[res.FP] = i
			out = append(out, Certificate{ID: res.CertID, Fingerprint: res.FP.String(), Subject: res.Subject, State: CertWithdrawn})
		}
		out[i].Placements = append(out[i].Placements, placementOf(res))
	}
	return out
}

func placementOf(res agent.TargetResult) Placement {
	p := Placement{Store: res.Store, User: res.Target.User, Path: res.Target.Path, Reason: res.Reason, Error: res.Error}
	switch {
	case res.Status == trust.StatusOK:
		p.State = PlacementInstalled
		if res.Op == "" || res.Reason == "present" {
			p.Reason = ""
		}
	case res.Status == trust.StatusFailed:
		p.State = PlacementFailed
	case res.Status == trust.StatusSkipped && strings.Contains(res.Reason, trustPendingMark):
		p.State = PlacementTrustPending
	case res.Status == trust.StatusSkipped:
		p.State = PlacementSkipped
	default:
		// "planned" (dry run) or anything new: not there yet.
		p.State = PlacementMissing
	}
	return p
}

func removalsOf(s *agent.Snapshot) []Removal {
	var out []Removal
	seen := map[string]bool{}
	add := func(res agent.TargetResult, why string, at time.Time) {
		k := res.Store + "|" + res.Target.String() + "|" + res.FP.String()
		if seen[k] {
			return
		}
		seen[k] = true
		out = append(out, Removal{Fingerprint: res.FP.String(), Subject: res.Subject, Store: res.Store,
			User: res.Target.User, Path: res.Target.Path, RemovedAt: at, Why: why})
	}
	for _, res := range s.RetiredRemoved {
		add(res, "retired", time.Time{})
	}
	for _, res := range s.Results {
		if res.Op != trust.OpRemove || res.Status != trust.StatusOK {
			continue
		}
		why := "withdrawn"
		if res.Retired {
			why = "retired"
		}
		add(res, why, s.LastPass)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Fingerprint < out[j].Fingerprint })
	return out
}
