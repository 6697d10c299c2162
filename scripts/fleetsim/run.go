package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust"
)

type runOptions struct {
	Agents      int
	DB          string // sqlite | postgres
	LongPoll    bool
	Poll        time.Duration
	DeployDelay time.Duration
	Window      time.Duration // steady-state measurement
	Timeout     time.Duration // whole run
	Certplane   string
	WorkDir     string
	PGDSN       string
	// CPUProfile, if set, is where the simulated fleet's own CPU profile
	// of the convergence phase goes (what the agents spend, not certplane).
	CPUProfile string
	// Thin devices run no agent: each only long-polls (or polls) the list
	// and notes when the watched root is available in an answer. What is
	// left of a convergence is the control plane's delivery; see thinDevice.
	Thin bool
}

// runResult is one simulation's numbers; JSON in the results directory.
type runResult struct {
	Name         string    `json:"name"`
	Started      time.Time `json:"started"`
	DB           string    `json:"db"`
	Agents       int       `json:"agents"`
	LongPoll     bool      `json:"long_poll"`
	Thin         bool      `json:"thin,omitempty"`
	PollSeconds  float64   `json:"poll_interval_s"`
	DeploySecs   float64   `json:"deploy_delay_s"`
	LoadAvgStart string    `json:"loadavg_start"`
	LoadAvgEnd   string    `json:"loadavg_end"`

	Steady      phase       `json:"steady"`
	Convergence convergence `json:"convergence"`
}

type phase struct {
	Seconds      float64 `json:"seconds"`
	Requests     int64   `json:"requests"`
	RPS          float64 `json:"requests_per_s"`
	Held         int64   `json:"held_requests"`
	HeldNow      int64   `json:"held_at_end"`
	OK           int64   `json:"status_200"`
	NotModified  int64   `json:"status_304"`
	Failed       int64   `json:"failed"`
	P50ms        float64 `json:"p50_ms"`
	P99ms        float64 `json:"p99_ms"`
	BytesPerReq  float64 `json:"wire_bytes_per_request"`
	ServerCPU    float64 `json:"server_cpu_percent"`
	ServerRSSMiB float64 `json:"server_rss_mib"`
	ServerPeak   float64 `json:"server_peak_rss_mib"`
	ServerFDs    int     `json:"server_fds"`
}

type convergence struct {
	Converged int `json:"converged"`
	// FleetCPU and ServerCPU are CPU seconds (user+system) spent during
	// the convergence by the simulated fleet's process and by certplane:
	// on 2 shared cores their sum bounds how fast 10,000 agents can go.
	FleetCPU  float64   `json:"fleet_cpu_s"`
	ServerCPU float64   `json:"server_cpu_s"`
	P50s      float64   `json:"p50_s"`
	P99s      float64   `json:"p99_s"`
	MaxS      float64   `json:"max_s"`
	Times     []float64 `json:"times_s"` // sorted, seconds after activate
	Phase     phase     `json:"phase"`
}

