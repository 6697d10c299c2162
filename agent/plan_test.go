package agent

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

// planWorld names a few minted roots so table cases read as letters.
type planWorld struct {
	certs map[string]*trust.Cert
	names map[trust.Fingerprint]string
}

func newPlanWorld(t *testing.T, letters ...string) *planWorld {
	w := &planWorld{certs: map[string]*trust.Cert{}, names: map[trust.Fingerprint]string{}}
	for _, l := range letters {
		c := trusttest.NewCA(t, trusttest.WithCommonName("root "+l)).Cert
		c.ID = "id-" + l
		w.certs[l] = c
		w.names[c.FP] = l
	}
	return w
}

func (w *planWorld) fp(l string) trust.Fingerprint { return w.certs[l].FP }

var (
	tA = trust.Target{User: "alice", Path: "/home/alice/.pki/nssdb"}
	tB = trust.Target{User: "bob", Path: "/home/bob/.pki/nssdb"}
	t0 = trust.Target{}
)

func targetName(t trust.Target) string {
	switch t {
	case tA:
		return "alice"
	case tB:
		return "bob"
	case t0:
		return "-"
	}
	return t.String()
}

// inv builds an inventory: targets, and "letter@target" entries.
func (w *planWorld) inv(targets []trust.Target, held map[trust.Target][]string) *trust.Inventory {
	in := &trust.Inventory{Targets: targets}
	for t, ls := range held {
		for _, l := range ls {
			in.Entries = append(in.Entries, trust.Entry{FP: w.fp(l), Target: t})
		}
	}
	return in
}

func (w *planWorld) ledger(entries ...LedgerEntry) *Ledger {
	l := NewLedger()
	for _, e := range entries {
		l.set(e)
		if c := w.certs[w.names[e.FP]]; c != nil {
			l.Certs[e.FP] = ledgerCert(c)
		}
	}
	l.normalize()
	return l
}

func (w *planWorld) entry(store string, t trust.Target, l string, s EntryState) LedgerEntry {
	c := w.certs[l]
	return LedgerEntry{LedgerKey: LedgerKey{Store: store, Target: t, FP: c.FP}, State: s, CertID: c.ID, Subject: c.Subject(), NotAfter: c.X509.NotAfter.UTC()}
}

