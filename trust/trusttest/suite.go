package trusttest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/trust"
)

// Options adapt the conformance suite to what an adapter can do. The zero
// value suits a store that tags what it writes and offers no hooks.
type Options struct {
	// Plant puts c into every target of s by the adapter's own means (a file
	// dropped by hand, certutil run directly, a fake tool's state), as
	// another program would, so it must not carry our tag. nil skips the
	// foreign-root cases.
	Plant func(t *testing.T, s trust.Store, c *trust.Cert)
	// PlantedRemovable says a planted root can be removed by fingerprint
	// with Change.Foreign (how retired roots are cleaned up); without
	// Foreign a store with Inventory.OwnCopies must leave it alone, OK or
	// Skipped. When PlantedRemovable is false, removing it must be
	// reported Skipped or Failed with a reason, never OK, and leave it in
	// place (a bundle re-derives system roots from the OS).
	PlantedRemovable bool
	// Untagged says the store cannot mark entries as ours (Entry.Tagged is
	// never set). By default installed entries must be Tagged.
	Untagged bool
	// Refreshes returns how many times s has run its refresh tool so far.
	// When set, the suite checks a batch runs it at most once and a pass
	// with nothing to change not at all.
	Refreshes func(s trust.Store) int
	// Concurrency is how many goroutines the concurrency case runs (default
	// 4); Rounds how many install/list/remove rounds each does (default 3).
	Concurrency, Rounds int
	// Parallel runs the cases in parallel; only for stores whose instances
	// are independent of each other. Parallel cases run after the calling
	// test function returns: release what newStore needs with t.Cleanup,
	// not defer.
	Parallel bool
}

// Run is the conformance suite every trust.Store adapter passes. newStore
// returns a fresh, empty (of our roots) store for each case; it may register
// cleanups with t. At most one Options may be given.
func Run(t *testing.T, newStore func(t *testing.T) trust.Store, opts ...Options) {
	t.Helper()
	var o Options
	switch len(opts) {
	case 0:
	case 1:
		o = opts[0]
	default:
		t.Fatalf("trusttest.Run: %d Options, want at most one", len(opts))
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	s := &suite{opts: o, newStore: newStore}
	cases := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"Check", s.check},
		{"FreshList", s.freshList},
		{"InstallEveryTarget", s.installEveryTarget},
		{"InstallTwice", s.installTwice},
		{"UninstallTwice", s.uninstallTwice},
		{"RemoveUnknown", s.removeUnknown},
		{"EmptyBatch", s.emptyBatch},
		{"OthersUntouched", s.othersUntouched},
		{"ForeignRoot", s.foreignRoot},
		{"BatchOrder", s.batchOrder},
		{"BadChanges", s.badChanges},
		{"Concurrent", s.concurrent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if o.Parallel {
				t.Parallel()
			}
			c.fn(t)
		})
	}
}

type suite struct {
	opts     Options
	newStore func(t *testing.T) trust.Store
}

// key identifies one entry for set comparisons.
type key struct {
	target trust.Target
	fp     trust.Fingerprint
}

func list(t *testing.T, s trust.Store) *trust.Inventory {
	t.Helper()
	inv, err := s.List(context.Background())
	require.NoError(t, err, "List")
	require.NotNil(t, inv, "List returned a nil inventory")
	return inv
}

// snapshot returns the entries of inv as a set, failing on duplicates and on
// entries outside the listed targets.
func snapshot(t *testing.T, inv *trust.Inventory) map[key]trust.Entry {
	t.Helper()
	targets := make(map[trust.Target]bool, len(inv.Targets))
	for _, tg := range inv.Targets {
		targets[tg] = true
	}
	out := make(map[key]trust.Entry, len(inv.Entries))
	for _, e := range inv.Entries {
		k := key{e.Target, e.FP}
		if _, dup := out[k]; dup {
			t.Errorf("List: %s appears twice in target %s", e.FP.Short(), e.Target)
		}
		if !targets[e.Target] {
			t.Errorf("List: entry %s in target %s, which is not among the targets %v", e.FP.Short(), e.Target, inv.Targets)
		}
		if e.FP.IsZero() {
			t.Errorf("List: entry with a zero fingerprint in target %s", e.Target)
		}
		out[k] = e
	}
	return out
}

func (s *suite) refreshes(st trust.Store) int {
	if s.opts.Refreshes == nil {
		return 0
	}
	return s.opts.Refreshes(st)
}