func (o runOptions) name() string {
	mode := "poll"
	if o.LongPoll {
		mode = "longpoll"
	}
	if o.Thin {
		mode += "-thin"
	}
	return fmt.Sprintf("%s-%d-%s", o.DB, o.Agents, mode)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// simulate runs one fleet against a fresh certplane and returns its
// numbers. Everything it starts stops before it returns, and it gives up
// after o.Timeout.
func simulate(parent context.Context, o runOptions, logf func(string, ...any)) (*runResult, error) {
	ctx, cancel := context.WithTimeout(parent, o.Timeout)
	defer cancel()
	res := &runResult{Name: o.name(), Started: time.Now().UTC(), DB: o.DB, Agents: o.Agents, LongPoll: o.LongPoll, Thin: o.Thin,
		PollSeconds: o.Poll.Seconds(), DeploySecs: o.DeployDelay.Seconds(), LoadAvgStart: loadavg()}

	pl, err := startPlane(ctx, o.WorkDir, o.name(), o.DB, o.PGDSN, o.Certplane, o.DeployDelay)
	if err != nil {
		return nil, err
	}
	defer pl.Close()
	srv, acct, readTok := pl.server, pl.Account, pl.ReadToken
	writeTok, err := srv.cli(ctx, "token", "create", "--account", acct, "--scope", "write")
	if err != nil {
		return nil, err
	}
	admin, err := api.NewClient(srv.URL, acct, writeTok, api.WithHTTPClient(&http.Client{Timeout: time.Minute}))
	if err != nil {
		return nil, err
	}
	certs, err := admin.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("fleetsim: list: %w", err)
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("fleetsim: new account has %d certificates, want 1", len(certs))
	}
	boot, err := trust.ParseFingerprint(certs[0].Fingerprint)
	if err != nil {
		return nil, fmt.Errorf("fleetsim: bootstrap fingerprint: %w", err)
	}
	next, err := admin.Generate(ctx, 0)
	if err != nil {
		return nil, fmt.Errorf("fleetsim: generate: %w", err)
	}
	nextFP, err := trust.ParseFingerprint(next.Fingerprint)
	if err != nil {
		return nil, fmt.Errorf("fleetsim: new root fingerprint: %w", err)
	}

	f := newFleet(o.Agents)
	f.watch[0].Store(&boot)
	f.watch[1].Store(&nextFP)
	agentsCtx, stopAgents := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopAgents(); wg.Wait() }()
	stateRoot := filepath.Join(pl.Work, "agents")
	logf("%s: starting %d agents over %s", o.name(), o.Agents, o.Poll)
	if err := f.start(agentsCtx, fleetConfig{URL: srv.URL, Account: acct, Token: readTok, Poll: o.Poll,
		LongPoll: o.LongPoll, Thin: o.Thin, StateRoot: stateRoot}, &wg); err != nil {
		return nil, err
	}
	select {
	case <-f.all[0]:
	case <-ctx.Done():
		return nil, fmt.Errorf("fleetsim: only %d of %d agents installed the first root before the deadline", f.count(0), o.Agents)
	}
	logf("%s: all %d agents hold the first root; measuring %s of steady state", o.name(), o.Agents, o.Window)

	// Steady state: a fleet that is up to date, polling.
	p0, err := sampleProc(srv.Pid())
	if err != nil {
		return nil, err
	}
	c0 := f.m.snapshot()
	f.m.startRecording()
	select {
	case <-time.After(o.Window):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	lat := f.m.stopRecording()
	c1 := f.m.snapshot()
	p1, err := sampleProc(srv.Pid())
	if err != nil {
		return nil, err
	}
	res.Steady = makePhase(c1.sub(c0), p0, p1, lat)
	res.Steady.HeldNow = f.m.inflight.Load()

	// Activation: the admin activates; convergence ends when every agent's
	// store holds the new root.
	logf("%s: activating; waiting for %d agents", o.name(), o.Agents)
	c0, p0 = f.m.snapshot(), p1
	f.m.startRecording()
	fleet0, _ := sampleProc(os.Getpid())
	if o.CPUProfile != "" {
		pf, err := os.Create(o.CPUProfile)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			pf.Close()
			return nil, err
		}
		defer func() { pprof.StopCPUProfile(); pf.Close() }()
	}
	t0 := time.Now()
	if _, err := admin.Activate(ctx, next.ID); err != nil {
		return nil, fmt.Errorf("fleetsim: activate: %w", err)
	}
	var convErr error
	select {
	case <-f.all[1]:
	case <-ctx.Done():
		convErr = fmt.Errorf("fleetsim: only %d of %d agents converged before the deadline", f.count(1), o.Agents)
	}
	lat = f.m.stopRecording()
	fleet1, _ := sampleProc(os.Getpid())
	if o.CPUProfile != "" {
		pprof.StopCPUProfile()
	}
	c1 = f.m.snapshot()
	p1, err = sampleProc(srv.Pid())
	if err != nil {
		return nil, err
	}
	times := f.installTimes(1)
	res.Convergence.Converged = len(times)
	res.Convergence.Times = make([]float64, len(times))
	for i, t := range times {
		// Milliseconds are plenty and keep 10,000 agents' JSON small.
		res.Convergence.Times[i] = math.Round(t.Sub(t0).Seconds()*1000) / 1000
	}
	if n := len(times); n > 0 {
		res.Convergence.P50s = quantileF(res.Convergence.Times, 0.50)
		res.Convergence.P99s = quantileF(res.Convergence.Times, 0.99)
		res.Convergence.MaxS = res.Convergence.Times[n-1]
	}
	res.Convergence.Phase = makePhase(c1.sub(c0), p0, p1, lat)
	res.Convergence.FleetCPU = (fleet1.CPU - fleet0.CPU).Seconds()
	res.Convergence.ServerCPU = (p1.CPU - p0.CPU).Seconds()
	res.LoadAvgEnd = loadavg()
	logf("%s: converged %d/%d, p50 %.2fs p99 %.2fs max %.2fs", o.name(), res.Convergence.Converged, o.Agents,
		res.Convergence.P50s, res.Convergence.P99s, res.Convergence.MaxS)
	if convErr != nil {
		return res, convErr
	}
	if out := srv.output(); strings.Contains(out, "panic") {
		return res, errors.New("fleetsim: the server panicked: " + out)
	}
	return res, nil
}

func makePhase(c counters, p0, p1 procSample, lat []time.Duration) phase {
	secs := p1.At.Sub(p0.At).Seconds()
	ph := phase{
		Seconds: secs, Requests: c.Requests, Held: c.Held, OK: c.OK, NotModified: c.NotMod, Failed: c.Failed,
		ServerRSSMiB: float64(p1.RSS) / (1 << 20), ServerPeak: float64(p1.PeakRSS) / (1 << 20), ServerFDs: p1.FDs,
	}
	if secs > 0 {
		ph.RPS = float64(c.Requests) / secs
		ph.ServerCPU = 100 * (p1.CPU - p0.CPU).Seconds() / secs
	}
	if c.Requests > 0 {
		ph.BytesPerReq = float64(c.WireIn+c.WireOut) / float64(c.Requests)
	}
	if len(lat) > 0 {
		ph.P50ms = ms(quantileD(lat, 0.50))
		ph.P99ms = ms(quantileD(lat, 0.99))
	}
	return ph
}
