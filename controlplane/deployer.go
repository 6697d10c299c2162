package controlplane

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/controlplane/storage"
)

// Deployer finishes pending transitions (pending_deployment → available,
// pending_deletion → inactive): for an account with live inspection
// gateways, when their reports say every one has loaded the root (or none
// still holds it); for any other account, when the due time comes (the
// deploy delay stands in for a gateway network). Due times live in
// the database, so a restart mid-deployment still completes, and every
// replica may run a Deployer: each transition is claimed by exactly one
// (storage.Backend.CompleteTransition).
type Deployer struct {
	store *storage.Rules
	log   hclog.Logger
	// poll bounds how long the deployer sleeps, so that due times written
	// by another process (a replica, the admin CLI) are noticed.
	poll time.Duration
	// kick is a size-1 "look now" trigger; sends never block.
	kick chan struct{}
}

// NewDeployer returns a deployer over store.
func NewDeployer(store *storage.Rules, log hclog.Logger, poll time.Duration) *Deployer {
	if poll <= 0 {
		poll = time.Second
	}
	return &Deployer{store: store, log: log, poll: poll, kick: make(chan struct{}, 1)}
}

// Kick asks the deployer to look at due times now.
func (d *Deployer) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run completes due transitions until ctx ends.
func (d *Deployer) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		wait := d.pass(ctx)
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		}
	}
}

// pass completes what is due and returns how long to sleep.
func (d *Deployer) pass(ctx context.Context) time.Duration {
	p, err := d.store.Deploy(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Error("complete due transitions", "error", err)
		}
		return d.poll
	}
	if p.Done > 0 {
		d.log.Info("completed transitions", "count", p.Done)
	}
	next, ok, err := d.store.NextDue(ctx)
	if err != nil || !ok {
		return d.poll
	}
	until := next.Sub(d.store.Now())
	if p.Waiting > 0 && until <= 0 {
		// The due time belongs to a root that waits for gateways' reports,
		// which arrive every few seconds: look again at the poll interval.
		return d.poll
	}
	if until < d.poll {
		// A floor keeps a transition that cannot be claimed yet (another
		// replica is finishing it) from turning this into a busy loop.
		return max(until, 5*time.Millisecond)
	}
	return d.poll
}
