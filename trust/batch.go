package trust

import "fmt"

// Batch is the changes of one Store.Apply and their results, slot for
// slot: Results[i] is the outcome of Changes[i], and a Result without a
// Status is not decided yet. An adapter decides each slot once; distinct
// slots (one Group per goroutine) may be decided concurrently.
//
// Every Apply reads the same way:
//
//	if len(changes) == 0 {
//		return nil // an empty batch runs nothing
//	}
//	b := trust.NewBatch(changes)
//	…decide b.Results[i]…
//	return b.Results
type Batch struct {
	Changes []Change
	Results []Result
}

// NewBatch returns a batch of changes with every result undecided.
func NewBatch(changes []Change) *Batch {
	return &Batch{Changes: changes, Results: make([]Result, len(changes))}
}

// Decided reports whether slot i has its result.
func (b *Batch) Decided(i int) bool { return b.Results[i].Status != "" }

// FailRemaining gives every undecided change a Failed result with err: the
// step every later change needed (a listing, a write, the refresh tool)
// went wrong, so none of them may be reported done.
func (b *Batch) FailRemaining(err error) {
	for i := range b.Changes {
		if !b.Decided(i) {
			b.Results[i] = Failed(b.Changes[i], err)
		}
	}
}

// Group is some slots of a batch, in the batch's order: the changes of one
// target, or those waiting on one write.
type Group struct {
	// Target is the slots' target (zero for a group made by Slots).
	Target Target
	// Slots index the batch's Changes and Results.
	Slots []int
	b     *Batch
}

// Slots returns the group of the given slots.
func (b *Batch) Slots(slots []int) Group { return Group{Slots: slots, b: b} }

// ByTarget validates the changes and groups the valid ones by target, in
// the order targets first appear, for stores that change each target as
// one unit (an NSS database, a keystore). A malformed change gets a Failed
// result wrapping ErrBadChange, one for a target that known rejects a
// Failed result wrapping errUnknown; the groups' slots are left undecided.
func (b *Batch) ByTarget(known func(Target) bool, errUnknown error) []Group {
	var groups []Group
	at := make(map[Target]int)
	for i, c := range b.Changes {
		if err := c.Validate(); err != nil {
			b.Results[i] = Failed(c, err)
			continue
		}
		if !known(c.Target) {
			b.Results[i] = Failed(c, fmt.Errorf("%w: %s", errUnknown, c.Target))
			continue
		}
		g, ok := at[c.Target]
		if !ok {
			g = len(groups)
			at[c.Target] = g
			groups = append(groups, Group{Target: c.Target, b: b})
		}
		groups[g].Slots = append(groups[g].Slots, i)
	}
	return groups
}

// HasInstall reports whether any change of the group installs.
func (g Group) HasInstall() bool {
	for _, i := range g.Slots {
		if g.b.Changes[i].Op == OpInstall {
			return true
		}
	}
	return false
}

// FailRemaining gives every undecided change of the group a Failed result
// with err.
func (g Group) FailRemaining(err error) {
	for _, i := range g.Slots {
		if !g.b.Decided(i) {
			g.b.Results[i] = Failed(g.b.Changes[i], err)
		}
	}
}

// Confirm decides every undecided change of the group from a listing taken
// after the tool ran, for stores that check their own work: an install is
// OK when installed(fp) holds, a removal when present(fp) no longer does;
// anything else failed, and the error names where.
func (g Group) Confirm(installed, present func(Fingerprint) bool, where string) {
	for _, i := range g.Slots {
		c := g.b.Changes[i]
		if g.b.Decided(i) {
			continue
		}
		switch {
		case c.Op == OpInstall && installed(c.FP), c.Op == OpRemove && !present(c.FP):
			g.b.Results[i] = OK(c)
		case c.Op == OpInstall:
			g.b.Results[i] = Failed(c, fmt.Errorf("%s: the tool succeeded but %s is not listed afterwards", where, c.FP.Short()))
		default:
			g.b.Results[i] = Failed(c, fmt.Errorf("%s: %s is still listed after removal", where, c.FP.Short()))
		}
	}
}
