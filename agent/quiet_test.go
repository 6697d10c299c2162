package agent

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/agent/watch"
	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/stores"
	"github.com/certagent/certagent/trust/trusttest"
)

// countingStore counts the reads (Check and List) of the store it wraps.
type countingStore struct {
	trust.Store
	reads atomic.Int64
}

func (c *countingStore) Check(ctx context.Context) error {
	c.reads.Add(1)
	return c.Store.Check(ctx)
}

func (c *countingStore) List(ctx context.Context) (*trust.Inventory, error) {
	c.reads.Add(1)
	return c.Store.List(ctx)
}

func (c *countingStore) Paths() trust.Paths {
	if d, ok := c.Store.(trust.PathDeclarer); ok {
		return d.Paths()
	}
	return trust.Paths{}
}

// fakeWatch is a StoreWatch a test drives: it counts a change only when
// told (a watcher that drops every event unless the test delivers it).
type fakeWatch struct {
	mu         sync.Mutex
	marks      map[string]uint64
	incomplete map[string]bool
}

func newFakeWatch() *fakeWatch {
	return &fakeWatch{marks: map[string]uint64{}, incomplete: map[string]bool{}}
}

func (w *fakeWatch) StoreMark(name string) (uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.marks[name], !w.incomplete[name]
}

// event is the watcher seeing a change in store name.
func (w *fakeWatch) event(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.marks[name]++
}

func (w *fakeWatch) setIncomplete(name string, v bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.incomplete[name] = v
}

// quietRig is a rig whose two fake stores count their reads, with a clock
// the test moves and a fakeWatch.
type quietRig struct {
	*rig
	counted map[string]*countingStore
	clock   atomic.Int64 // offset from the real clock, ns
	watch   *fakeWatch
	ca      *trusttest.CA
}

func newQuietRig(t *testing.T) (*quietRig, *Agent) {
	r := &quietRig{rig: newRig(t), counted: map[string]*countingStore{}, watch: newFakeWatch()}
	r.ca = trusttest.NewCA(t)
	r.plane.add(r.ca, api.StatusActive)
	for _, name := range r.cfg.Stores {
		r.counted[name] = &countingStore{Store: r.stores[name]}
	}
	open := func(spec string) (trust.Store, error) {
		if c, ok := r.counted[spec]; ok {
			return c, nil
		}
		return r.open(spec)
	}
	now := func() time.Time { return time.Now().Add(time.Duration(r.clock.Load())) }
	a, err := New(r.cfg, Deps{OpenStore: open, Now: now, VerifyInterval: 5 * time.Minute})
	require.NoError(t, err)
	a.SetStoreWatch(r.watch)
	return r, a
}

func (r *quietRig) reads() int64 {
	n := int64(0)
	for _, c := range r.counted {
		n += c.reads.Load()
	}
	return n
}

// timerPass runs a pass as Run's timer does.
func (r *quietRig) timerPass(a *Agent) *PassReport {
	r.t.Helper()
	rep, err := a.pass(context.Background(), passOptions{fetch: true, reason: "interval"})
	require.NoError(r.t, err)
	return rep
}

// settle runs timer passes until one reads the stores and finds nothing
// to do: the full read the next quiet passes may stand on.
func (r *quietRig) settle(a *Agent) {
	r.t.Helper()
	r.timerPass(a) // installs
	rep := r.timerPass(a)
	require.False(r.t, rep.Watched)
	require.Zero(r.t, rep.Changes)
}

// TestQuietPassReadsNoStore checks that a timer pass after a full read
// that found nothing to do, with no change seen by the watch, reads no
// store and reports the same per-target results; and that status tells
// when the stores were last read.
func TestQuietPassReadsNoStore(t *testing.T) {
	r, a := newQuietRig(t)
	r.settle(a)
	full := a.Snapshot()
	before := r.reads()
	for range 3 {
		rep := r.timerPass(a)
		require.True(t, rep.Watched, "quiet pass read the stores")
		require.Zero(t, rep.Changes)
	}
	if got := r.reads(); got != before {
		t.Errorf("store reads during quiet passes: got %d, want %d", got-before, 0)
	}
	snap := a.Snapshot()
	require.Equal(t, full.Results, snap.Results)
	require.Equal(t, full.LastVerified, snap.LastVerified, "a watched pass is not a verification")
	require.True(t, snap.LastPass.After(snap.LastVerified) || snap.LastPass.Equal(snap.LastVerified))
	require.Equal(t, full.Passes+3, snap.Passes)
}