// apply runs changes and requires one result per change, in order, each
// carrying its change.
func apply(t *testing.T, st trust.Store, changes []trust.Change) []trust.Result {
	t.Helper()
	res := st.Apply(context.Background(), changes)
	require.Len(t, res, len(changes), "Apply must return one Result per Change")
	for i, r := range res {
		assert.Equal(t, changes[i].Op, r.Change.Op, "result %d: op", i)
		assert.Equal(t, changes[i].FP, r.Change.FP, "result %d: fingerprint", i)
		assert.Equal(t, changes[i].Target, r.Change.Target, "result %d: target", i)
		switch r.Status {
		case trust.StatusOK:
		case trust.StatusFailed:
			assert.Error(t, r.Err, "result %d (%s): failed without an error", i, r.Change)
		case trust.StatusSkipped:
			assert.NotEmpty(t, r.Reason, "result %d (%s): skipped without a reason", i, r.Change)
		default:
			t.Errorf("result %d (%s): unknown status %q", i, r.Change, r.Status)
		}
	}
	return res
}

func requireOK(t *testing.T, res []trust.Result) {
	t.Helper()
	for i, r := range res {
		require.Equal(t, trust.StatusOK, r.Status, "result %d (%s): reason %q, error %v", i, r.Change, r.Reason, r.Err)
	}
}

func installs(targets []trust.Target, cas ...*CA) []trust.Change {
	var out []trust.Change
	for _, c := range cas {
		for _, tg := range targets {
			out = append(out, trust.Change{Op: trust.OpInstall, FP: c.FP, Target: tg, Cert: c.Cert})
		}
	}
	return out
}

func removes(targets []trust.Target, fps ...trust.Fingerprint) []trust.Change {
	var out []trust.Change
	for _, fp := range fps {
		for _, tg := range targets {
			out = append(out, trust.Change{Op: trust.OpRemove, FP: fp, Target: tg})
		}
	}
	return out
}

// foreignRemoves are removals that may take copies we did not write: how
// the agent removes retired roots.
func foreignRemoves(targets []trust.Target, fps ...trust.Fingerprint) []trust.Change {
	out := removes(targets, fps...)
	for i := range out {
		out[i].Foreign = true
	}
	return out
}

// requireHeld checks that fp is in every target (and tagged when the store
// tags) or, when want is false, in none.
func (s *suite) requireHeld(t *testing.T, st trust.Store, fp trust.Fingerprint, want bool) {
	t.Helper()
	inv := list(t, st)
	snap := snapshot(t, inv)
	for _, tg := range inv.Targets {
		e, ok := snap[key{tg, fp}]
		require.Equal(t, want, ok, "target %s holds %s: got %v, want %v", tg, fp.Short(), ok, want)
		if ok && !s.opts.Untagged {
			assert.True(t, e.Tagged, "target %s: our entry %s is not Tagged", tg, fp.Short())
		}
	}
	got, err := trust.Contains(context.Background(), st, fp)
	require.NoError(t, err, "Contains")
	require.Equal(t, want, got, "Contains(%s)", fp.Short())
}

// fresh returns a new store and its targets, checking its first listing.
func (s *suite) fresh(t *testing.T) (trust.Store, []trust.Target) {
	t.Helper()
	st := s.newStore(t)
	require.NotNil(t, st, "newStore returned nil")
	inv := list(t, st)
	require.NotEmpty(t, inv.Targets, "a fresh store must have at least one target")
	return st, inv.Targets
}

func (s *suite) check(t *testing.T) {
	st := s.newStore(t)
	assert.NotEmpty(t, st.Name(), "Name")
	require.NoError(t, st.Check(context.Background()), "Check")
}

func (s *suite) freshList(t *testing.T) {
	st, targets := s.fresh(t)
	seen := make(map[trust.Target]bool)
	for _, tg := range targets {
		assert.False(t, seen[tg], "target %s listed twice", tg)
		seen[tg] = true
	}
	snap := snapshot(t, list(t, st))
	for k, e := range snap {
		assert.False(t, e.Tagged, "a fresh store already holds our entry %s in %s", k.fp.Short(), k.target)
	}
	ca := NewCA(t)
	s.requireHeld(t, st, ca.FP, false)
}

func (s *suite) installEveryTarget(t *testing.T) {
	st, targets := s.fresh(t)
	ca := NewCA(t)
	before := s.refreshes(st)
	requireOK(t, apply(t, st, installs(targets, ca)))
	if s.opts.Refreshes != nil {
		assert.LessOrEqual(t, s.refreshes(st)-before, 1, "one Apply ran the refresh tool more than once")
	}
	s.requireHeld(t, st, ca.FP, true)
	snap := snapshot(t, list(t, st))
	for _, tg := range targets {
		e := snap[key{tg, ca.FP}]
		if e.Subject != "" {
			assert.Contains(t, e.Subject, ca.X509.Subject.CommonName, "subject of %s in %s", ca.FP.Short(), tg)
		}
	}
}

