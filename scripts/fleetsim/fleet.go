package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

// metrics counts what the simulated fleet sends and receives. Every agent
// has its own transport (its own connection, as a real device would), all
// reporting here.
type metrics struct {
	requests atomic.Int64
	held     atomic.Int64 // requests that asked to be held (?wait=)
	inflight atomic.Int64 // held requests waiting right now
	ok       atomic.Int64 // 200
	notMod   atomic.Int64 // 304
	failed   atomic.Int64 // transport errors and other statuses
	wireIn   atomic.Int64 // bytes read from the server's sockets
	wireOut  atomic.Int64 // bytes written to them

	recording atomic.Bool
	mu        sync.Mutex
	// latencies of requests that were not held, while recording; guarded by mu.
	latencies []time.Duration
}

type counters struct {
	At                                 time.Time
	Requests, Held, OK, NotMod, Failed int64
	WireIn, WireOut                    int64
}

func (m *metrics) snapshot() counters {
	return counters{
		At: time.Now(), Requests: m.requests.Load(), Held: m.held.Load(), OK: m.ok.Load(), NotMod: m.notMod.Load(),
		Failed: m.failed.Load(), WireIn: m.wireIn.Load(), WireOut: m.wireOut.Load(),
	}
}

func (c counters) sub(o counters) counters {
	return counters{At: c.At, Requests: c.Requests - o.Requests, Held: c.Held - o.Held, OK: c.OK - o.OK,
		NotMod: c.NotMod - o.NotMod, Failed: c.Failed - o.Failed, WireIn: c.WireIn - o.WireIn, WireOut: c.WireOut - o.WireOut}
}

// startRecording clears and starts collecting latencies.
func (m *metrics) startRecording() {
	m.mu.Lock()
	m.latencies = m.latencies[:0]
	m.mu.Unlock()
	m.recording.Store(true)
}

// stopRecording returns the latencies collected since startRecording.
func (m *metrics) stopRecording() []time.Duration {
	m.recording.Store(false)
	m.mu.Lock()
	defer m.mu.Unlock()
	out := append([]time.Duration(nil), m.latencies...)
	return out
}

// countingConn counts the bytes on one socket.
type countingConn struct {
	net.Conn
	m *metrics
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.m.wireIn.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.m.wireOut.Add(int64(n))
	return n, err
}

// instrumented is a RoundTripper that counts requests and, for requests
// that were not held, measures the time until the body is read and closed.
type instrumented struct {
	next http.RoundTripper
	m    *metrics
}

func (t *instrumented) RoundTrip(req *http.Request) (*http.Response, error) {
	m := t.m
	m.requests.Add(1)
	held := req.URL.Query().Get("wait") != ""
	if held {
		m.held.Add(1)
		m.inflight.Add(1)
	}
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	if held {
		m.inflight.Add(-1)
	}
	if err != nil {
		m.failed.Add(1)
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		m.ok.Add(1)
	case http.StatusNotModified:
		m.notMod.Add(1)
	default:
		m.failed.Add(1)
	}
	if !held && m.recording.Load() {
		resp.Body = &timedBody{ReadCloser: resp.Body, start: start, m: m}
	}
	return resp, nil
}

type timedBody struct {
	io.ReadCloser
	start time.Time
	m     *metrics
	once  sync.Once
}

func (b *timedBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() {
		d := time.Since(b.start)
		b.m.mu.Lock()
		b.m.latencies = append(b.m.latencies, d)
		b.m.mu.Unlock()
	})
	return err
}

// recStore is an in-memory trust store (trusttest.Fake) that notes when a
// watched root was first installed, so convergence is measured from the
// store's point of view: the moment the device trusts the root.
type recStore struct {
	*trusttest.Fake
	fleet *fleet
	// got holds, per watched fingerprint index, whether it was seen.
	got [2]atomic.Bool
}

func (s *recStore) Apply(ctx context.Context, changes []trust.Change) []trust.Result {
	res := s.Fake.Apply(ctx, changes)
	now := time.Now()
	for _, r := range res {
		if r.Status != trust.StatusOK || r.Change.Op != trust.OpInstall {
			continue
		}
		for i := range s.got {
			if fp := s.fleet.watch[i].Load(); fp != nil && *fp == r.Change.FP && !s.got[i].Swap(true) {
				s.fleet.installed(i, now)
			}
		}
	}
	return res
}

// fleet is N real agents (agent.Agent: source, planner, ledger, apply) on
// in-memory stores.
type fleet struct {
	m     metrics
	n     int
	watch [2]atomic.Pointer[trust.Fingerprint]

	mu sync.Mutex
	// times[i] are install times of watched root i; guarded by mu.
	times [2][]time.Time
	// all[i] is closed when every agent installed watched root i.
	all [2]chan struct{}
}

func newFleet(n int) *fleet {
	f := &fleet{n: n}
	for i := range f.all {
		f.all[i] = make(chan struct{})
		f.times[i] = make([]time.Time, 0, n)
	}
	return f
}

