package storagetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane/storage"
)

func testGatewayRegistry(t *testing.T, e *env) {
	ctx := context.Background()
	id, first := e.account(t)
	other, _ := e.account(t)
	rev0, err := e.s.Revision(ctx, id)
	require.NoError(t, err)

	gws, err := e.s.Gateways(ctx, id)
	require.NoError(t, err)
	assert.Empty(t, gws)

	g := storage.Gateway{ID: "gw-b", AccountID: id, Hostname: "edge1", Listen: "127.0.0.1:3128", Version: "v1",
		StartedAt: start.Add(-time.Minute), Loaded: []string{"ZZ", first.Fingerprint, "AA", "ZZ"}, Signing: first.Fingerprint, Revision: rev0}
	require.NoError(t, e.s.ReportGateway(ctx, g))
	require.NoError(t, e.s.ReportGateway(ctx, storage.Gateway{ID: "gw-a", AccountID: id}))
	require.NoError(t, e.s.ReportGateway(ctx, storage.Gateway{ID: "gw-a", AccountID: other}))

	gws, err = e.s.Gateways(ctx, id)
	require.NoError(t, err)
	require.Len(t, gws, 2)
	assert.Equal(t, "gw-a", gws[0].ID, "ordered by id")
	got := gws[1]
	want := []string{"AA", first.Fingerprint, "ZZ"}
	slices.Sort(want)
	assert.Equal(t, want, got.Loaded, "sorted and deduplicated")
	assert.True(t, got.Holds(first.Fingerprint))
	assert.False(t, got.Holds("AB"))
	assert.Equal(t, "edge1", got.Hostname)
	assert.Equal(t, "127.0.0.1:3128", got.Listen)
	assert.Equal(t, "v1", got.Version)
	assert.Equal(t, first.Fingerprint, got.Signing)
	assert.Equal(t, rev0, got.Revision)
	assert.True(t, got.StartedAt.Equal(start.Add(-time.Minute)), "got %v", got.StartedAt)
	assert.True(t, got.LastSeen.Equal(start), "last seen is the store's clock: got %v, want %v", got.LastSeen, start)
	assert.Nil(t, gws[0].Loaded)
	assert.True(t, gws[0].StartedAt.Equal(start), "a report without a start time starts now")

	// A later report replaces the row.
	e.clock.Advance(3 * time.Second)
	g.Loaded = nil
	g.Signing = ""
	require.NoError(t, e.s.ReportGateway(ctx, g))
	gws, err = e.s.Gateways(ctx, id)
	require.NoError(t, err)
	require.Len(t, gws, 2)
	assert.Nil(t, gws[1].Loaded)
	assert.Equal(t, "", gws[1].Signing)
	assert.True(t, gws[1].LastSeen.Equal(e.clock.Now()))

	// Every account, filtered by last seen.
	all, err := e.b.Gateways(ctx, "", time.Time{})
	require.NoError(t, err)
	assert.Len(t, all, 3)
	recent, err := e.b.Gateways(ctx, "", e.clock.Now())
	require.NoError(t, err)
	require.Len(t, recent, 1)
	assert.Equal(t, "gw-b", recent[0].ID)

	rev1, err := e.s.Revision(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, rev0, rev1, "reports do not bump the revision (agents have nothing to learn)")

	// Bad reports change nothing.
	for _, bad := range []storage.Gateway{
		{ID: "", AccountID: id},
		{ID: "evil\x1b[2J", AccountID: id},
		{ID: string(make([]byte, 200)), AccountID: id},
		{ID: "gw", AccountID: id, Loaded: []string{"A B"}},
		{ID: "gw", AccountID: id, Loaded: []string{""}},
		{ID: "gw", AccountID: id, Hostname: "a\nb"},
	} {
		err := e.s.ReportGateway(ctx, bad)
		assert.ErrorIs(t, err, storage.ErrInvalidGateway, "report %+v", bad)
	}
	err = e.s.ReportGateway(ctx, storage.Gateway{ID: "gw", AccountID: AccountID()})
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, err = e.s.Gateways(ctx, AccountID())
	assert.ErrorIs(t, err, storage.ErrNotFound)
	gws, err = e.s.Gateways(ctx, id)
	require.NoError(t, err)
	assert.Len(t, gws, 2)

	// Removal.
	require.NoError(t, e.s.RemoveGateway(ctx, id, "gw-a"))
	assert.ErrorIs(t, e.s.RemoveGateway(ctx, id, "gw-a"), storage.ErrNotFound)
	assert.ErrorIs(t, e.s.RemoveGateway(ctx, id, "nope"), storage.ErrNotFound)
	gws, err = e.s.Gateways(ctx, other)
	require.NoError(t, err)
	assert.Len(t, gws, 1, "removing account A's gw-a leaves account B's")
}

// report records gateway gw of account holding fps.
func (e *env) report(t *testing.T, account, gw string, fps ...string) {
	t.Helper()
	require.NoError(t, e.s.ReportGateway(context.Background(), storage.Gateway{ID: gw, AccountID: account, Loaded: fps}))
}

func (e *env) deploy(t *testing.T) storage.DeployPass {
	t.Helper()
	p, err := e.s.Deploy(context.Background())
	require.NoError(t, err)
	return p
}