func (s *suite) installTwice(t *testing.T) {
	st, targets := s.fresh(t)
	ca := NewCA(t)
	requireOK(t, apply(t, st, installs(targets, ca)))
	first := snapshot(t, list(t, st))
	before := s.refreshes(st)
	requireOK(t, apply(t, st, installs(targets, ca)))
	assert.Equal(t, before, s.refreshes(st), "installing present roots ran the refresh tool")
	second := snapshot(t, list(t, st))
	assert.Equal(t, first, second, "a second install changed the inventory")
	// The same root twice in one batch is no duplicate either.
	requireOK(t, apply(t, st, append(installs(targets, ca), installs(targets, ca)...)))
	assert.Equal(t, first, snapshot(t, list(t, st)), "a doubled install changed the inventory")
	s.requireHeld(t, st, ca.FP, true)
	// trust.Install finds nothing left to do.
	res, err := trust.Install(context.Background(), st, ca.Cert)
	require.NoError(t, err)
	assert.Empty(t, res, "trust.Install of a present root made changes")
}

func (s *suite) uninstallTwice(t *testing.T) {
	st, targets := s.fresh(t)
	ca := NewCA(t)
	requireOK(t, apply(t, st, installs(targets, ca)))
	before := snapshot(t, list(t, st))
	requireOK(t, apply(t, st, removes(targets, ca.FP)))
	s.requireHeld(t, st, ca.FP, false)
	after := snapshot(t, list(t, st))
	for k := range before {
		if k.fp == ca.FP {
			continue
		}
		_, ok := after[k]
		assert.True(t, ok, "removing %s also removed %s from %s", ca.FP.Short(), k.fp.Short(), k.target)
	}
	r0 := s.refreshes(st)
	requireOK(t, apply(t, st, removes(targets, ca.FP)))
	assert.Equal(t, r0, s.refreshes(st), "removing an absent root ran the refresh tool")
	assert.Equal(t, after, snapshot(t, list(t, st)), "a second uninstall changed the inventory")
	res, err := trust.Uninstall(context.Background(), st, ca.FP)
	require.NoError(t, err)
	assert.Empty(t, res, "trust.Uninstall of an absent root made changes")
	// Reinstall after removal works.
	requireOK(t, apply(t, st, installs(targets, ca)))
	s.requireHeld(t, st, ca.FP, true)
}

func (s *suite) removeUnknown(t *testing.T) {
	st, targets := s.fresh(t)
	ca := NewCA(t)
	requireOK(t, apply(t, st, installs(targets, ca)))
	before := snapshot(t, list(t, st))
	r0 := s.refreshes(st)
	requireOK(t, apply(t, st, removes(targets, RandomFingerprint(t), RandomFingerprint(t))))
	assert.Equal(t, before, snapshot(t, list(t, st)), "removing unknown fingerprints changed the inventory")
	assert.Equal(t, r0, s.refreshes(st), "removing unknown fingerprints ran the refresh tool")
}

func (s *suite) emptyBatch(t *testing.T) {
	st, _ := s.fresh(t)
	before := snapshot(t, list(t, st))
	r0 := s.refreshes(st)
	assert.Empty(t, st.Apply(context.Background(), nil), "Apply(nil)")
	assert.Empty(t, st.Apply(context.Background(), []trust.Change{}), "Apply(empty)")
	assert.Equal(t, r0, s.refreshes(st), "an empty batch ran the refresh tool")
	assert.Equal(t, before, snapshot(t, list(t, st)), "an empty batch changed the inventory")
}

// othersUntouched checks that a change never touches an entry it does not
// name, using roots the store itself installed.
func (s *suite) othersUntouched(t *testing.T) {
	st, targets := s.fresh(t)
	a, b, c := NewCA(t), NewCA(t), NewCA(t)
	requireOK(t, apply(t, st, installs(targets, a, b)))
	before := snapshot(t, list(t, st))
	requireOK(t, apply(t, st, append(removes(targets, a.FP), installs(targets, c)...)))
	after := snapshot(t, list(t, st))
	for k, e := range before {
		if k.fp == a.FP {
			continue
		}
		got, ok := after[k]
		if assert.True(t, ok, "%s in %s vanished", k.fp.Short(), k.target) {
			assert.Equal(t, e, got, "%s in %s changed", k.fp.Short(), k.target)
		}
	}
	s.requireHeld(t, st, a.FP, false)
	s.requireHeld(t, st, b.FP, true)
	s.requireHeld(t, st, c.FP, true)
	// A same-named, same-serial root from another key is a different root.
	twin := NewCA(t, WithCommonName(b.X509.Subject.CommonName), WithSerialNumber(b.X509.SerialNumber), WithFreshKey())
	requireOK(t, apply(t, st, removes(targets, twin.FP)))
	s.requireHeld(t, st, b.FP, true)
}

