package main

// fleetsim checkin: the cost of device check-ins (DESIGN.md §8) at fleet
// scale, next to the plain list request from the same server and run, and
// how many check-ins a real agent sends per day when nothing changes.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

type checkinOptions struct {
	Agents      int
	Concurrency int
	DB          string
	Certplane   string
	WorkDir     string
	PGDSN       string
	// SimAgents real agents run SimDays simulated days, a pass every
	// SimStep, to count their check-ins per day.
	SimAgents int
	SimDays   int
	SimStep   time.Duration
}

// phaseCPU is one batch of requests: server CPU per request and latency.
type phaseCPU struct {
	Requests   int     `json:"requests"`
	Errors     int     `json:"errors"`
	WallS      float64 `json:"wall_s"`
	ReqPerSec  float64 `json:"req_per_s"`
	CPUPerReq  float64 `json:"server_cpu_us_per_req"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	ServerRSS  float64 `json:"server_rss_mib"`
	FirstError string  `json:"first_error,omitempty"`
}

type checkinResult struct {
	DB      string    `json:"db"`
	Agents  int       `json:"agents"`
	Started time.Time `json:"started"`
	Loadavg string    `json:"loadavg"`
	// Register is every device's first check-in; CheckIn a later one
	// (with its secret, a changed report).
	Register phaseCPU `json:"register"`
	CheckIn  phaseCPU `json:"check_in"`
	// List200 and List304 are the plain list request (full answer, and
	// If-None-Match), the same number of times, same server, same run.
	List200 phaseCPU `json:"list_200"`
	List304 phaseCPU `json:"list_304"`
	// Readiness is GET …/readiness over the registered devices.
	Readiness phaseCPU `json:"readiness"`
	// Steady state: real agents, simulated days, nothing changing.
	SimAgents              int     `json:"sim_agents"`
	SimDays                int     `json:"sim_days"`
	SimPasses              int     `json:"sim_passes_per_agent"`
	CheckInsFirstDay       float64 `json:"check_ins_per_agent_first_day"`
	CheckInsPerAgentPerDay float64 `json:"check_ins_per_agent_per_day"`
	// AfterChange is the check-ins per agent on a day a root is added.
	AfterChange float64 `json:"check_ins_per_agent_on_a_change_day"`
}

// runPhase runs fn(i) for i in [0, n) on conc workers and measures the
// server process (pid) around it.
func runPhase(ctx context.Context, n, conc, pid int, fn func(ctx context.Context, i int) error) phaseCPU {
	var next atomic.Int64
	lat := make([]time.Duration, n)
	var errs atomic.Int64
	var firstErr atomic.Value
	p0, _ := sampleProc(pid)
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				t := time.Now()
				if err := fn(ctx, i); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				lat[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	p1, _ := sampleProc(pid)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ph := phaseCPU{
		Requests: n, Errors: int(errs.Load()), WallS: wall.Seconds(), ReqPerSec: float64(n) / wall.Seconds(),
		CPUPerReq: float64((p1.CPU - p0.CPU).Microseconds()) / float64(n),
		P50ms:     float64(lat[n/2]) / 1e6, P99ms: float64(lat[min(n-1, n*99/100)]) / 1e6,
		ServerRSS: float64(p1.RSS) / (1 << 20),
	}
	if v, ok := firstErr.Load().(string); ok {
		ph.FirstError = v
	}
	return ph
}

// checkinReport is what a device with three stores reports for the
// account's roots.
func checkinReport(i int, fps []string, users int) api.CheckIn {
	in := api.CheckIn{Hostname: fmt.Sprintf("laptop-%05d", i), OS: "linux", OSVersion: "Debian GNU/Linux 13 (trixie)",
		AgentVersion: "1.4.0", SyncedAt: api.Time{Time: time.Now()}}
	for _, fp := range fps {
		r := api.RootState{Fingerprint: fp, Stores: []api.StoreState{{Store: "system", State: api.StateTrusted}}}
		for u := range users {
			r.Stores = append(r.Stores, api.StoreState{Store: "nss", User: fmt.Sprintf("user%d", u), State: api.StateTrusted})
		}
		in.Roots = append(in.Roots, r)
	}
	return in
}

func checkinBench(ctx context.Context, o checkinOptions, logf func(string, ...any)) (*checkinResult, error) {
	p, err := startPlane(ctx, o.WorkDir, "checkin", o.DB, o.PGDSN, o.Certplane, time.Second)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	res := &checkinResult{DB: o.DB, Agents: o.Agents, Started: time.Now().UTC(), Loadavg: loadavg()}
	devTok, err := p.cli(ctx, "token", "create", "--account", p.Account, "--scope", "device")
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: o.Concurrency, MaxIdleConns: o.Concurrency}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	dev, err := api.NewClient(p.URL, p.Account, devTok, api.WithHTTPClient(hc))
	if err != nil {
		return nil, err
	}
	read, err := api.NewClient(p.URL, p.Account, p.ReadToken, api.WithHTTPClient(hc))
	if err != nil {
		return nil, err
	}
	certs, err := read.List(ctx)
	if err != nil {
		return nil, err
	}
	var fps []string
	for _, c := range certs {
		fps = append(fps, c.Fingerprint)
	}

	ids := make([]string, o.Agents)
	secrets := make([]string, o.Agents)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	logf("checkin: %d first check-ins", o.Agents)
	res.Register = runPhase(ctx, o.Agents, o.Concurrency, p.Pid(), func(ctx context.Context, i int) error {
		r, err := dev.CheckIn(ctx, ids[i], "", checkinReport(i, fps, 2))
		if err != nil {
			return err
		}
		secrets[i] = r.DeviceSecret
		return nil
	})
	logf("checkin: %d check-ins with the secret", o.Agents)
	res.CheckIn = runPhase(ctx, o.Agents, o.Concurrency, p.Pid(), func(ctx context.Context, i int) error {
		_, err := dev.CheckIn(ctx, ids[i], secrets[i], checkinReport(i, fps, 3))
		return err
	})
	logf("checkin: baselines, %d list requests each", o.Agents)
	res.List200 = runPhase(ctx, o.Agents, o.Concurrency, p.Pid(), func(ctx context.Context, i int) error {
		_, err := dev.ListIfChanged(ctx, "", 0)
		return err
	})
	res.List304 = runPhase(ctx, o.Agents, o.Concurrency, p.Pid(), func(ctx context.Context, i int) error {
		_, err := dev.ListIfChanged(ctx, p.ETag, 0)
		if errors.Is(err, api.ErrNotModified) {
			return nil
		}
		if err == nil {
			return errors.New("want 304")
		}
		return err
	})
	n := max(20, min(200, o.Agents/10))
	res.Readiness = runPhase(ctx, n, 4, p.Pid(), func(ctx context.Context, i int) error {
		rd, err := read.Readiness(ctx, certs[0].ID)
		if err == nil && rd.ActiveDevices != o.Agents {
			return fmt.Errorf("readiness counts %d active devices, want %d", rd.ActiveDevices, o.Agents)
		}
		return err
	})

	if o.SimAgents > 0 {
		// A token of their own: the phases above registered as many devices
		// as one token may at once (controlplane.RegistrationBurst).
		simTok, err := p.cli(ctx, "token", "create", "--account", p.Account, "--scope", "device")
		if err != nil {
			return res, err
		}
		if err := simulateCheckInDays(ctx, o, p, simTok, res, logf); err != nil {
			return res, err
		}
	}
	return res, nil
}

// simClock is a clock the agents share; the sim moves it.
type simClock struct{ ns atomic.Int64 }

func (c *simClock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// countingPUT counts check-ins (PUT requests) per agent.
type countingPUT struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (c countingPUT) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/certplane/devices/") {
		c.n.Add(1)
	}
	return c.next.RoundTrip(r)
}

// simulateCheckInDays runs real agents over simulated days and counts
// their check-ins: the first day (registration), the quiet days after,
// and a day on which a new root becomes available.
func simulateCheckInDays(ctx context.Context, o checkinOptions, p *plane, devTok string, res *checkinResult, logf func(string, ...any)) error {
	clock := &simClock{}
	clock.ns.Store(time.Now().UnixNano())
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	counts := make([]atomic.Int64, o.SimAgents)
	agents := make([]*agent.Agent, o.SimAgents)
	for i := range agents {
		dir := filepath.Join(p.Work, fmt.Sprintf("sim-%04d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		hc := &http.Client{Transport: countingPUT{next: tr, n: &counts[i]}, Timeout: 30 * time.Second}
		cl, err := api.NewClient(p.URL, p.Account, devTok, api.WithHTTPClient(hc))
		if err != nil {
			return err
		}
		store := trusttest.NewFake("sim")
		cfg := &agent.Config{ControlPlaneURL: p.URL, AccountID: p.Account, APIToken: devTok, PollInterval: o.SimStep,
			Stores: []string{"sim"}, RemoveRetired: true, StateDir: dir, LogLevel: "error"}
		name := fmt.Sprintf("sim-%04d", i)
		agents[i], err = agent.New(cfg, agent.Deps{
			Logger: hclog.NewNullLogger(), Source: agent.ClientSource{Client: cl}, Now: clock.Now,
			OpenStore: func(string) (trust.Store, error) { return store, nil },
			Hostname:  func() (string, error) { return name, nil },
		})
		if err != nil {
			return err
		}
	}
	total := func() int64 {
		var n int64
		for i := range counts {
			n += counts[i].Load()
		}
		return n
	}
	passesPerDay := int(24 * time.Hour / o.SimStep)
	day := func() error {
		for range passesPerDay {
			clock.ns.Add(int64(o.SimStep))
			var wg sync.WaitGroup
			sem := make(chan struct{}, 16)
			var firstErr atomic.Value
			for _, a := range agents {
				sem <- struct{}{}
				wg.Go(func() {
					defer func() { <-sem }()
					if _, err := a.SyncOnce(ctx, false); err != nil {
						firstErr.CompareAndSwap(nil, err)
					}
					a.WaitCheckIn()
				})
			}
			wg.Wait()
			if err, ok := firstErr.Load().(error); ok {
				return err
			}
			res.SimPasses++
		}
		return nil
	}
	logf("checkin: %d real agents, %d simulated days, a pass every %s", o.SimAgents, o.SimDays, o.SimStep)
	if err := day(); err != nil {
		return err
	}
	res.CheckInsFirstDay = float64(total()) / float64(o.SimAgents)
	before := total()
	quiet := max(1, o.SimDays-1)
	for d := range quiet {
		if err := day(); err != nil {
			return err
		}
		logf("checkin: simulated day %d done", d+2)
	}
	res.CheckInsPerAgentPerDay = float64(total()-before) / float64(o.SimAgents) / float64(quiet)
	res.SimAgents, res.SimDays = o.SimAgents, quiet+1

	// A change day: a new root is generated and activated.
	id, err := p.cli(ctx, "cert", "generate", "--account", p.Account)
	if err != nil {
		return err
	}
	if _, err := p.cli(ctx, "cert", "activate", "--account", p.Account, "--id", id); err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // the server's deploy delay (1s) in real time
	before = total()
	if err := day(); err != nil {
		return err
	}
	res.AfterChange = float64(total()-before) / float64(o.SimAgents)
	return nil
}
