package agent

import (
	"time"

	"github.com/certagent/certagent/trust"
)

// StoreState is what one store looked like when the pass began.
type StoreState struct {
	Name string
	// Inv is the store's inventory; nil when Err is set.
	Inv *trust.Inventory
	// Err is why the store cannot be used this pass (Check or List failed,
	// or it could not be opened). Its entries are left alone and every
	// desired root is reported skipped for it.
	Err error
	// Orphaned reports that the store is no longer configured but the
	// ledger has roots in it: nothing is desired there any more, so (on an
	// authoritative pass) our roots are removed and nothing is installed or
	// reported for it.
	Orphaned bool
}

// PlanInput is everything the plan depends on.
type PlanInput struct {
	// Desired are the roots that should be trusted (available and
	// policy-accepted).
	Desired []*trust.Cert
	// Authoritative reports whether Desired came from a valid,
	// authenticated, complete answer of the control plane. When false
	// (nothing but the ledger to go on, e.g. the first poll after a restart
	// failed) nothing is removed: fail static.
	Authoritative bool
	// Ledger is what we installed; nil means empty.
	Ledger *Ledger
	// Stores are the configured stores, in config order.
	Stores []StoreState
	// Retired are fingerprints to remove wherever found (nil: none).
	Retired map[trust.Fingerprint]bool
	// Now stamps ledger entries.
	Now time.Time
}

// TargetResult is the truth about one (root, store, target): what was done
// (Op is "" when nothing needed doing) and how it went.
type TargetResult struct {
	Store   string            `json:"store"`
	Target  trust.Target      `json:"target"`
	FP      trust.Fingerprint `json:"fingerprint"`
	CertID  string            `json:"cert_id,omitempty"`
	Subject string            `json:"subject,omitempty"`
	Op      trust.Op          `json:"op,omitempty"`
	// Retired reports whether a removal was of a retired root.
	Retired bool         `json:"retired,omitempty"`
	Status  trust.Status `json:"status"`
	Reason  string       `json:"reason,omitempty"`
	Error   string       `json:"error,omitempty"`
}

// StorePlan is one store's part of a plan.
type StorePlan struct {
	Store string
	// Changes go to the store's Apply as one batch.
	Changes []trust.Change
	// Retired marks which Changes remove retired roots (same indexes).
	Retired []bool
	// Results are the (root, target) pairs that need no change (present:
	// ok) or cannot be served (skipped), for per-target truth.
	Results []TargetResult
}

// Plan is what a pass will do.
type Plan struct {
	Stores []StorePlan
	// Intent is the ledger to write before any store changes: installs
	// marked installing, removals of our entries marked removing, entries
	// confirmed present adopted, entries confirmed gone forgotten.
	Intent *Ledger
	// LedgerChanged reports whether Intent differs from the input ledger.
	LedgerChanged bool
}

// Empty reports whether the plan changes nothing at all: no store change and
// no ledger write.
func (p *Plan) Empty() bool {
	if p.LedgerChanged {
		return false
	}
	for _, s := range p.Stores {
		if len(s.Changes) > 0 {
			return false
		}
	}
	return true
}

// ChangeCount returns the number of store changes.
func (p *Plan) ChangeCount() int {
	n := 0
	for _, s := range p.Stores {
		n += len(s.Changes)
	}
	return n
}

// MakePlan computes the plan. It is a pure function of its input: no I/O,
// no clock (in.Now), no randomness; the input is not modified.
//
// For every configured, usable store and every target it has:
//   - a desired root missing from the target is installed;
//   - a desired root present and in the ledger is ours (a pending intent
//     from an interrupted pass is adopted as installed);
//   - a desired root present but not in the ledger is left alone and never
//     claimed: it was there before us, so we will never remove it;
//   - a ledger root no longer desired and present is removed (only when
//     the desired set is authoritative);
//   - a ledger root that is no longer in the target is forgotten unless it
//     is still desired (then it is reinstalled: drift repair); in a store
//     that keeps one copy per writer (Inventory.OwnCopies), our root held
//     only by someone else's copy counts as gone;
//   - a retired fingerprint present anywhere is removed.
//
// Skipped targets and unusable stores keep their ledger entries and report
// every desired root as skipped, never as ok.
func MakePlan(in PlanInput) *Plan {
	p := newPlanner(in)
	plan := &Plan{}
	for _, st := range in.Stores {
		plan.Stores = append(plan.Stores, p.store(st))
	}
	if p.intent.dirty {
		p.intent.normalize()
		plan.LedgerChanged = !p.intent.Equal(p.orig)
	}
	plan.Intent = p.intent
	return plan
}