func (s *suite) foreignRoot(t *testing.T) {
	if s.opts.Plant == nil {
		t.Skip("trusttest: adapter offers no Plant hook")
	}
	st, targets := s.fresh(t)
	foreign := NewCA(t, WithCommonName("someone else's root"))
	s.opts.Plant(t, st, foreign.Cert)
	snap := snapshot(t, list(t, st))
	for _, tg := range targets {
		e, ok := snap[key{tg, foreign.FP}]
		require.True(t, ok, "planted root %s not listed in %s", foreign.FP.Short(), tg)
		assert.False(t, e.Tagged, "planted root %s in %s is Tagged as ours", foreign.FP.Short(), tg)
	}
	ours := NewCA(t)
	requireOK(t, apply(t, st, installs(targets, ours)))
	requireOK(t, apply(t, st, append(removes(targets, ours.FP), removes(targets, RandomFingerprint(t))...)))
	snap = snapshot(t, list(t, st))
	for _, tg := range targets {
		_, ok := snap[key{tg, foreign.FP}]
		assert.True(t, ok, "planted root %s in %s did not survive removal of ours", foreign.FP.Short(), tg)
	}
	if list(t, st).OwnCopies {
		// Every writer keeps its own copy here, so an ordinary removal
		// (our copy vanished after the plan was made) must leave the
		// copies others wrote alone: OK or Skipped, never Failed, and
		// nothing removed.
		before := snapshot(t, list(t, st))
		for _, r := range apply(t, st, removes(targets, foreign.FP)) {
			assert.Contains(t, []trust.Status{trust.StatusOK, trust.StatusSkipped}, r.Status,
				"%s: removing a root we hold no copy of without Foreign: got %s (%v), want ok or skipped", r.Change, r.Status, r.Err)
		}
		assert.Equal(t, before, snapshot(t, list(t, st)), "a removal without Foreign changed someone else's copy")
	}
	// Removing the planted root by its exact fingerprint with Foreign: how
	// retired roots are cleaned up.
	before := snapshot(t, list(t, st))
	res := apply(t, st, foreignRemoves(targets, foreign.FP))
	after := snapshot(t, list(t, st))
	if s.opts.PlantedRemovable {
		requireOK(t, res)
		for _, tg := range targets {
			_, ok := after[key{tg, foreign.FP}]
			assert.False(t, ok, "planted root %s still in %s after its removal", foreign.FP.Short(), tg)
		}
		for k := range before {
			if k.fp != foreign.FP {
				_, ok := after[k]
				assert.True(t, ok, "removing the planted root also removed %s from %s", k.fp.Short(), k.target)
			}
		}
		return
	}
	for _, r := range res {
		assert.NotEqual(t, trust.StatusOK, r.Status, "%s: removing a root the store cannot remove must not be OK", r.Change)
	}
	assert.Equal(t, before, after, "a refused removal changed the inventory")
}

func (s *suite) batchOrder(t *testing.T) {
	st, targets := s.fresh(t)
	cas := NewCAs(t, 4)
	unknown := RandomFingerprint(t)
	tg := targets[len(targets)-1]
	in := func(c *CA) trust.Change {
		return trust.Change{Op: trust.OpInstall, FP: c.FP, Target: tg, Cert: c.Cert}
	}
	rm := func(fp trust.Fingerprint) trust.Change { return trust.Change{Op: trust.OpRemove, FP: fp, Target: tg} }
	r0 := s.refreshes(st)
	requireOK(t, apply(t, st, []trust.Change{in(cas[0]), in(cas[1]), rm(unknown), in(cas[2])}))
	if s.opts.Refreshes != nil {
		assert.LessOrEqual(t, s.refreshes(st)-r0, 1, "one batch ran the refresh tool more than once")
	}
	r1 := s.refreshes(st)
	requireOK(t, apply(t, st, []trust.Change{rm(cas[0].FP), in(cas[3]), rm(cas[2].FP), in(cas[1])}))
	if s.opts.Refreshes != nil {
		assert.LessOrEqual(t, s.refreshes(st)-r1, 1, "one batch ran the refresh tool more than once")
	}
	snap := snapshot(t, list(t, st))
	for i, want := range []bool{false, true, false, true} {
		_, ok := snap[key{tg, cas[i].FP}]
		assert.Equal(t, want, ok, "after both batches, CA %d in %s: got %v, want %v", i, tg, ok, want)
	}
}