func (f *fleet) installed(i int, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.times[i] = append(f.times[i], at)
	if len(f.times[i]) == f.n {
		close(f.all[i])
	}
}

func (f *fleet) count(i int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.times[i])
}

// installTimes returns the install times of watched root i, sorted.
func (f *fleet) installTimes(i int) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := append([]time.Time(nil), f.times[i]...)
	sort.Slice(out, func(a, b int) bool { return out[a].Before(out[b]) })
	return out
}

type fleetConfig struct {
	URL, Account, Token string
	Poll                time.Duration
	LongPoll            bool
	Thin                bool
	StateRoot           string
}

// start launches the agents, spread evenly over one poll interval as the
// devices of a real fleet are (they did not all boot at the same second).
// Each runs until ctx ends; wg tracks them.
func (f *fleet) start(ctx context.Context, fc fleetConfig, wg *sync.WaitGroup) error {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: c, m: &f.m}, nil
	}
	for i := range f.n {
		// Its own connection, as a real device has.
		tr := &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 2, IdleConnTimeout: 2 * fc.Poll, ForceAttemptHTTP2: false}
		hc := &http.Client{Transport: &instrumented{next: tr, m: &f.m}, Timeout: 30 * time.Second}
		cl, err := api.NewClient(fc.URL, fc.Account, fc.Token, api.WithHTTPClient(hc), api.WithUserAgent("fleetsim"))
		if err != nil {
			return err
		}
		var run func(context.Context)
		if fc.Thin {
			d := &thinDevice{f: f, cl: cl}
			run = func(ctx context.Context) { d.run(ctx, fc.Poll, fc.LongPoll) }
		} else if run, err = f.newAgent(fc, i, cl); err != nil {
			return err
		}
		delay := time.Duration(int64(fc.Poll) * int64(i) / int64(f.n))
		wg.Go(func() {
			defer tr.CloseIdleConnections()
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			run(ctx)
		})
	}
	return nil
}

// newAgent makes device i's agent (its own state directory, an in-memory
// store) and returns what runs it: its passes, and its long-poll when the
// fleet long-polls.
func (f *fleet) newAgent(fc fleetConfig, i int, cl *api.Client) (func(context.Context), error) {
	dir := filepath.Join(fc.StateRoot, fmt.Sprintf("agent-%05d", i))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("fleetsim: state dir: %w", err)
	}
	cfg := &agent.Config{
		ControlPlaneURL: fc.URL, AccountID: fc.Account, APIToken: fc.Token, PollInterval: fc.Poll,
		Stores: []string{"sim"}, RemoveRetired: true, StateDir: dir, LogLevel: "error",
	}
	store := &recStore{Fake: trusttest.NewFake("sim"), fleet: f}
	a, err := agent.New(cfg, agent.Deps{
		Logger:    hclog.NewNullLogger(),
		Source:    agent.ClientSource{Client: cl},
		OpenStore: func(string) (trust.Store, error) { return store, nil },
	})
	if err != nil {
		return nil, fmt.Errorf("fleetsim: agent %d: %w", i, err)
	}
	return func(ctx context.Context) {
		var inner sync.WaitGroup
		inner.Go(func() { _ = a.Run(ctx) })
		if fc.LongPoll {
			inner.Go(func() { _ = a.WatchChanges(ctx, agent.LongPollWait) })
		}
		inner.Wait()
	}, nil
}

// thinDevice is a device without an agent: the list requests a real agent
// makes (a long-poll held with its ETag, or a poll each interval, through
// the same api.Client), and the moment an answer shows a watched root
// available, which is when an agent would start installing it. With no
// agent passes competing for the cores, a convergence measures the control
// plane's delivery alone; an agent's pass on its own machine comes on top.
type thinDevice struct {
	f    *fleet
	cl   *api.Client
	seen [2]bool
}

// note records the watched roots an answer shows available.
func (d *thinDevice) note(certs []api.Certificate) {
	now := time.Now()
	for _, c := range certs {
		if c.BindingStatus != api.StatusAvailable {
			continue
		}
		fp, err := trust.ParseFingerprint(c.Fingerprint)
		if err != nil {
			continue
		}
		for i := range d.seen {
			if w := d.f.watch[i].Load(); w != nil && *w == fp && !d.seen[i] {
				d.seen[i] = true
				d.f.installed(i, now)
			}
		}
	}
}

// run asks as an agent does until ctx ends: with longPoll, holds a
// long-poll with the last ETag and asks again as soon as it is answered;
// otherwise (and after a failure) one request per poll interval.
func (d *thinDevice) run(ctx context.Context, poll time.Duration, longPoll bool) {
	etag := ""
	for ctx.Err() == nil {
		wait := time.Duration(0)
		if longPoll && etag != "" {
			wait = agent.LongPollWait
		}
		res, err := d.cl.ListIfChanged(ctx, etag, wait)
		switch {
		case err == nil:
			etag = res.ETag
			d.note(res.Certificates)
		case errors.Is(err, api.ErrNotModified):
		default:
			etag = ""
		}
		if longPoll && etag != "" {
			continue
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