// planner is one MakePlan: what every store's plan reads (the input, the
// ledger as it was, the desired roots) and the intent ledger it writes.
type planner struct {
	in     PlanInput
	orig   *Ledger
	intent *Ledger
	// desired are the roots to trust by fingerprint, order the same in the
	// input's order, retired and duplicate ones dropped.
	desired map[trust.Fingerprint]*trust.Cert
	order   []*trust.Cert
	// byStore indexes orig's entries by store, so each store only looks
	// at its own.
	byStore map[string][]int
}

func newPlanner(in PlanInput) *planner {
	orig := NewLedger()
	if in.Ledger != nil {
		// Work on a copy: lookups build an index, and the caller's ledger
		// must stay as it was for the LedgerChanged comparison.
		orig = in.Ledger.Clone()
	}
	p := &planner{in: in, orig: orig, intent: orig.Clone(),
		desired: make(map[trust.Fingerprint]*trust.Cert, len(in.Desired)), byStore: make(map[string][]int)}
	for _, c := range in.Desired {
		if in.Retired[c.FP] || p.desired[c.FP] != nil {
			continue
		}
		p.desired[c.FP] = c
		p.order = append(p.order, c)
	}
	for i, e := range orig.Entries {
		p.byStore[e.Store] = append(p.byStore[e.Store], i)
	}
	return p
}

// storeIndex is one store's inventory indexed for planning.
type storeIndex struct {
	present map[trust.Target]map[trust.Fingerprint]bool
	pending map[LedgerKey]bool
	// tagged holds the roots present through a copy of ours, for stores
	// where each writer keeps its own (Inventory.OwnCopies).
	tagged map[LedgerKey]bool
	// retiredAt lists the retired roots found per target, so the sweep
	// does not rescan every entry for every target.
	retiredAt map[trust.Target][]trust.Fingerprint
	// skipped are the targets the store cannot serve, with why.
	skipped map[trust.Target]string
}

func indexStore(st StoreState, retired map[trust.Fingerprint]bool) storeIndex {
	inv := st.Inv
	ix := storeIndex{
		present:   make(map[trust.Target]map[trust.Fingerprint]bool, len(inv.Targets)),
		pending:   map[LedgerKey]bool{},
		tagged:    map[LedgerKey]bool{},
		retiredAt: map[trust.Target][]trust.Fingerprint{},
		skipped:   make(map[trust.Target]string, len(inv.Skipped)),
	}
	for _, t := range inv.Targets {
		ix.present[t] = map[trust.Fingerprint]bool{}
	}
	for _, e := range inv.Entries {
		m := ix.present[e.Target]
		if m == nil {
			continue
		}
		if retired[e.FP] && !m[e.FP] {
			ix.retiredAt[e.Target] = append(ix.retiredAt[e.Target], e.FP)
		}
		m[e.FP] = true
		if e.TrustPending {
			ix.pending[LedgerKey{Store: st.Name, Target: e.Target, FP: e.FP}] = true
		}
		if e.Tagged {
			ix.tagged[LedgerKey{Store: st.Name, Target: e.Target, FP: e.FP}] = true
		}
	}
	for _, s := range inv.Skipped {
		ix.skipped[s.Target] = s.Reason
	}
	return ix
}