func (s *suite) badChanges(t *testing.T) {
	st, targets := s.fresh(t)
	tg := targets[0]
	a, b, good := NewCA(t), NewCA(t), NewCA(t)
	before := snapshot(t, list(t, st))
	bad := []trust.Change{
		{Op: trust.OpInstall, FP: a.FP, Target: tg},                                   // no certificate
		{Op: trust.OpInstall, FP: a.FP, Target: tg, Cert: b.Cert},                     // fingerprint mismatch
		{Op: trust.Op("replace"), FP: a.FP, Target: tg, Cert: a.Cert},                 // unknown op
		{Op: trust.OpInstall, FP: a.FP, Target: unknownTarget(targets), Cert: a.Cert}, // unknown target
	}
	res := apply(t, st, append(bad, trust.Change{Op: trust.OpInstall, FP: good.FP, Target: tg, Cert: good.Cert}))
	for i := range bad {
		assert.NotEqual(t, trust.StatusOK, res[i].Status, "bad change %d (%s) reported OK", i, bad[i])
	}
	assert.Equal(t, trust.StatusOK, res[len(bad)].Status, "a good change next to bad ones: reason %q, error %v", res[len(bad)].Reason, res[len(bad)].Err)
	// Only a and b are checked for additions: a store's first write may
	// legitimately bring in more (a bundle copies the system roots).
	after := snapshot(t, list(t, st))
	for _, fp := range []trust.Fingerprint{a.FP, b.FP} {
		for _, tg := range targets {
			_, ok := after[key{tg, fp}]
			assert.False(t, ok, "a bad change added %s to %s", fp.Short(), tg)
		}
	}
	for k := range before {
		_, ok := after[k]
		assert.True(t, ok, "a bad change removed %s from %s", k.fp.Short(), k.target)
	}
}

// unknownTarget returns a target that is not among targets.
func unknownTarget(targets []trust.Target) trust.Target {
	have := make(map[trust.Target]bool, len(targets))
	for _, t := range targets {
		have[t] = true
	}
	for i := 0; ; i++ {
		t := trust.Target{User: fmt.Sprintf("certagent-nobody-%d", i), Path: fmt.Sprintf("/nonexistent/certagent-%d", i)}
		if !have[t] {
			return t
		}
	}
}

// concurrent runs several goroutines that each install, list and remove
// their own root. Each must always see its own root after installing it and
// never after removing it, whatever the others do; run it with -race.
func (s *suite) concurrent(t *testing.T) {
	st, targets := s.fresh(t)
	cas := NewCAs(t, s.opts.Concurrency)
	ctx := context.Background()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		msgs []string
	)
	report := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		msgs = append(msgs, fmt.Sprintf(format, args...))
	}
	for _, ca := range cas {
		wg.Go(func() {
			for round := range s.opts.Rounds {
				for _, r := range st.Apply(ctx, installs(targets, ca)) {
					if r.Status != trust.StatusOK {
						report("round %d: %s: %s %v", round, r.Change, r.Reason, r.Err)
					}
				}
				if msg := checkHeld(ctx, st, targets, ca.FP, true); msg != "" {
					report("round %d after install: %s", round, msg)
				}
				for _, r := range st.Apply(ctx, removes(targets, ca.FP)) {
					if r.Status != trust.StatusOK {
						report("round %d: %s: %s %v", round, r.Change, r.Reason, r.Err)
					}
				}
				if msg := checkHeld(ctx, st, targets, ca.FP, false); msg != "" {
					report("round %d after remove: %s", round, msg)
				}
			}
		})
	}
	wg.Wait()
	sort.Strings(msgs)
	if len(msgs) > 0 {
		t.Fatalf("concurrent use:\n%s", strings.Join(msgs, "\n"))
	}
	for _, ca := range cas {
		s.requireHeld(t, st, ca.FP, false)
	}
	// The store still works after the storm.
	last := NewCA(t)
	requireOK(t, apply(t, st, installs(targets, last)))
	s.requireHeld(t, st, last.FP, true)
}

func checkHeld(ctx context.Context, st trust.Store, targets []trust.Target, fp trust.Fingerprint, want bool) string {
	inv, err := st.List(ctx)
	if err != nil {
		return "List: " + err.Error()
	}
	for _, tg := range targets {
		if got := inv.Has(tg, fp); got != want {
			return fmt.Sprintf("target %s holds %s: got %v, want %v", tg, fp.Short(), got, want)
		}
	}
	return ""
}
