package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/certagent/certagent/trust/stores"
)

// PurgeReport is what uninstall --purge did.
type PurgeReport struct {
	Results []TargetResult `json:"results"`
	// Remaining are ledger entries that could not be removed (their store
	// was unavailable or the removal failed); the ledger keeps them.
	Remaining []LedgerEntry `json:"remaining,omitempty"`
	// StateRemoved reports whether the ledger and status file were deleted.
	StateRemoved bool `json:"state_removed"`
}

// Purge removes every root the ledger says certagent installed, from every
// store the ledger names (configured or not), then deletes the ledger and
// the status file. It needs no control plane. When a removal fails the
// ledger keeps what is left and Purge returns an error, so running it again
// finishes the job.
func Purge(ctx context.Context, cfg *Config, deps Deps) (*PurgeReport, error) {
	deps = deps.withDefaults(cfg.StateDir)
	log := deps.Logger
	rep := &PurgeReport{}
	// Serialise with a daemon's pass; a state dir that does not exist has
	// nothing to purge and is not created.
	unlock := func() {}
	if _, err := os.Stat(cfg.StateDir); err == nil {
		u, err := lockState(cfg.StateDir)
		if err != nil {
			return rep, err
		}
		unlock = u
	}
	defer func() { unlock() }()
	ledger, err := LoadLedger(cfg.LedgerPath())
	if err != nil {
		return rep, err
	}
	now := deps.Now().UTC()
	var states []StoreState
	var handles []storeHandle
	for _, name := range ledger.StoreNames() {
		s, err := deps.OpenStore(name)
		h := storeHandle{name: name, store: s, openErr: err}
		handles = append(handles, h)
		states = append(states, inventory(ctx, h))
	}
	// Nothing desired, removals allowed, no retired sweep: exactly the
	// ledger's roots go.
	plan := MakePlan(PlanInput{Authoritative: true, Ledger: ledger, Stores: states, Now: now})
	a := &Agent{deps: deps, log: log}
	if _, err := os.Stat(cfg.StateDir); err == nil {
		// Under the lock: what killed writes left goes too.
		a.sweep(cfg, handles)
	}
	shim := &PassReport{}
	if !plan.Empty() {
		if err := a.apply(ctx, &Config{StateDir: cfg.StateDir}, plan, handles, shim, now); err != nil {
			return rep, err
		}
	}
	rep.Results = shim.Results
	after, err := LoadLedger(cfg.LedgerPath())
	if err != nil {
		return rep, err
	}
	for _, st := range states {
		if st.Err != nil {
			log.Warn("store unavailable, its roots stay in the ledger", "store", st.Name, "error", st.Err)
		}
	}
	if len(after.Entries) > 0 {
		rep.Remaining = after.Entries
		return rep, fmt.Errorf("agent: purge: %d root(s) could not be removed (see the results); run it again once the store is usable", len(after.Entries))
	}
	unlock()
	unlock = func() {}
	for _, f := range []string{cfg.LedgerPath(), cfg.StatusPath(), filepath.Join(cfg.StateDir, "lock"),
		filepath.Join(cfg.StateDir, deviceIDFile), filepath.Join(cfg.StateDir, deviceSecretFile),
		filepath.Join(cfg.StateDir, stores.NSSCacheFile)} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return rep, fmt.Errorf("agent: purge: %w", err)
		}
	}
	// The directory goes only if it is empty: never delete what we did not
	// write.
	_ = os.Remove(cfg.StateDir)
	rep.StateRemoved = true
	return rep, nil
}