// TestQuietPassFallsBackToFullRead checks every input that makes a timer
// pass read the stores again, and that drift made behind the agent's back
// is repaired: by the pass after the watcher's event, and, when the
// watcher lost the event, by the bounded full read.
func TestQuietPassFallsBackToFullRead(t *testing.T) {
	r, a := newQuietRig(t)
	r.settle(a)
	one := r.fake("one")
	fp := r.ca.FP
	readsOf := func(f func() *PassReport) (int64, *PassReport) {
		n := r.reads()
		rep := f()
		return r.reads() - n, rep
	}
	mustRead := func(what string, f func() *PassReport) *PassReport {
		t.Helper()
		n, rep := readsOf(f)
		if n == 0 || rep.Watched {
			t.Fatalf("%s: the pass did not read the stores", what)
		}
		return rep
	}
	mustSkip := func(what string) {
		t.Helper()
		if n, rep := readsOf(func() *PassReport { return r.timerPass(a) }); n != 0 || !rep.Watched {
			t.Fatalf("%s: got %d reads, want a watched pass", what, n)
		}
	}
	mustSkip("settled")

	// Drift with the event delivered: the next pass reads and repairs.
	one.Lose(trust.Target{}, fp)
	r.watch.event("one")
	rep := mustRead("after an event", func() *PassReport { return r.timerPass(a) })
	require.Equal(t, 1, rep.Changes)
	require.True(t, one.Holds(trust.Target{}, fp))
	mustRead("after the repair", func() *PassReport { return r.timerPass(a) })
	mustSkip("repaired and read again")

	// Drift whose event was lost: passes within the interval stand on the
	// last read; the first one after it reads and repairs.
	one.Lose(trust.Target{}, fp)
	mustSkip("lost event, within the interval")
	require.False(t, one.Holds(trust.Target{}, fp))
	r.clock.Add(int64(5 * time.Minute))
	rep = mustRead("verify interval passed", func() *PassReport { return r.timerPass(a) })
	require.Equal(t, 1, rep.Changes)
	require.True(t, one.Holds(trust.Target{}, fp))
	mustRead("after the repair", func() *PassReport { return r.timerPass(a) })
	mustSkip("settled again")

	// The clock going back.
	r.clock.Add(-int64(time.Hour))
	mustRead("clock went back", func() *PassReport { return r.timerPass(a) })
	mustSkip("settled after the clock moved")

	// A store whose paths are not all watched.
	r.watch.setIncomplete("multi", true)
	mustRead("incomplete watch", func() *PassReport { return r.timerPass(a) })
	mustRead("still incomplete", func() *PassReport { return r.timerPass(a) })
	r.watch.setIncomplete("multi", false)
	mustRead("watch complete again, no read on it yet", func() *PassReport { return r.timerPass(a) })
	mustSkip("complete and read")

	// Passes that are not timer passes always read.
	for _, reason := range []string{"drift store:one", "reload", "sync"} {
		mustRead(reason, func() *PassReport {
			rep, err := a.pass(context.Background(), passOptions{fetch: true, reason: reason})
			require.NoError(t, err)
			return rep
		})
	}
	mustSkip("after the other passes")

	// The ledger changed (another certagent process, a purge).
	l := r.ledger()
	for k, e := range l.Entries {
		e.Since = e.Since.Add(-time.Minute)
		l.Entries[k] = e
	}
	require.NoError(t, l.Save(r.cfg.LedgerPath()))
	mustRead("ledger changed", func() *PassReport { return r.timerPass(a) })
	mustSkip("ledger read")

	// A new answer from the control plane.
	ca2 := trusttest.NewCA(t)
	r.plane.add(ca2, api.StatusActive)
	rep = mustRead("new answer", func() *PassReport { return r.timerPass(a) })
	require.Positive(t, rep.Changes)
	mustRead("after installing", func() *PassReport { return r.timerPass(a) })
	mustSkip("new answer settled")

	// A config reload.
	cfg := *r.cfg
	require.NoError(t, a.Reload(&cfg))
	mustRead("new config", func() *PassReport { return r.timerPass(a) })
	mustSkip("new config settled")

	// No watch at all: every pass reads.
	a.SetStoreWatch(nil)
	mustRead("no watch", func() *PassReport { return r.timerPass(a) })
	mustRead("no watch, again", func() *PassReport { return r.timerPass(a) })
}

// TestQuietPassAtValidityBoundary checks that a root whose validity ends
// makes the next timer pass read the stores (and remove it), although no
// store changed.
func TestQuietPassAtValidityBoundary(t *testing.T) {
	r, a := newQuietRig(t)
	short := trusttest.NewCA(t, trusttest.WithValidity(time.Now().Add(-time.Hour), time.Now().Add(time.Minute)))
	r.plane.add(short, api.StatusActive)
	r.settle(a)
	require.True(t, r.fake("one").Holds(trust.Target{}, short.FP))
	rep := r.timerPass(a)
	require.True(t, rep.Watched)

	r.clock.Add(int64(2 * time.Minute))
	rep = r.timerPass(a)
	require.False(t, rep.Watched, "a validity boundary passed")
	require.False(t, r.fake("one").Holds(trust.Target{}, short.FP), "the expired root is still trusted")
}

