package agent

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
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

// scriptSource answers List from a script: status 0 serves certs, anything
// else fails with that HTTP status. It records when it was called.
type scriptSource struct {
	mu     sync.Mutex
	status int
	certs  []api.Certificate
	calls  []time.Time
	etags  []string
}

func (s *scriptSource) List(ctx context.Context, etag string) (*api.ListResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, time.Now())
	s.etags = append(s.etags, etag)
	if s.status != 0 {
		return nil, &api.Error{Method: "GET", Path: "/certificates", StatusCode: s.status}
	}
	if etag == "v1" {
		return &api.ListResult{ETag: "v1"}, api.ErrNotModified
	}
	return &api.ListResult{Certificates: append([]api.Certificate{}, s.certs...), ETag: "v1", Date: time.Now()}, nil
}

func (s *scriptSource) set(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = status
}

// offsets returns the call times relative to start.
func (s *scriptSource) offsets(start time.Time) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Duration
	for _, c := range s.calls {
		out = append(out, c.Sub(start))
	}
	return out
}

func newLoopAgent(t *testing.T, src *scriptSource, cfgMod func(*Config)) (*Agent, *trusttest.Fake) {
	t.Helper()
	ca := trusttest.NewCA(t)
	src.certs = []api.Certificate{{ID: "a", BindingStatus: api.StatusAvailable, Certificate: string(ca.PEM()), Fingerprint: ca.FP.String()}}
	store := trusttest.NewFake("one")
	cfg := &Config{
		ControlPlaneURL: "https://plane.invalid/client/v4", AccountID: testAccount, APIToken: "t",
		PollInterval: time.Minute, Stores: []string{"one"}, RemoveRetired: true, StateDir: t.TempDir(), LogLevel: "info",
	}
	if cfgMod != nil {
		cfgMod(cfg)
	}
	a, err := New(cfg, Deps{
		Source:    src,
		OpenStore: func(string) (trust.Store, error) { return store, nil },
		Rand:      func() float64 { return 0.5 }, // no jitter: exact times
	})
	require.NoError(t, err)
	return a, store
}

func runInBubble(t *testing.T, a *Agent) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return func() {
		cancel()
		assert.NoError(t, <-done)
	}
}

func TestRunPollsEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &scriptSource{}
		a, store := newLoopAgent(t, src, nil)
		start := time.Now()
		stop := runInBubble(t, a)
		synctest.Wait()
		time.Sleep(3*time.Minute + time.Second)
		synctest.Wait()
		stop()
		assert.Equal(t, []time.Duration{0, time.Minute, 2 * time.Minute, 3 * time.Minute}, src.offsets(start))
		assert.Equal(t, []string{"", "v1", "v1", "v1"}, src.etags, "If-None-Match after the first answer")
		assert.Equal(t, 1, store.Applies(), "only the first pass changed anything")
		snap, err := LoadSnapshot(a.Config().StatusPath())
		require.NoError(t, err)
		assert.Equal(t, start.Add(3*time.Minute).UTC(), snap.LastPoll, "a clean stop saves fresh times")
	})
}

func TestRunJitterSpreadsPolls(t *testing.T) {
	for _, tc := range []struct {
		rnd  float64
		want time.Duration
	}{{0, 54 * time.Second}, {0.999, 65*time.Second + 988*time.Millisecond}} {
		synctest.Test(t, func(t *testing.T) {
			src := &scriptSource{}
			a, _ := newLoopAgent(t, src, nil)
			a.deps.Rand = func() float64 { return tc.rnd }
			start := time.Now()
			stop := runInBubble(t, a)
			time.Sleep(70 * time.Second)
			synctest.Wait()
			stop()
			got := src.offsets(start)
			require.Len(t, got, 2)
			assert.Equal(t, tc.want, got[1])
		})
	}
}

func TestRunBacksOffOnFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &scriptSource{status: http.StatusInternalServerError}
		a, _ := newLoopAgent(t, src, nil)
		start := time.Now()
		stop := runInBubble(t, a)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		// 5 s doubling with equal jitter at 0.5: 3.75, 7.5, 15 s apart.
		assert.Equal(t, []time.Duration{0, 3750 * time.Millisecond, 11250 * time.Millisecond, 26250 * time.Millisecond}, src.offsets(start))
		assert.Equal(t, 4, a.Snapshot().ConsecutiveFailures)
		// Recovery: the next poll succeeds, then the interval applies.
		src.set(0)
		time.Sleep(30*time.Second + time.Minute)
		synctest.Wait()
		stop()
		got := src.offsets(start)
		require.Len(t, got, 6)
		assert.Equal(t, got[4]+time.Minute, got[5])
		assert.Equal(t, 0, a.Snapshot().ConsecutiveFailures)
	})
}

func TestRunStopsPollingOnAuthFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tokenFile := filepath.Join(t.TempDir(), "token")
		require.NoError(t, os.WriteFile(tokenFile, []byte("old"), 0o600))
		src := &scriptSource{status: http.StatusUnauthorized}
		a, store := newLoopAgent(t, src, func(c *Config) { c.APITokenFile = tokenFile })
		start := time.Now()
		stop := runInBubble(t, a)
		time.Sleep(30 * time.Minute)
		synctest.Wait()
		assert.Len(t, src.offsets(start), 1, "a refused token is not retried every interval")
		assert.True(t, a.Snapshot().AuthBlocked)

		// A drift trigger does not turn into a poll either.
		a.Trigger("drift")
		synctest.Wait()
		assert.Len(t, src.offsets(start), 1)
		assert.Equal(t, 0, store.Applies(), "nothing was ever known, so nothing is installed")

		// A new token file is noticed at the next tick.
		require.NoError(t, os.WriteFile(tokenFile, []byte("a-new-token"), 0o600))
		src.set(0)
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		assert.Len(t, src.offsets(start), 2)
		assert.False(t, a.Snapshot().AuthBlocked)
		assert.Equal(t, 1, store.Applies())
		stop()
	})
}

func TestRunRetriesAuthAfterAnHour(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &scriptSource{status: http.StatusForbidden}
		a, _ := newLoopAgent(t, src, nil)
		start := time.Now()
		stop := runInBubble(t, a)
		time.Sleep(AuthRetry + 2*time.Minute)
		synctest.Wait()
		stop()
		got := src.offsets(start)
		require.Len(t, got, 2)
		assert.GreaterOrEqual(t, got[1], AuthRetry)
	})
}

func TestRunReloadPollsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &scriptSource{status: http.StatusUnauthorized}
		a, _ := newLoopAgent(t, src, nil)
		start := time.Now()
		stop := runInBubble(t, a)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		cfg := *a.Config()
		cfg.APIToken = "fixed"
		src.set(0)
		require.NoError(t, a.Reload(&cfg))
		synctest.Wait()
		stop()
		assert.Equal(t, []time.Duration{0, 10 * time.Second}, src.offsets(start))
		assert.False(t, a.Snapshot().AuthBlocked)
	})
}

func TestTriggerNeverBlocks(t *testing.T) {
	a, _ := newLoopAgent(t, &scriptSource{}, nil)
	for i := 0; i < 100; i++ {
		a.Trigger("burst")
	}
	assert.Len(t, a.trigger, 1, "triggers merge into one pending pass")
}

func TestRunTriggerRunsAPassSoon(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &scriptSource{}
		a, store := newLoopAgent(t, src, nil)
		stop := runInBubble(t, a)
		synctest.Wait()
		require.Equal(t, 1, store.Applies())
		// Someone deletes our root: the watcher triggers, the root returns
		// without waiting for the interval.
		inv, err := store.List(context.Background())
		require.NoError(t, err)
		store.Lose(trust.Target{}, inv.Entries[0].FP)
		a.Trigger("drift")
		synctest.Wait()
		stop()
		assert.Equal(t, 2, store.Applies())
		assert.Len(t, src.calls, 2)
	})
}