func (w *planWorld) changes(p *Plan) []string {
	var out []string
	for _, sp := range p.Stores {
		for i, c := range sp.Changes {
			s := fmt.Sprintf("%s %s %s@%s", sp.Store, c.Op, w.names[c.FP], targetName(c.Target))
			if sp.Retired[i] {
				s += " (retired)"
			}
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func (w *planWorld) states(l *Ledger) []string {
	var out []string
	for _, e := range l.Entries {
		out = append(out, fmt.Sprintf("%s %s@%s=%s", e.Store, w.names[e.FP], targetName(e.Target), e.State))
	}
	sort.Strings(out)
	return out
}

func (w *planWorld) results(p *Plan) []string {
	var out []string
	for _, sp := range p.Stores {
		for _, r := range sp.Results {
			out = append(out, fmt.Sprintf("%s %s@%s %s", sp.Store, w.names[r.FP], targetName(r.Target), r.Status))
		}
	}
	sort.Strings(out)
	return out
}

func TestMakePlan(t *testing.T) {
	w := newPlanWorld(t, "A", "B", "R", "F")
	one := []trust.Target{t0}
	two := []trust.Target{tA, tB}
	retired := map[trust.Fingerprint]bool{w.fp("R"): true}
	desired := func(ls ...string) []*trust.Cert {
		var out []*trust.Cert
		for _, l := range ls {
			out = append(out, w.certs[l])
		}
		return out
	}

	tests := []struct {
		name          string
		desired       []string
		nonAuth       bool
		ledger        *Ledger
		stores        []StoreState
		retired       map[trust.Fingerprint]bool
		wantChanges   []string
		wantLedger    []string
		wantResults   []string
		wantLedgerChg bool
	}{
		{
			name:   "nothing anywhere",
			stores: []StoreState{{Name: "dir", Inv: w.inv(one, nil)}},
		},
		{
			name:          "install a missing desired root",
			desired:       []string{"A"},
			stores:        []StoreState{{Name: "dir", Inv: w.inv(one, nil)}},
			wantChanges:   []string{"dir install A@-"},
			wantLedger:    []string{"dir A@-=installing"},
			wantLedgerChg: true,
		},
		{
			name:        "present and ours: nothing to do",
			desired:     []string{"A"},
			ledger:      w.ledger(w.entry("dir", t0, "A", StateInstalled)),
			stores:      []StoreState{{Name: "dir", Inv: w.inv(one, map[trust.Target][]string{t0: {"A"}})}},
			wantLedger:  []string{"dir A@-=installed"},
			wantResults: []string{"dir A@- ok"},
		},
		{
			name:        "present but not ours: never claimed",
			desired:     []string{"A"},
			stores:      []StoreState{{Name: "dir", Inv: w.inv(one, map[trust.Target][]string{t0: {"A"}})}},
			wantResults: []string{"dir A@- ok"},
		},
		{
			name:          "withdrawn and present: removed",
			ledger:        w.ledger(w.entry("dir", t0, "A", StateInstalled)),
			stores:        []StoreState{{Name: "dir", Inv: w.inv(one, map[trust.Target][]string{t0: {"A"}})}},
			wantChanges:   []string{"dir remove A@-"},
			wantLedger:    []string{"dir A@-=removing"},
			wantLedgerChg: true,
		},
		{
			name:       "withdrawn but the answer is not authoritative: kept",
			nonAuth:    true,
			ledger:     w.ledger(w.entry("dir", t0, "A", StateInstalled)),
			stores:     []StoreState{{Name: "dir", Inv: w.inv(one, map[trust.Target][]string{t0: {"A"}})}},
			wantLedger: []string{"dir A@-=installed"},
		},
		{
			name:          "withdrawn and already gone: forgotten",
			ledger:        w.ledger(w.entry("dir", t0, "A", StateInstalled)),
			stores:        []StoreState{{Name: "dir", Inv: w.inv(one, nil)}},
			wantLedgerChg: true,
		},
		{
			name:          "interrupted install found present: adopted",
			desired:       []string{"A"},
			ledger:        w.ledger(w.entry("dir", t0, "A", StateInstalling)),
			stores:        []StoreState{{Name: "dir", Inv: w.inv(one, map[trust.Target][]string{t0: {"A"}})}},
			wantLedger:    []string{"dir A@-=installed"},
			wantResults:   []string{"dir A@- ok"},
			wantLedgerChg: true,
		},
		{
			name:        "interrupted install not present: installed again",
			desired:     []string{"A"},
			ledger:      w.ledger(w.entry("dir", t0, "A", StateInstalling)),
			stores:      []StoreState{{Name: "dir", Inv: w.inv(one, nil)}},
			wantChanges: []string{"dir install A@-"},
			wantLedger:  []string{"dir A@-=installing"},
			// The intent is already recorded: no ledger write needed.
			wantLedgerChg: false,
		},
		{
			name:          "interrupted removal completed: forgotten",
			ledger:        w.ledger(w.entry("dir", t0, "A", StateRemoving)),
			stores:        []StoreState{{Name: "dir", Inv: w.inv(one, nil)}},
			wantLedgerChg: true,
		},
		{
			name:          "interrupted removal not done: removed",
			ledger:        w.ledger(w.entry("dir", t0, "A", StateRemoving)),
			stores:        []StoreState{{Name: "dir", Inv: w.inv(one, map[trust.Target][]string{t0: {"A"}})}},
			wantChanges:   []string{"dir remove A@-"},
			wantLedger:    []string{"dir A@-=removing"},
			wantLedgerChg: true,
		},
		{
			name:          "desired again while removing: adopted back",
			desired:       []string{"A"},
			ledger:        w.ledger(w.entry("dir", t0, "A", StateRemoving)),
			stores:        []StoreState{{Name: "dir", Inv: w.inv(one, map[trust.Target][]string{t0: {"A"}})}},
			wantLedger:    []string{"dir A@-=installed"},
			wantResults:   []string{"dir A@- ok"},
			wantLedgerChg: true,
		},
		{
			name:        "drift: ours, desired, deleted behind our back: reinstalled",
			desired:     []string{"A"},
			ledger:      w.ledger(w.entry("dir", t0, "A", StateInstalled)),
			stores:      []StoreState{{Name: "dir", Inv: w.inv(one, nil)}},
			wantChanges: []string{"dir install A@-"},
			wantLedger:  []string{"dir A@-=installing"},
			// installed → installing is a ledger change.
			wantLedgerChg: true,
		},
		{
			name:        "own copies: ours present only through a copy not ours: written again",
			desired:     []string{"A"},
			ledger:      w.ledger(w.entry("system", t0, "A", StateInstalled)),
			stores:      []StoreState{{Name: "system", Inv: ownCopies(w.inv(one, map[trust.Target][]string{t0: {"A"}}))}},
			wantChanges: []string{"system install A@-"},
			wantLedger:  []string{"system A@-=installing"},
			// installed → installing is a ledger change.
			wantLedgerChg: true,
		},
		{
			name:        "own copies: our tagged copy present: nothing to do",
			desired:     []string{"A"},
			ledger:      w.ledger(w.entry("system", t0, "A", StateInstalled)),
			stores:      []StoreState{{Name: "system", Inv: ownCopies(w.inv(one, map[trust.Target][]string{t0: {"A"}}), w.fp("A"))}},
			wantLedger:  []string{"system A@-=installed"},
			wantResults: []string{"system A@- ok"},
		},
		{
			// Our anchor file was deleted; an administrator's own file
			// holds the same root. Withdrawing it must not remove their
			// copy: ours is gone, so the entry is forgotten.
			name:          "own copies: withdrawn, only a copy not ours left: forgotten, not removed",
			ledger:        w.ledger(w.entry("system", t0, "A", StateInstalled)),
			stores:        []StoreState{{Name: "system", Inv: ownCopies(w.inv(one, map[trust.Target][]string{t0: {"A"}}))}},
			wantLedgerChg: true,
		},
		{
			name:          "own copies: withdrawn, our tagged copy present: removed",
			ledger:        w.ledger(w.entry("system", t0, "A", StateInstalled)),
			stores:        []StoreState{{Name: "system", Inv: ownCopies(w.inv(one, map[trust.Target][]string{t0: {"A"}}), w.fp("A"))}},
			wantChanges:   []string{"system remove A@-"},
			wantLedger:    []string{"system A@-=removing"},
			wantLedgerChg: true,
		},
		{
			name:        "own copies: a root we never installed is still never claimed",
			desired:     []string{"A"},
			stores:      []StoreState{{Name: "system", Inv: ownCopies(w.inv(one, map[trust.Target][]string{t0: {"A"}}))}},
			wantResults: []string{"system A@- ok"},
		},
		{
			name:        "retired root removed wherever found",
			retired:     retired,
			stores:      []StoreState{{Name: "nss", Inv: w.inv(two, map[trust.Target][]string{tA: {"R", "F"}, tB: {"R"}})}},
			wantChanges: []string{"nss remove R@alice (retired)", "nss remove R@bob (retired)"},
		},
		{
			name:    "retired root kept when remove_retired is off",
			retired: nil,
			stores:  []StoreState{{Name: "nss", Inv: w.inv(two, map[trust.Target][]string{tA: {"R"}})}},
		},
		{
			name:    "retired root kept when the answer is not authoritative",
			nonAuth: true,
			retired: retired,
			stores:  []StoreState{{Name: "nss", Inv: w.inv(two, map[trust.Target][]string{tA: {"R"}})}},
		},
		{
			name:        "a desired root that is retired is never installed",
			desired:     []string{"R", "A"},
			retired:     retired,
			stores:      []StoreState{{Name: "dir", Inv: w.inv(one, map[trust.Target][]string{t0: {"R"}})}},
			wantChanges: []string{"dir install A@-", "dir remove R@- (retired)"},
			wantLedger:  []string{"dir A@-=installing"}, wantLedgerChg: true,
		},
		{
			name:        "foreign roots are never touched",
			desired:     []string{"A"},
			ledger:      w.ledger(w.entry("dir", t0, "A", StateInstalled)),
			stores:      []StoreState{{Name: "dir", Inv: w.inv(one, map[trust.Target][]string{t0: {"A", "F", "B"}})}},
			wantLedger:  []string{"dir A@-=installed"},
			wantResults: []string{"dir A@- ok"},
		},
		{
			name:          "every target: install only where missing",
			desired:       []string{"A", "B"},
			ledger:        w.ledger(w.entry("nss", tA, "A", StateInstalled)),
			stores:        []StoreState{{Name: "nss", Inv: w.inv(two, map[trust.Target][]string{tA: {"A"}})}},
			wantChanges:   []string{"nss install A@bob", "nss install B@alice", "nss install B@bob"},
			wantLedger:    []string{"nss A@alice=installed", "nss A@bob=installing", "nss B@alice=installing", "nss B@bob=installing"},
			wantResults:   []string{"nss A@alice ok"},
			wantLedgerChg: true,
		},
		{
			name:    "skipped target: skipped results, its entries kept",
			desired: []string{"A"},
			ledger:  w.ledger(w.entry("nss", tB, "B", StateInstalled)),
			stores: []StoreState{{Name: "nss", Inv: func() *trust.Inventory {
				in := w.inv([]trust.Target{tA}, map[trust.Target][]string{tA: {"A"}})
				in.Skipped = []trust.Skip{{Target: tB, Reason: "no NSS database"}}
				return in
			}()}},
			wantLedger:  []string{"nss B@bob=installed"},
			wantResults: []string{"nss A@alice ok", "nss A@bob skipped"},
		},
		{
			name:        "unavailable store: skipped, entries kept, nothing removed",
			desired:     []string{"A"},
			ledger:      w.ledger(w.entry("nss", tA, "B", StateInstalled)),
			stores:      []StoreState{{Name: "nss", Err: errors.New("certutil not found")}, {Name: "dir", Inv: w.inv(one, map[trust.Target][]string{t0: {"A"}})}},
			wantLedger:  []string{"nss B@alice=installed"},
			wantResults: []string{"dir A@- ok", "nss A@- skipped"},
		},
		{
			name:          "target gone (user deleted): forgotten",
			ledger:        w.ledger(w.entry("nss", tB, "A", StateInstalled), w.entry("nss", tA, "A", StateInstalled)),
			desired:       []string{"A"},
			stores:        []StoreState{{Name: "nss", Inv: w.inv([]trust.Target{tA}, map[trust.Target][]string{tA: {"A"}})}},
			wantLedger:    []string{"nss A@alice=installed"},
			wantResults:   []string{"nss A@alice ok"},
			wantLedgerChg: true,
		},
		{
			name:       "entries of a store no longer configured are left alone",
			ledger:     w.ledger(w.entry("java", t0, "A", StateInstalled)),
			stores:     []StoreState{{Name: "dir", Inv: w.inv(one, nil)}},
			wantLedger: []string{"java A@-=installed"},
		},
		{
			name:          "store dropped from the config: our roots there are removed, nothing installed",
			desired:       []string{"A"},
			ledger:        w.ledger(w.entry("java", t0, "A", StateInstalled), w.entry("java", t0, "B", StateInstalled)),
			stores:        []StoreState{{Name: "java", Orphaned: true, Inv: w.inv(one, map[trust.Target][]string{t0: {"A", "B", "F"}})}},
			retired:       retired,
			wantChanges:   []string{"java remove A@-", "java remove B@-"},
			wantLedger:    []string{"java A@-=removing", "java B@-=removing"},
			wantLedgerChg: true,
		},
		{
			name:       "store dropped from the config, answer not authoritative: kept",
			nonAuth:    true,
			ledger:     w.ledger(w.entry("java", t0, "A", StateInstalled)),
			stores:     []StoreState{{Name: "java", Orphaned: true, Inv: w.inv(one, map[trust.Target][]string{t0: {"A"}})}},
			wantLedger: []string{"java A@-=installed"},
		},
		{
			name:       "store dropped from the config and unavailable: kept for later",
			ledger:     w.ledger(w.entry("java", t0, "A", StateInstalled)),
			stores:     []StoreState{{Name: "java", Orphaned: true, Err: errors.New("keytool not found")}},
			wantLedger: []string{"java A@-=installed"},
		},
		{
			name:    "trust pending is skipped, not ok",
			desired: []string{"A"},
			ledger:  w.ledger(w.entry("system", t0, "A", StateInstalled)),
			stores: []StoreState{{Name: "system", Inv: &trust.Inventory{Targets: one, Entries: []trust.Entry{
				{FP: w.fp("A"), Target: t0, TrustPending: true},
			}}}},
			wantLedger:  []string{"system A@-=installed"},
			wantResults: []string{"system A@- skipped"},
		},
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before []byte
			if tc.ledger != nil {
				var err error
				before, err = tc.ledger.Clone().Marshal()
				require.NoError(t, err)
			}
			p := MakePlan(PlanInput{
				Desired:       desired(tc.desired...),
				Authoritative: !tc.nonAuth,
				Ledger:        tc.ledger,
				Stores:        tc.stores,
				Retired:       tc.retired,
				Now:           now,
			})
			assert.Equal(t, tc.wantChanges, w.changes(p), "changes")
			assert.Equal(t, tc.wantLedger, w.states(p.Intent), "intent ledger")
			assert.Equal(t, tc.wantResults, w.results(p), "results")
			assert.Equal(t, tc.wantLedgerChg, p.LedgerChanged, "LedgerChanged")
			if tc.ledger != nil {
				after, err := tc.ledger.Clone().Marshal()
				require.NoError(t, err)
				assert.Equal(t, string(before), string(after), "MakePlan modified its input ledger")
			}
			if len(tc.wantChanges) == 0 && !tc.wantLedgerChg {
				assert.True(t, p.Empty(), "plan should be empty")
			}
			// Every install carries its certificate and a pending entry;
			// no install or removal appears twice.
			// Only a retired root's removal may take copies we did not
			// write (Foreign); a withdrawal takes our own copy only.
			seen := map[string]bool{}
			for _, sp := range p.Stores {
				for i, c := range sp.Changes {
					if got, want := c.Foreign, c.Op == trust.OpRemove && sp.Retired[i]; got != want {
						t.Errorf("%s: Foreign got %v, want %v", c, got, want)
					}
					k := sp.Store + c.String()
					if seen[k] {
						t.Errorf("duplicate change %s", k)
					}
					seen[k] = true
					if c.Op == trust.OpInstall {
						require.NoError(t, c.Validate())
						e, ok := p.Intent.Get(LedgerKey{Store: sp.Store, Target: c.Target, FP: c.FP})
						if !ok || e.State != StateInstalling {
							t.Errorf("install %s: ledger entry %+v, want installing", c, e)
						}
						if !strings.Contains(p.Intent.Certs[c.FP].PEM, "BEGIN CERTIFICATE") {
							t.Errorf("install %s: ledger lacks the PEM", c)
						}
					}
				}
			}
		})
	}
}

func TestCommit(t *testing.T) {
	w := newPlanWorld(t, "A", "B", "C")
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ledger := w.ledger(w.entry("dir", t0, "C", StateInstalled))
	p := MakePlan(PlanInput{
		Desired:       []*trust.Cert{w.certs["A"], w.certs["B"]},
		Authoritative: true,
		Ledger:        ledger,
		Stores:        []StoreState{{Name: "dir", Inv: w.inv([]trust.Target{t0}, map[trust.Target][]string{t0: {"C"}})}},
		Now:           now,
	})
	require.Len(t, p.Stores[0].Changes, 3)
	var res []trust.Result
	for _, c := range p.Stores[0].Changes {
		switch w.names[c.FP] {
		case "A":
			res = append(res, trust.OK(c))
		case "B":
			res = append(res, trust.Failed(c, errors.New("disk full")))
		case "C":
			res = append(res, trust.OK(c))
		}
	}
	got := Commit(p.Intent, p, map[string][]trust.Result{"dir": res}, now.Add(time.Second))
	assert.Equal(t, []string{"dir A@-=installed", "dir B@-=installing"}, w.states(got))
	e, _ := got.Get(LedgerKey{Store: "dir", Target: t0, FP: w.fp("A")})
	assert.Equal(t, now.Add(time.Second), e.InstalledAt)
	_, hasC := got.Certs[w.fp("C")]
	assert.False(t, hasC, "a removed root's certificate must leave the ledger")
}

func TestNextDelay(t *testing.T) {
	tests := []struct {
		failures int
		rnd      float64
		want     time.Duration
	}{
		{0, 0, 54 * time.Second},
		{0, 0.5, 60 * time.Second},
		{0, 0.999999, 66 * time.Second},
		{1, 0, 2500 * time.Millisecond},
		{1, 0.999999, 5 * time.Second},
		{2, 0, 5 * time.Second},
		{3, 0, 10 * time.Second},
		{8, 0, 5 * time.Minute},
		{9, 0, 5 * time.Minute},
		{9, 0.999999, 10 * time.Minute},
		{100, 0.5, 7*time.Minute + 30*time.Second},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d/%v", tc.failures, tc.rnd), func(t *testing.T) {
			got := NextDelay(time.Minute, tc.failures, tc.rnd)
			if d := got - tc.want; d < -time.Millisecond || d > time.Millisecond {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// ownCopies marks inv as a store where each writer keeps its own copy, with
// the entries of fps tagged as ours.
func ownCopies(inv *trust.Inventory, fps ...trust.Fingerprint) *trust.Inventory {
	inv.OwnCopies = true
	for i, e := range inv.Entries {
		for _, fp := range fps {
			if e.FP == fp {
				inv.Entries[i].Tagged = true
			}
		}
	}
	return inv
}