// store plans one store: the desired roots and the retired ones target by
// target, then our entries no longer desired.
func (p *planner) store(st StoreState) StorePlan {
	sp := StorePlan{Store: st.Name}
	wanted := p.order
	if st.Orphaned {
		wanted = nil
		if st.Err != nil || st.Inv == nil {
			// Left for a pass that can reach it.
			return sp
		}
	}
	if st.Err != nil || st.Inv == nil {
		reason := "store unavailable"
		if st.Err != nil {
			reason = st.Err.Error()
		}
		for _, c := range wanted {
			sp.Results = append(sp.Results, certResult(st.Name, trust.Target{}, c, "", trust.StatusSkipped, reason))
		}
		return sp
	}
	inv := st.Inv
	sp.Results = make([]TargetResult, 0, len(wanted)*(len(inv.Targets)+len(inv.Skipped)))
	ix := indexStore(st, p.in.Retired)
	for _, s := range inv.Skipped {
		for _, c := range wanted {
			sp.Results = append(sp.Results, certResult(st.Name, s.Target, c, "", trust.StatusSkipped, s.Reason))
		}
	}
	for _, t := range inv.Targets {
		if _, skip := ix.skipped[t]; skip {
			continue
		}
		p.desiredAt(&sp, st, ix, t, wanted)
		if !p.in.Authoritative || st.Orphaned {
			continue
		}
		p.retiredAt(&sp, st.Name, t, ix.retiredAt[t])
	}
	p.withdrawn(&sp, st, ix)
	return sp
}

// desiredAt plans the wanted roots at target t: install what is missing
// (or, where each writer keeps its own copy, what lost ours), adopt what
// is there.
func (p *planner) desiredAt(sp *StorePlan, st StoreState, ix storeIndex, t trust.Target, wanted []*trust.Cert) {
	have := ix.present[t]
	for _, c := range wanted {
		key := LedgerKey{Store: st.Name, Target: t, FP: c.FP}
		e, owned := p.orig.Get(key)
		lost := owned && st.Inv.OwnCopies && !ix.tagged[key]
		switch {
		case !have[c.FP] || lost:
			sp.Changes = append(sp.Changes, trust.Change{Op: trust.OpInstall, FP: c.FP, Target: t, Cert: c})
			sp.Retired = append(sp.Retired, false)
			ne := entryFor(key, c, StateInstalling, p.in.Now)
			if owned {
				ne.InstalledAt = e.InstalledAt
				if e.State == StateInstalling {
					// Keep the first attempt's time so a target
					// that keeps failing does not rewrite the
					// ledger every pass.
					ne.Since = e.Since
				}
			}
			p.intent.set(ne)
			p.intent.Certs[c.FP] = ledgerCert(c)
		case ix.pending[key]:
			// Held but not trusted (macOS without an MDM profile):
			// not a success, and reinstalling would not help.
			if owned {
				adopt(p.intent, e, c, p.in.Now)
			}
			sp.Results = append(sp.Results, certResult(st.Name, t, c, "", trust.StatusSkipped, "in the store but not trusted by the OS (trust pending: deliver it with an MDM profile)"))
		case owned:
			adopt(p.intent, e, c, p.in.Now)
			sp.Results = append(sp.Results, certResult(st.Name, t, c, "", trust.StatusOK, "present"))
		default:
			sp.Results = append(sp.Results, certResult(st.Name, t, c, "", trust.StatusOK, "already present, not installed by certagent (left alone)"))
		}
	}
}

// retiredAt plans the removal of the retired roots found at target t,
// wherever they are and whoever put them there.
func (p *planner) retiredAt(sp *StorePlan, store string, t trust.Target, fps []trust.Fingerprint) {
	for _, fp := range fps {
		// Foreign: a retired root goes from every copy, ours or not.
		sp.Changes = append(sp.Changes, trust.Change{Op: trust.OpRemove, FP: fp, Target: t, Cert: ledgerCertOf(p.orig, fp), Foreign: true})
		sp.Retired = append(sp.Retired, true)
		key := LedgerKey{Store: store, Target: t, FP: fp}
		if le, ok := p.orig.Get(key); ok {
			le.State, le.Since = StateRemoving, p.in.Now
			p.intent.set(le)
		}
	}
}