// TestQuietPassWithRealWatcher drives a dir: store through the real file
// watcher (agent/watch): quiet timer passes read nothing, an anchor file
// deleted behind the agent's back moves the watch and the next pass
// repairs it.
func TestQuietPassWithRealWatcher(t *testing.T) {
	r := newRig(t)
	ca := trusttest.NewCA(t)
	r.plane.add(ca, api.StatusActive)
	anchors := filepath.Join(t.TempDir(), "anchors")
	spec := "dir:" + anchors
	r.cfg.Stores = []string{spec}
	real, err := stores.Open(spec, stores.Env{})
	require.NoError(t, err)
	counted := &countingStore{Store: real}
	a, err := New(r.cfg, Deps{OpenStore: func(string) (trust.Store, error) { return counted, nil }})
	require.NoError(t, err)

	w, err := watch.New(watch.Options{Debounce: 10 * time.Millisecond, OnChange: func(string) {}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	w.Set(spec, a.StoreWatchPaths()[spec])
	a.SetStoreWatch(watchMarks{w})
	for end := time.Now().Add(20 * time.Second); ; {
		if _, ok := w.State(spec); ok {
			break
		}
		require.True(t, time.Now().Before(end), "watch never complete")
		time.Sleep(5 * time.Millisecond)
	}

	pass := func() *PassReport {
		rep, err := a.pass(context.Background(), passOptions{fetch: true, reason: "interval"})
		require.NoError(t, err)
		return rep
	}
	pass() // installs (the write moves the watch)
	eventuallyMoved := func(after uint64) {
		for end := time.Now().Add(20 * time.Second); ; {
			if m, _ := w.State(spec); m > after {
				return
			}
			require.True(t, time.Now().Before(end), "the watch never saw the change")
			time.Sleep(5 * time.Millisecond)
		}
	}
	eventuallyMoved(0)
	require.False(t, pass().Watched)
	n := counted.reads.Load()
	require.True(t, pass().Watched)
	require.True(t, pass().Watched)
	require.Equal(t, n, counted.reads.Load(), "quiet passes read the store")

	file := filepath.Join(anchors, trust.Tag+"-"+ca.FP.Hex()+".pem")
	m, _ := w.State(spec)
	require.NoError(t, os.Remove(file))
	eventuallyMoved(m)
	rep := pass()
	require.False(t, rep.Watched)
	require.Equal(t, 1, rep.Changes)
	_, err = os.Stat(file)
	require.NoError(t, err, "the deleted anchor was not put back")
}

// watchMarks is the daemon's adapter, with the store's name as the group.
type watchMarks struct{ w *watch.Watcher }

func (m watchMarks) StoreMark(name string) (uint64, bool) { return m.w.State(name) }

// TestPEMParsesReuse checks that an evaluation reuses the previous one's
// parse of a certificate it repeats, forgets the ones its answer no longer
// lists, and gives the same result as a fresh Evaluate.
func TestPEMParsesReuse(t *testing.T) {
	a, b := trusttest.NewCA(t), trusttest.NewCA(t)
	cert := func(ca *trusttest.CA, id string) api.Certificate {
		return api.Certificate{ID: id, BindingStatus: api.StatusActive, Certificate: string(ca.PEM()), Fingerprint: ca.FP.String()}
	}
	policy := trust.Policy{Now: time.Now}
	var p pemParses
	ev1, err := evaluate([]api.Certificate{cert(a, "a")}, policy, nil, &p)
	require.NoError(t, err)
	first := p.prev[string(a.PEM())].cert
	require.NotNil(t, first)

	ev2, err := evaluate([]api.Certificate{cert(a, "a"), cert(b, "b")}, policy, nil, &p)
	require.NoError(t, err)
	if got := p.prev[string(a.PEM())].cert; got != first {
		t.Errorf("a's certificate parsed again: got %p, want %p", got, first)
	}
	require.Empty(t, first.ID, "the cached parse was modified")
	fresh, err := Evaluate([]api.Certificate{cert(a, "a"), cert(b, "b")}, policy, nil)
	require.NoError(t, err)
	require.Equal(t, fresh.Infos, ev2.Infos)
	require.Len(t, ev1.Desired, 1)

	_, err = evaluate([]api.Certificate{cert(b, "b")}, policy, nil, &p)
	require.NoError(t, err)
	if _, ok := p.prev[string(a.PEM())]; ok {
		t.Errorf("a's parse kept after an answer without it")
	}

	// A PEM that does not parse is refused the same way from the cache.
	bad := api.Certificate{ID: "x", BindingStatus: api.StatusActive, Certificate: string(a.PEM()[:40])}
	for range 2 {
		_, err := evaluate([]api.Certificate{bad}, policy, nil, &p)
		require.ErrorIs(t, err, ErrIntegrity)
	}
}