func testGatewayDeployment(t *testing.T, e *env) {
	ctx := context.Background()
	id, first := e.account(t)
	plain, _ := e.account(t) // no gateway: the timer stands in
	c := inactiveCerts(t, e, id, 1)[0]
	pc := inactiveCerts(t, e, plain, 1)[0]
	cert, err := e.s.Get(ctx, id, c)
	require.NoError(t, err)

	e.report(t, id, "gw1", first.Fingerprint)
	e.report(t, id, "gw2", first.Fingerprint)
	_, err = e.s.Activate(ctx, id, c)
	require.NoError(t, err)
	_, err = e.s.Activate(ctx, plain, pc)
	require.NoError(t, err)

	// Past the deploy delay, with live gateways that have not loaded it.
	e.clock.Advance(deployDelay)
	e.report(t, id, "gw1", first.Fingerprint)
	e.report(t, id, "gw2", first.Fingerprint)
	p := e.deploy(t)
	assert.Equal(t, 1, p.Done, "only the account without gateways completes by time")
	assert.Equal(t, 1, p.Waiting)
	assert.Equal(t, api.StatusAvailable, e.status(t, plain, pc))
	assert.Equal(t, api.StatusPendingDeployment, e.status(t, id, c), "pending until every live gateway loaded it")

	e.report(t, id, "gw1", first.Fingerprint, cert.Fingerprint)
	p = e.deploy(t)
	assert.Equal(t, 0, p.Done)
	assert.Equal(t, api.StatusPendingDeployment, e.status(t, id, c), "gw2 has not loaded it")

	rev0, err := e.s.Revision(ctx, id)
	require.NoError(t, err)
	e.report(t, id, "gw2", cert.Fingerprint, first.Fingerprint)
	p = e.deploy(t)
	assert.Equal(t, storage.DeployPass{Done: 1}, p)
	assert.Equal(t, api.StatusAvailable, e.status(t, id, c))
	rev1, err := e.s.Revision(ctx, id)
	require.NoError(t, err)
	assert.Greater(t, rev1, rev0, "completing bumps the revision")

	// Loading it early completes it before the deploy delay.
	c2 := inactiveCerts(t, e, id, 1)[0]
	cert2, err := e.s.Get(ctx, id, c2)
	require.NoError(t, err)
	_, err = e.s.Activate(ctx, id, c2)
	require.NoError(t, err)
	e.report(t, id, "gw1", cert2.Fingerprint)
	e.report(t, id, "gw2", cert2.Fingerprint)
	e.deploy(t)
	assert.Equal(t, api.StatusAvailable, e.status(t, id, c2), "every gateway loaded it: no need to wait for the delay")

	// A gateway that stops reporting stops counting; with none live the
	// deploy delay stands in again.
	c3 := inactiveCerts(t, e, id, 1)[0]
	_, err = e.s.Activate(ctx, id, c3)
	require.NoError(t, err)
	e.clock.Advance(e.s.GatewayLive() + time.Second)
	e.deploy(t)
	assert.Equal(t, api.StatusPendingDeployment, e.status(t, id, c3), "not due yet")
	e.clock.Advance(deployDelay)
	e.deploy(t)
	assert.Equal(t, api.StatusAvailable, e.status(t, id, c3))
}

func testGatewayWithdrawal(t *testing.T, e *env) {
	ctx := context.Background()
	id, first := e.account(t)
	c := inactiveCerts(t, e, id, 1)[0]
	e.makeAvailable(t, id, c)
	cert, err := e.s.Get(ctx, id, c)
	require.NoError(t, err)

	e.report(t, id, "gw1", first.Fingerprint, cert.Fingerprint)
	e.report(t, id, "gw2", first.Fingerprint, cert.Fingerprint)
	_, err = e.s.Deactivate(ctx, id, c)
	require.NoError(t, err)
	e.clock.Advance(deployDelay)
	e.report(t, id, "gw1", first.Fingerprint)
	e.report(t, id, "gw2", first.Fingerprint, cert.Fingerprint)
	e.deploy(t)
	assert.Equal(t, api.StatusPendingDeletion, e.status(t, id, c), "gw2 still holds it")
	e.report(t, id, "gw2", first.Fingerprint)
	e.deploy(t)
	assert.Equal(t, api.StatusInactive, e.status(t, id, c))

	// Concurrent deployers complete it exactly once.
	c2 := inactiveCerts(t, e, id, 1)[0]
	cert2, err := e.s.Get(ctx, id, c2)
	require.NoError(t, err)
	_, err = e.s.Activate(ctx, id, c2)
	require.NoError(t, err)
	e.report(t, id, "gw1", cert2.Fingerprint)
	e.report(t, id, "gw2", cert2.Fingerprint)
	rev0, err := e.s.Revision(ctx, id)
	require.NoError(t, err)
	done := make(chan int, 4)
	errs := parallel(4, func(int) error {
		p, err := e.s.Deploy(ctx)
		done <- p.Done
		return err
	})
	total := 0
	for range 4 {
		total += <-done
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			require.NoError(t, err)
		}
	}
	assert.Equal(t, 1, total, "completed by exactly one deployer")
	rev1, err := e.s.Revision(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, rev0+1, rev1)
}