// withdrawn plans our entries in the store that are no longer desired:
// removed when the answer is authoritative and our copy is still there,
// forgotten when it is gone.
func (p *planner) withdrawn(sp *StorePlan, st StoreState, ix storeIndex) {
	for _, i := range p.byStore[st.Name] {
		e := p.orig.Entries[i]
		if _, skip := ix.skipped[e.Target]; skip {
			continue
		}
		if p.desired[e.FP] != nil && !st.Orphaned {
			if _, known := ix.present[e.Target]; known {
				continue // handled by desiredAt
			}
		}
		if !p.in.Authoritative {
			continue
		}
		have, known := ix.present[e.Target]
		switch {
		case !known || !have[e.FP]:
			// Gone from the store (or the target itself is gone):
			// nothing to remove, forget it.
			p.intent.remove(e.LedgerKey)
		case p.in.Retired[e.FP]:
			// Already planned as a retired removal.
		case st.Inv.OwnCopies && !ix.tagged[e.LedgerKey]:
			// Our copy is gone and only someone else's holds the root
			// (an administrator's anchor file): not ours to remove.
			// A remove here would make the store delete their copy.
			p.intent.remove(e.LedgerKey)
		default:
			// Not Foreign: if our copy vanishes before Apply, the
			// store must leave an administrator's copy alone.
			sp.Changes = append(sp.Changes, trust.Change{Op: trust.OpRemove, FP: e.FP, Target: e.Target, Cert: ledgerCertOf(p.orig, e.FP)})
			sp.Retired = append(sp.Retired, false)
			le := e
			le.State, le.Since = StateRemoving, p.in.Now
			p.intent.set(le)
		}
	}
}

// adopt marks a pending entry whose root the store holds as installed: the
// completion of a pass interrupted after its intent was written.
func adopt(l *Ledger, e LedgerEntry, c *trust.Cert, now time.Time) {
	if e.State == StateInstalled {
		return
	}
	ne := entryFor(e.LedgerKey, c, StateInstalled, now)
	ne.InstalledAt = e.InstalledAt
	if ne.InstalledAt.IsZero() {
		ne.InstalledAt = now
	}
	l.set(ne)
	l.Certs[c.FP] = ledgerCert(c)
}

func entryFor(k LedgerKey, c *trust.Cert, s EntryState, now time.Time) LedgerEntry {
	return LedgerEntry{
		LedgerKey: k,
		CertID:    c.ID,
		Subject:   c.Subject(),
		NotAfter:  c.X509.NotAfter.UTC(),
		State:     s,
		Since:     now,
	}
}

func ledgerCert(c *trust.Cert) LedgerCert {
	return LedgerCert{ID: c.ID, Subject: c.Subject(), NotAfter: c.X509.NotAfter.UTC(), PEM: string(c.PEM())}
}

// ledgerCertOf returns the parsed certificate the ledger holds for fp, for
// adapters that want it on removal, or nil.
func ledgerCertOf(l *Ledger, fp trust.Fingerprint) *trust.Cert {
	lc, ok := l.Certs[fp]
	if !ok {
		return nil
	}
	c, err := trust.ParseOnePEM([]byte(lc.PEM))
	if err != nil || c.FP != fp {
		return nil
	}
	c.ID = lc.ID
	return c
}

func certResult(store string, t trust.Target, c *trust.Cert, op trust.Op, s trust.Status, reason string) TargetResult {
	return TargetResult{Store: store, Target: t, FP: c.FP, CertID: c.ID, Subject: c.Subject(), Op: op, Status: s, Reason: reason}
}

// Commit returns the ledger after the stores answered: confirmed installs
// become installed, confirmed removals are dropped, anything failed or
// skipped keeps its pending state so the next pass looks again.
func Commit(intent *Ledger, plan *Plan, results map[string][]trust.Result, now time.Time) *Ledger {
	out := intent.Clone()
	for _, sp := range plan.Stores {
		for _, r := range results[sp.Store] {
			if r.Status != trust.StatusOK {
				continue
			}
			key := LedgerKey{Store: sp.Store, Target: r.Change.Target, FP: r.Change.FP}
			switch r.Change.Op {
			case trust.OpInstall:
				e, ok := out.Get(key)
				if !ok {
					continue
				}
				e.State, e.Since = StateInstalled, now
				if e.InstalledAt.IsZero() {
					e.InstalledAt = now
				}
				out.set(e)
			case trust.OpRemove:
				if _, ok := out.Get(key); ok {
					out.remove(key)
				}
			}
		}
	}
	out.normalize()
	return out
}
