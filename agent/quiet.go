package agent

import (
	"time"
)

// A quiet timer pass need not read the stores when the daemon's file
// watcher saw no change in any of them since the last pass that read them
// all and found nothing to do: it would read the same and plan nothing.
// This file decides when that holds. The rules, each of which forces a full
// read:
//
//   - the pass is not a timer pass: a watcher event (drift), a reload, a
//     `certagent sync`, a long-poll answer or a dry run;
//   - no full read yet in this process, or the last one changed something,
//     could not read a store, or had a store the config dropped;
//   - VerifyInterval passed since the last full read (or the clock went
//     back): a change the watcher cannot see (a directory user, a new
//     browser install, a tool that appeared) is found within it;
//   - the config, the ledger, the desired set (a new answer, or a
//     certificate's validity boundary passing) or authority differs;
//   - a store's watch is not complete (a path that could not be watched,
//     the watcher stopped, a store that declares no paths) or counted a
//     change: an event, a watch error such as a queue overflow, a path
//     appearing or vanishing.

// StoreWatch tells timer passes whether a store's paths changed. The daemon
// implements it with its file watcher (agent/watch).
type StoreWatch interface {
	// StoreMark returns a count of the changes seen in the paths of the
	// configured store name, and whether every change there is seen (all
	// its paths are watched). A pass records the marks before it reads the
	// stores; equal complete marks later mean no change reached them.
	StoreMark(name string) (mark uint64, complete bool)
}

// DefaultVerifyInterval bounds how long timer passes rely on the watcher:
// at least this often every store is read in full, whatever the watcher
// says. Drift the watcher sees is repaired within about a second (its
// event triggers a full pass); drift it cannot see (see above) within this.
const DefaultVerifyInterval = 5 * time.Minute

// SetStoreWatch lets timer passes skip reading stores the watch w saw
// unchanged (nil: every pass reads every store).
func (a *Agent) SetStoreWatch(w StoreWatch) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.storeWatch = w
}

// verified is the last full read of the stores that found nothing to
// change, and what it depended on. Guarded by Agent.passMu.
type verified struct {
	// at is when the read began (deps.Now).
	at            time.Time
	cfg           *Config
	ledger        *Ledger
	ev            *Evaluation
	authoritative bool
	// marks are the StoreMarks taken before the read.
	marks map[string]uint64
	// results are the per-target results the read gave.
	results []TargetResult
}

// storeMarks returns the marks of every handle, taken before a read; ok is
// false when there is no watch or any store's watch is incomplete. Stores
// that could not be opened have nothing to read and need no mark.
func (a *Agent) storeMarks(handles []storeHandle) (map[string]uint64, bool) {
	a.mu.Lock()
	w := a.storeWatch
	a.mu.Unlock()
	if w == nil {
		return nil, false
	}
	marks := make(map[string]uint64, len(handles))
	for _, h := range handles {
		if h.openErr != nil {
			continue
		}
		m, complete := w.StoreMark(h.name)
		if !complete {
			return nil, false
		}
		marks[h.name] = m
	}
	return marks, true
}

// stillVerified reports whether the last full read still stands for a pass
// with these inputs (see the rules above).
func (a *Agent) stillVerified(opt passOptions, cfg *Config, ledger *Ledger, ev *Evaluation, authoritative bool, marks map[string]uint64, now time.Time) bool {
	v := a.verified
	if v == nil || opt.reason != "interval" || opt.dryRun || marks == nil {
		return false
	}
	every := a.deps.VerifyInterval
	if every <= 0 {
		every = DefaultVerifyInterval
	}
	if now.Before(v.at) || now.Sub(v.at) >= every {
		return false
	}
	if cfg != v.cfg || ev != v.ev || authoritative != v.authoritative || !ledger.Equal(v.ledger) {
		return false
	}
	if len(marks) != len(v.marks) {
		return false
	}
	for name, m := range marks {
		if vm, ok := v.marks[name]; !ok || vm != m {
			return false
		}
	}
	return true
}
