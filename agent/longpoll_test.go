package agent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

// memPlane is an in-memory control plane with strong ETags and, when hold
// is set, certplane's long-poll: ListWait blocks until the list changes or
// the wait passes.
type memPlane struct {
	hold bool

	mu      sync.Mutex
	certs   []api.Certificate
	rev     int
	changed chan struct{} // closed and replaced on every change
	lists   int
	waits   int
}

func newMemPlane(hold bool) *memPlane {
	return &memPlane{hold: hold, rev: 1, changed: make(chan struct{})}
}

func (p *memPlane) add(ca *trusttest.CA) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.certs = append(p.certs, api.Certificate{
		ID: "00000000-0000-4000-8000-" + strconv.Itoa(100000000000+len(p.certs)), BindingStatus: api.StatusAvailable,
		Certificate: string(ca.PEM()), Fingerprint: ca.FP.String(), Type: api.TypeGatewayManaged,
	})
	p.rev++
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *memPlane) etag() string { return `"` + strconv.Itoa(p.rev) + `"` }

func (p *memPlane) List(ctx context.Context, etag string) (*api.ListResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lists++
	if etag != "" && etag == p.etag() {
		return &api.ListResult{ETag: etag}, api.ErrNotModified
	}
	return &api.ListResult{Certificates: append([]api.Certificate{}, p.certs...), ETag: p.etag()}, nil
}

func (p *memPlane) ListWait(ctx context.Context, etag string, wait time.Duration) (*api.ListResult, error) {
	p.mu.Lock()
	p.waits++
	ch, same := p.changed, etag == p.etag()
	p.mu.Unlock()
	if p.hold && same {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return p.List(ctx, etag)
}

// plainSource hides ListWait: a Source that cannot long-poll.
type plainSource struct{ p *memPlane }

func (s plainSource) List(ctx context.Context, etag string) (*api.ListResult, error) {
	return s.p.List(ctx, etag)
}

// newWatchAgent returns an agent on src and store. Inside a synctest bubble
// the clock starts in 2000, before the test CAs' validity; the agent's
// policy clock is shifted to the real time the test started.
func newWatchAgent(t *testing.T, src Source, store trust.Store) *Agent {
	real0 := realStart
	fake0 := time.Now()
	now := func() time.Time { return real0.Add(time.Since(fake0)) }
	cfg := &Config{
		ControlPlaneURL: "http://127.0.0.1:1/client/v4", AccountID: testAccount, APIToken: testToken,
		PollInterval: time.Hour, Stores: []string{"one"}, RemoveRetired: true, StateDir: t.TempDir(), LogLevel: "info",
	}
	a, err := New(cfg, Deps{Source: src, Now: now, OpenStore: func(string) (trust.Store, error) { return store, nil }})
	require.NoError(t, err)
	return a
}

// realStart is the wall clock when the tests began, read outside any bubble.
var realStart = time.Now()

// With a server that holds requests, a root activated long after the last
// poll is installed at once, not an hour (the poll interval) later.
func TestWatchChangesInstallsWithinSecondsOfAChange(t *testing.T) {
	first := trusttest.NewCA(t)
	second := trusttest.NewCA(t)
	synctest.Test(t, func(t *testing.T) {
		p := newMemPlane(true)
		p.add(first)
		store := trusttest.NewFake("one")
		a := newWatchAgent(t, p, store)
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() { _ = a.Run(ctx) })
		watchErr := make(chan error, 1)
		wg.Go(func() { watchErr <- a.WatchChanges(ctx, 25*time.Second) })

		synctest.Wait()
		require.True(t, store.Holds(trust.Target{}, first.FP), "the first pass installs the first root")
		time.Sleep(10 * time.Minute) // fake time: many held requests come and go
		synctest.Wait()
		p.mu.Lock()
		direct := p.lists - p.waits // ListWait counts in lists too
		p.mu.Unlock()
		start := time.Now()
		p.add(second)
		synctest.Wait()
		assert.True(t, store.Holds(trust.Target{}, second.FP), "the second root is installed on the change")
		assert.Less(t, time.Since(start), time.Second)
		p.mu.Lock()
		waits := p.waits
		assert.Equal(t, direct, p.lists-p.waits, "the held request's answer is adopted: no second request for the change")
		p.mu.Unlock()
		// 10 minutes of 25 s holds, not a request storm.
		assert.LessOrEqual(t, waits, 10*60/25+3)
		cancel()
		wg.Wait()
		assert.NoError(t, <-watchErr)
	})
}

// Against a server without the extension the watcher gives up after two
// immediate answers and leaves polling to Run.
func TestWatchChangesFallsBackWithoutServerSupport(t *testing.T) {
	ca := trusttest.NewCA(t)
	synctest.Test(t, func(t *testing.T) {
		p := newMemPlane(false)
		p.add(ca)
		store := trusttest.NewFake("one")
		a := newWatchAgent(t, p, store)
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() { _ = a.Run(ctx) })
		err := a.WatchChanges(ctx, 25*time.Second)
		cancel()
		wg.Wait()
		require.ErrorIs(t, err, ErrNoLongPoll)
		p.mu.Lock()
		defer p.mu.Unlock()
		assert.Equal(t, 2, p.waits)
	})
}

func TestWatchChangesNeedsALongPollingSource(t *testing.T) {
	p := newMemPlane(true)
	a := newWatchAgent(t, plainSource{p}, trusttest.NewFake("one"))
	err := a.WatchChanges(t.Context(), time.Second)
	require.True(t, errors.Is(err, ErrNoLongPoll), "got %v, want ErrNoLongPoll", err)
}

// While the long-poll answers, timer passes do not fetch too: one request
// stream per device. Against a server without it, timer polling goes on.
func TestLiveLongPollReplacesTimerFetches(t *testing.T) {
	ca := trusttest.NewCA(t)
	for _, hold := range []bool{true, false} {
		t.Run(fmt.Sprintf("server holds %v", hold), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newMemPlane(hold)
				p.add(ca)
				a := newWatchAgent(t, p, trusttest.NewFake("one"))
				a.cfg.PollInterval = time.Minute
				ctx, cancel := context.WithCancel(t.Context())
				var wg sync.WaitGroup
				wg.Go(func() { _ = a.Run(ctx) })
				wg.Go(func() { _ = a.WatchChanges(ctx, 25*time.Second) })
				time.Sleep(10 * time.Minute)
				cancel()
				wg.Wait()
				p.mu.Lock()
				defer p.mu.Unlock()
				plain := p.lists - p.waits // List calls that were not held
				if hold {
					assert.LessOrEqual(t, plain, 2, "timer fetches while the long-poll is live")
				} else {
					assert.GreaterOrEqual(t, plain, 9, "timer fetches without server support")
				}
			})
		})
	}
}
