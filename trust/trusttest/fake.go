package trusttest

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/certagent/certagent/trust"
)

// ErrInjected is the default error of a target told to fail.
var ErrInjected = errors.New("trusttest: injected failure")

// Fake is an in-memory trust.Store with any number of targets. It keeps the
// Store contract (idempotent, batch-at-once, touches only what a Change
// names) and counts what a test wants to assert: Apply calls and "refresh
// tool" runs (one per Apply that changed something). It can plant foreign
// roots, lose roots behind the agent's back, fail chosen targets and be
// unavailable. Safe for concurrent use.
type Fake struct {
	name string

	mu sync.Mutex // guards every field below
	// targets in List order.
	targets []trust.Target
	// held maps each target to what it holds.
	held map[trust.Target]map[trust.Fingerprint]fakeEntry
	// fail maps a target to the error its changes fail with.
	fail map[trust.Target]error
	// skipped are targets listed as Skipped.
	skipped []trust.Skip
	// unavailable, when non-nil, is what Check returns (wrapped).
	unavailable error
	// listErr, when non-nil, is what List returns.
	listErr   error
	applies   int
	refreshes int
	history   [][]trust.Change
}

type fakeEntry struct {
	cert   *trust.Cert
	tagged bool
}

// NewFake returns an empty fake named name with targets; with no targets it
// has the single zero Target, like most stores.
func NewFake(name string, targets ...trust.Target) *Fake {
	if len(targets) == 0 {
		targets = []trust.Target{{}}
	}
	f := &Fake{
		name: name,
		held: make(map[trust.Target]map[trust.Fingerprint]fakeEntry),
		fail: make(map[trust.Target]error),
	}
	for _, t := range targets {
		f.addTargetLocked(t)
	}
	return f
}

func (f *Fake) addTargetLocked(t trust.Target) {
	if _, ok := f.held[t]; ok {
		return
	}
	f.targets = append(f.targets, t)
	f.held[t] = make(map[trust.Fingerprint]fakeEntry)
}

// Name implements trust.Store.
func (f *Fake) Name() string { return f.name }

// Check implements trust.Store.
func (f *Fake) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unavailable != nil {
		return fmt.Errorf("trusttest: %s: %w: %v", f.name, trust.ErrUnavailable, f.unavailable)
	}
	return nil
}

// List implements trust.Store.
func (f *Fake) List(ctx context.Context) (*trust.Inventory, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listErr != nil {
		return nil, fmt.Errorf("trusttest: %s: list: %w", f.name, f.listErr)
	}
	inv := &trust.Inventory{
		Targets: append([]trust.Target(nil), f.targets...),
		Skipped: append([]trust.Skip(nil), f.skipped...),
	}
	for _, t := range f.targets {
		for fp, e := range f.held[t] {
			inv.Entries = append(inv.Entries, trust.Entry{FP: fp, Target: t, Subject: e.cert.Subject(), Tagged: e.tagged})
		}
	}
	trust.SortEntries(inv.Entries)
	return inv, nil
}

// Apply implements trust.Store.
func (f *Fake) Apply(ctx context.Context, changes []trust.Change) []trust.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies++
	f.history = append(f.history, append([]trust.Change(nil), changes...))
	out := make([]trust.Result, len(changes))
	changed := false
	for i, c := range changes {
		if err := ctx.Err(); err != nil {
			out[i] = trust.Failed(c, err)
			continue
		}
		held, ok := f.held[c.Target]
		if !ok {
			out[i] = trust.Failed(c, fmt.Errorf("trusttest: %s: unknown target %s", f.name, c.Target))
			continue
		}
		if err := f.fail[c.Target]; err != nil {
			out[i] = trust.Failed(c, fmt.Errorf("trusttest: %s: %s: %w", f.name, c.Target, err))
			continue
		}
		if err := c.Validate(); err != nil {
			out[i] = trust.Failed(c, err)
			continue
		}
		switch c.Op {
		case trust.OpInstall:
			if e, ok := held[c.FP]; !ok || !e.tagged {
				held[c.FP] = fakeEntry{cert: c.Cert, tagged: true}
				changed = true
			}
			out[i] = trust.OK(c)
		case trust.OpRemove:
			// One entry per root, like NSS: it is the one the ledger
			// says we installed, so Foreign changes nothing here.
			if _, ok := held[c.FP]; ok {
				delete(held, c.FP)
				changed = true
			}
			out[i] = trust.OK(c)
		default:
			out[i] = trust.Failed(c, fmt.Errorf("trusttest: %s: unknown operation %q", f.name, c.Op))
		}
	}
	if changed {
		f.refreshes++
	}
	return out
}

// CheckInstall is trust.Change.Validate, kept for callers of the first
// version of this package.
func CheckInstall(c trust.Change) error { return c.Validate() }

// Plant puts c into target as someone else would: untagged. It adds the
// target if the fake does not have it.
func (f *Fake) Plant(target trust.Target, c *trust.Cert) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addTargetLocked(target)
	f.held[target][c.FP] = fakeEntry{cert: c}
}

// Lose removes fp from target behind the agent's back (no Apply, no
// refresh), for drift-repair tests.
func (f *Fake) Lose(target trust.Target, fp trust.Fingerprint) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.held[target], fp)
}

// AddTarget adds a target (a new user, a new browser profile).
func (f *Fake) AddTarget(t trust.Target) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addTargetLocked(t)
}

// Skip lists target as a Skipped place with reason.
func (f *Fake) Skip(target trust.Target, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.skipped = append(f.skipped, trust.Skip{Target: target, Reason: reason})
}

// FailTarget makes every change on target fail with err (ErrInjected when
// err is nil) until ClearFailures.
func (f *Fake) FailTarget(target trust.Target, err error) {
	if err == nil {
		err = ErrInjected
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[target] = err
}

// ClearFailures undoes FailTarget for every target.
func (f *Fake) ClearFailures() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.fail)
}

// SetUnavailable makes Check fail with why (nil makes it pass again).
func (f *Fake) SetUnavailable(why error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unavailable = why
}

// SetListError makes List fail with err (nil makes it work again).
func (f *Fake) SetListError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listErr = err
}

// Holds reports whether target holds fp.
func (f *Fake) Holds(target trust.Target, fp trust.Fingerprint) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.held[target][fp]
	return ok
}

// Len returns how many certificates target holds.
func (f *Fake) Len(target trust.Target) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.held[target])
}

// Applies returns how many times Apply was called.
func (f *Fake) Applies() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applies
}

// Refreshes returns how many times the fake "ran its refresh tool": once per
// Apply that changed something.
func (f *Fake) Refreshes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshes
}

// History returns a copy of every batch passed to Apply, in order.
func (f *Fake) History() [][]trust.Change {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([][]trust.Change, len(f.history))
	for i, b := range f.history {
		out[i] = append([]trust.Change(nil), b...)
	}
	return out
}

var _ trust.Store = (*Fake)(nil)
