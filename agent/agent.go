package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/internal/atomicfile"
	"github.com/certagent/certagent/internal/buildinfo"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/stores"
)

// Deps are the agent's collaborators; every zero field has a real default.
type Deps struct {
	// Logger is the root logger; nil means a null logger.
	Logger hclog.Logger
	// Source overrides the control-plane client built from the config
	// (tests). It is kept across Reload.
	Source Source
	// OpenStore opens a store by its config name; nil means stores.Open.
	OpenStore func(spec string) (trust.Store, error)
	// Runner runs store tools (passed to stores.Open); nil means the
	// platform's ExecRunner.
	Runner platform.Runner
	// Now is the clock for policy checks and ledger stamps; nil means
	// time.Now. The poll loop's timers use package time, so tests drive it
	// with testing/synctest.
	Now func() time.Time
	// Rand returns a uniform float in [0,1) for jitter; nil means math/rand.
	Rand func() float64
	// Hostname names the device in check-ins; nil means os.Hostname.
	Hostname func() (string, error)
	// VerifyInterval bounds how long timer passes may skip reading stores
	// a StoreWatch saw unchanged; zero means DefaultVerifyInterval.
	VerifyInterval time.Duration
	// ReleaseMemory returns the memory a pass allocated heavily (an
	// install, a re-parsed store) to the OS once the pass ends (memory.go).
	// For a process that runs one agent (the daemon); a process of many
	// (the fleet simulation) leaves it off.
	ReleaseMemory bool

	// hook, when set, is called between the steps of a pass ("lock",
	// "intent", "apply:STORE", "commit"); a non-nil error aborts the pass there, as a
	// crash would. Tests only.
	hook func(step string) error
}

// withDefaults fills in the defaults; stateDir is where the stores keep
// their caches (stores.Env.StateDir).
func (d Deps) withDefaults(stateDir string) Deps {
	if d.Logger == nil {
		d.Logger = hclog.NewNullLogger()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Rand == nil {
		d.Rand = rand.Float64
	}
	if d.Hostname == nil {
		d.Hostname = os.Hostname
	}
	if d.OpenStore == nil {
		env := stores.Env{Runner: d.Runner, Logger: d.Logger.Named("trust"), StateDir: stateDir}
		d.OpenStore = func(spec string) (trust.Store, error) { return stores.Open(spec, env) }
	}
	return d
}

// storeHandle is a configured store, or why it could not be opened.
type storeHandle struct {
	name    string
	store   trust.Store
	openErr error
	// orphaned reports a store no longer configured that the ledger still
	// has roots in.
	orphaned bool
}

// orphans opens the stores the ledger names that the config no longer
// does, so the roots we put there are taken back out rather than left
// trusted forever.
func (a *Agent) orphans(l *Ledger, configured []storeHandle) []storeHandle {
	known := make(map[string]bool, len(configured))
	for _, h := range configured {
		known[h.name] = true
	}
	var out []storeHandle
	for _, name := range l.StoreNames() {
		if known[name] {
			continue
		}
		s, err := a.deps.OpenStore(name)
		out = append(out, storeHandle{name: name, store: s, openErr: err, orphaned: true})
	}
	return out
}

// answer is the last valid answer of the control plane.
type answer struct {
	certs []api.Certificate
	etag  string
	at    time.Time
}

// Agent keeps the configured stores in line with the control plane.
type Agent struct {
	deps Deps
	log  hclog.Logger

	// passMu serialises passes (the loop, SyncOnce, Purge).
	passMu sync.Mutex
	// swept reports whether this process swept the leftovers of killed
	// writes yet (sweep); guarded by passMu.
	swept bool
	// memo is guarded by passMu.
	memo passMemo
	// verified is the last full read that found nothing to change (nil:
	// the next timer pass reads the stores); guarded by passMu.
	verified *verified

	// mu guards every field below it.
	mu     sync.Mutex
	cfg    *Config
	source Source
	stores []storeHandle
	// last is the last valid answer; nil until one arrives in this process.
	last *answer
	// lastFetchOK reports whether the most recent fetch succeeded.
	lastFetchOK bool
	failures    int
	// authBlocked is set by a 401/403 and cleared by a reload, a changed
	// token file or a successful fetch.
	authBlocked bool
	authSince   time.Time
	tokenStamp  fileStamp
	snap        Snapshot
	// persisted is the material form of the status file on disk.
	persisted []byte
	// storeWatch, when set, lets timer passes skip reading unchanged
	// stores (quiet.go).
	storeWatch StoreWatch

	// watchLiveUntil is until when (Unix ns) WatchChanges' long-poll
	// counts as live, so timer passes need not ask the control plane too
	// (longpoll.go); 0 when no long-poll runs.
	watchLiveUntil atomic.Int64

	// identity is the device id and secret (check-ins); guarded by mu.
	identity DeviceIdentity
	// checkInRunning reports a check-in in flight; guarded by mu.
	checkInRunning bool
	// checkIns counts check-in goroutines (WaitCheckIn).
	checkIns sync.WaitGroup

	trigger chan string
	reload  chan struct{}
}

// New returns an agent for cfg. Stores that cannot be opened are kept and
// reported as skipped every pass (a missing tool is not a reason to stop
// serving the other stores).
func New(cfg *Config, deps Deps) (*Agent, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: no config", ErrConfig)
	}
	deps = deps.withDefaults(cfg.StateDir)
	a := &Agent{
		deps:    deps,
		log:     deps.Logger,
		trigger: make(chan string, 1),
		reload:  make(chan struct{}, 1),
	}
	if err := a.setConfig(cfg); err != nil {
		return nil, err
	}
	if prev, err := LoadSnapshot(cfg.StatusPath()); err == nil {
		// Carry history across restarts, and know what is on disk so an
		// unchanged state is not rewritten.
		a.snap.RetiredRemoved, a.snap.LastChange, a.snap.LastChanges = prev.RetiredRemoved, prev.LastChange, prev.LastChanges
		a.snap.LastSuccess = prev.LastSuccess
		a.snap.CheckIn = prev.CheckIn
		a.persisted = material(*prev)
	}
	// A device id made by an earlier run; the first pass that can check
	// in makes one otherwise (so a dry run or a read-only status writes
	// nothing).
	if id, err := ReadDeviceIdentity(cfg.StateDir); err == nil {
		a.identity = id
		a.snap.CheckIn.DeviceID = id.ID
	}
	return a, nil
}

func (a *Agent) setConfig(cfg *Config) error {
	src := a.deps.Source
	if src == nil {
		var err error
		if src, err = NewClientSource(cfg, "certagent/"+buildinfo.Version); err != nil {
			return err
		}
	}
	handles := make([]storeHandle, 0, len(cfg.Stores))
	for _, name := range cfg.Stores {
		s, err := a.deps.OpenStore(name)
		if err != nil {
			a.log.Warn("store unavailable", "store", name, "error", err)
		}
		handles = append(handles, storeHandle{name: name, store: s, openErr: err})
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cfg != nil && (a.cfg.ControlPlaneURL != cfg.ControlPlaneURL || a.cfg.AccountID != cfg.AccountID) {
		// Another account's answer says nothing about this one.
		a.last, a.lastFetchOK = nil, false
	}
	if a.cfg != nil && (a.cfg.APIToken != cfg.APIToken || a.cfg.ControlPlaneURL != cfg.ControlPlaneURL || a.cfg.AccountID != cfg.AccountID) {
		// A new token or control plane may accept what the old refused.
		a.snap.CheckIn.Status = ""
	}
	a.cfg, a.source, a.stores = cfg, src, handles
	a.failures, a.authBlocked = 0, false
	a.tokenStamp = stampOf(cfg.APITokenFile)
	return nil
}

// Reload swaps in a new config (SIGHUP). The caller validated it; on error
// the old config stays.
func (a *Agent) Reload(cfg *Config) error {
	if err := a.setConfig(cfg); err != nil {
		return err
	}
	a.log.Info("config reloaded", "source", cfg.Source.String())
	select {
	case a.reload <- struct{}{}:
	default:
	}
	return nil
}

// Config returns the current config.
func (a *Agent) Config() *Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg
}

// Trigger asks the loop for a pass soon. It never blocks: a trigger while
// one is pending is merged into it.
func (a *Agent) Trigger(reason string) {
	select {
	case a.trigger <- reason:
	default:
	}
}

// Run polls until ctx ends. A pass runs at once, then every poll_interval
// (±10%), sooner on Trigger or Reload, later after failures (backoff). It
// returns nil when ctx is cancelled.
func (a *Agent) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		fetch := true
		reason := "interval"
		select {
		case <-ctx.Done():
			a.persistSnapshot(true)
			return nil
		case reason = <-a.trigger:
			// A drift or "sync soon" trigger may not turn into extra polls
			// of a control plane that is failing or refusing us.
			a.mu.Lock()
			fetch = a.failures == 0 && !a.authBlocked
			a.mu.Unlock()
		case <-a.reload:
			reason = "reload"
		case <-timer.C:
			fetch = a.shouldFetchOnTimer()
		}
		if _, err := a.pass(ctx, passOptions{fetch: fetch, reason: reason}); err != nil && ctx.Err() == nil {
			a.log.Error("pass failed", "error", err)
		}
		if ctx.Err() != nil {
			a.persistSnapshot(true)
			return nil
		}
		a.mu.Lock()
		d := NextDelay(a.cfg.PollInterval, a.failures, a.deps.Rand())
		if a.authBlocked {
			// Local passes (drift repair, token-file check) continue at the
			// normal pace; the control plane is not asked.
			d = NextDelay(a.cfg.PollInterval, 0, a.deps.Rand())
		}
		a.snap.NextPoll = a.deps.Now().Add(d).UTC()
		a.mu.Unlock()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(d)
	}
}

// shouldFetchOnTimer decides whether a timer pass asks the control plane:
// always, unless an auth failure blocks it and neither the token file
// changed nor AuthRetry passed.
func (a *Agent) shouldFetchOnTimer() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.authBlocked {
		// A live long-poll already asks the control plane all the time; a
		// timer fetch on top would double the requests and connections.
		return !a.longPollLive()
	}
	if a.cfg.APITokenFile != "" {
		if st := stampOf(a.cfg.APITokenFile); st != a.tokenStamp {
			tok, err := ReadTokenFile(a.cfg.APITokenFile)
			if err != nil {
				a.log.Warn("token file changed but is unusable", "file", a.cfg.APITokenFile, "error", err)
				a.tokenStamp = st
				return false
			}
			cfg := *a.cfg
			cfg.APIToken = tok
			if a.deps.Source == nil {
				src, err := NewClientSource(&cfg, "certagent/"+buildinfo.Version)
				if err != nil {
					a.log.Warn("token file changed but is unusable", "file", a.cfg.APITokenFile, "error", err)
					return false
				}
				a.source = src
			}
			a.cfg, a.tokenStamp = &cfg, st
			a.log.Info("token file changed, polling again", "file", a.cfg.APITokenFile)
			return true
		}
	}
	return a.deps.Now().Sub(a.authSince) >= AuthRetry
}

type fileStamp struct {
	mod  time.Time
	size int64
	ok   bool
}

func stampOf(path string) fileStamp {
	if path == "" {
		return fileStamp{}
	}
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{mod: st.ModTime(), size: st.Size(), ok: true}
}

// SyncOnce runs one pass now, asking the control plane. With dryRun it plans
// and reports but changes nothing and writes nothing.
func (a *Agent) SyncOnce(ctx context.Context, dryRun bool) (*PassReport, error) {
	return a.pass(ctx, passOptions{fetch: true, dryRun: dryRun, reason: "sync"})
}

type passOptions struct {
	fetch  bool
	dryRun bool
	reason string
	// answered, when set with fetch, is the list a held long-poll was
	// just answered with: the pass adopts it (through the same
	// validation) instead of asking again.
	answered *api.ListResult
}

// PassReport is the outcome of one pass.
type PassReport struct {
	Started  time.Time `json:"started"`
	Duration string    `json:"duration"`
	DryRun   bool      `json:"dry_run,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	// Fetch is how the control plane answered.
	Fetch FetchReport `json:"fetch"`
	// Desired are the roots this pass wanted trusted.
	Desired  []CertInfo       `json:"desired"`
	Rejected []trust.Rejected `json:"rejected,omitempty"`
	Withheld []CertInfo       `json:"withheld,omitempty"`
	// Results hold one line per (root, store, target): changes made (or,
	// in a dry run, planned: Status "planned") and pairs needing none.
	Results []TargetResult `json:"results"`
	// Changes is the number of store changes made (or planned).
	Changes int `json:"changes"`
	// LedgerWritten reports whether the pass wrote the ledger.
	LedgerWritten bool `json:"ledger_written"`
	// Watched reports that the pass did not read the stores: the file
	// watcher saw no change in them since the last full read, which found
	// nothing to change (quiet.go); Results are that read's.
	Watched bool `json:"watched,omitempty"`
}

// FetchReport says how the control plane answered.
type FetchReport struct {
	// Status is ok, not_modified, error, auth_error, skipped (no fetch this
	// pass) or none (no valid answer yet; the ledger stood in).
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
	// Authoritative reports whether removals were allowed this pass.
	Authoritative bool      `json:"authoritative"`
	ServerDate    time.Time `json:"server_date,omitzero"`
}

// Failed reports whether any target failed or the control plane could not
// be read: the CLI's exit code 1.
func (r *PassReport) Failed() bool {
	if r.Fetch.Status == "error" || r.Fetch.Status == "auth_error" {
		return true
	}
	for _, t := range r.Results {
		if t.Status == trust.StatusFailed {
			return true
		}
	}
	return false
}

// StatusPlanned marks dry-run results.
const StatusPlanned trust.Status = "planned"

// pass is one reconcile: fetch (maybe), evaluate, inventory, plan, apply.
func (a *Agent) pass(ctx context.Context, opt passOptions) (*PassReport, error) {
	a.passMu.Lock()
	defer a.passMu.Unlock()
	if a.deps.ReleaseMemory {
		defer releaseAfterHeavy(a.log, heapAllocated())
	}
	now := a.deps.Now()
	rep := &PassReport{Started: now.UTC(), DryRun: opt.dryRun, Reason: opt.reason}
	defer func() { rep.Duration = a.deps.Now().Sub(now).String() }()

	a.mu.Lock()
	cfg, src, handles := a.cfg, a.source, a.stores
	last := a.last
	a.mu.Unlock()

	// 1. The desired set: the control plane's answer, or what stands in.
	policy := trust.Policy{Now: a.deps.Now}
	retired := cfg.Retired()
	ev, last, authoritative := a.fetch(ctx, opt, src, last, policy, retired, rep, now)
	ledger, err := a.memo.loadLedger(cfg.LedgerPath())
	if err != nil {
		// Without the ledger we do not know what is ours: refuse the pass.
		a.recordError(err)
		return rep, err
	}
	switch {
	case ev != nil:
		// Evaluated on arrival.
	case last == nil:
		// No valid answer in this process yet: keep what the ledger says
		// we installed (drift repair works offline), remove nothing.
		if rep.Fetch.Status == "skipped" {
			rep.Fetch.Status = "none"
		}
		ev = ledgerEvaluation(ledger, policy, retired)
	default:
		// The last good answer, judged again against the clock: a root
		// that expired since is no longer desired.
		ev, err = a.memo.evaluate(last, cfg, policy, now)
		if err != nil {
			// Cannot happen for an answer adopted above; be safe anyway.
			a.recordError(err)
			return rep, err
		}
	}
	rep.Fetch.Authoritative = authoritative
	rep.Desired, rep.Rejected, rep.Withheld = ev.Infos, ev.Rejected, ev.Withheld

	// 2. What the stores hold (including stores the config dropped that
	// still hold roots we installed), and 3. the plan. A timer pass whose
	// inputs did not move and whose stores the watcher saw unchanged
	// since the last full read would read the same and plan nothing.
	configured := handles
	marks, watched := a.storeMarks(configured)
	if watched && a.stillVerified(opt, cfg, ledger, ev, authoritative, marks, now) {
		rep.Watched = true
		rep.Results = append([]TargetResult(nil), a.verified.results...)
		a.updateSnapshot(rep, cfg)
		if rep.Fetch.Status != "skipped" {
			// Without a fetch nothing the status file holds can have
			// moved: the results and the desired set are the full read's,
			// and config, errors and the device id change only in passes
			// that read the stores.
			a.persistSnapshot(false)
		}
		if a.checkInDueByClock(now) {
			a.maybeCheckIn()
		}
		return rep, nil
	}
	if !opt.dryRun {
		a.verified = nil
	}
	plan, handles, readOK := a.plan(ctx, ev, authoritative, retired, now, configured, ledger)
	// A process killed mid-write leaves temporary files; the first pass of
	// the next one sweeps them, under the lock so no other certagent is
	// mid-write. Without a state dir nothing was ever written.
	sweep := !opt.dryRun && !a.swept && dirExists(cfg.StateDir)
	if !opt.dryRun && (!plan.Empty() || sweep) {
		// Another certagent process (a `sync` or `uninstall --purge` next
		// to the daemon) may be mid-pass: take the state lock, and plan
		// again if the ledger moved while we were not holding it. Quiet
		// passes never get here after the first, so they touch no lock.
		if err := a.step("lock"); err != nil {
			return rep, err
		}
		unlock, err := lockState(cfg.StateDir)
		if err != nil {
			a.recordError(err)
			return rep, err
		}
		defer unlock()
		swept := a.sweep(cfg, handles)
		fresh, err := LoadLedger(cfg.LedgerPath())
		if err != nil {
			a.recordError(err)
			return rep, err
		}
		if !fresh.Equal(ledger) || swept {
			ledger = fresh
			plan, handles, readOK = a.plan(ctx, ev, authoritative, retired, now, configured, fresh)
		}
	}
	rep.Changes = plan.ChangeCount()
	if opt.dryRun {
		rep.Results = plannedResults(plan)
		return rep, nil
	}
	if !plan.Empty() {
		if err := a.apply(ctx, cfg, plan, handles, rep, now); err != nil {
			a.recordError(err)
			a.updateSnapshot(rep, cfg)
			return rep, err
		}
	} else {
		for _, sp := range plan.Stores {
			rep.Results = append(rep.Results, sp.Results...)
		}
	}
	refreshed := a.refreshDerived(ctx, configured)
	if watched && readOK && refreshed && plan.Empty() && len(handles) == len(configured) {
		// Timer passes may stand on this read while nothing moves.
		a.verified = &verified{at: now, cfg: cfg, ledger: ledger, ev: ev, authoritative: authoritative,
			marks: marks, results: append([]TargetResult(nil), rep.Results...)}
	}
	a.updateSnapshot(rep, cfg)
	a.ensureIdentity(cfg)
	a.persistSnapshot(false)
	// After the pass, in the background: a slow or refusing control plane
	// never delays an install, and never fails the pass.
	a.maybeCheckIn()
	return rep, nil
}

// fetch asks the control plane for the certificates (unless opt says the
// pass reuses the last answer) and records how it answered in rep. It
// returns the evaluated answer (nil when none arrived this pass), the last
// good answer, and whether the answer may remove roots (authoritative).
func (a *Agent) fetch(ctx context.Context, opt passOptions, src Source, last *answer, policy trust.Policy, retired map[trust.Fingerprint]bool, rep *PassReport, now time.Time) (ev *Evaluation, _ *answer, authoritative bool) {
	if opt.fetch {
		etag := ""
		if last != nil {
			etag = last.etag
		}
		res, err := opt.answered, error(nil)
		if res == nil {
			res, err = src.List(ctx, etag)
		}
		switch {
		case err == nil:
			rep.Fetch = FetchReport{Status: "ok", ServerDate: res.Date}
			// Validate before adopting: an answer whose certificates do
			// not hold together changes nothing.
			fresh, ierr := evaluate(res.Certificates, policy, retired, &a.memo.parses)
			if ierr != nil {
				rep.Fetch = FetchReport{Status: "error", Error: ierr.Error(), ServerDate: res.Date}
				break
			}
			last = &answer{certs: res.Certificates, etag: res.ETag, at: now}
			ev, authoritative = fresh, true
		case errors.Is(err, api.ErrNotModified) && last != nil:
			rep.Fetch = FetchReport{Status: "not_modified"}
			if res != nil {
				rep.Fetch.ServerDate = res.Date
			}
			authoritative = true
		default:
			if errors.Is(err, api.ErrNotModified) {
				err = fmt.Errorf("%w: 304 Not Modified to a request without If-None-Match", api.ErrMalformed)
			}
			rep.Fetch = FetchReport{Status: "error", Error: err.Error()}
			if api.IsAuth(err) {
				rep.Fetch.Status = "auth_error"
			}
		}
		a.recordFetch(rep, last, now)
	} else {
		rep.Fetch = FetchReport{Status: "skipped"}
		a.mu.Lock()
		authoritative = a.last != nil && a.lastFetchOK
		a.mu.Unlock()
	}
	if rep.Fetch.Status == "error" || rep.Fetch.Status == "auth_error" {
		// The last good answer (if any) stands in, but removes nothing.
		authoritative = false
	}
	return ev, last, authoritative
}

// plan inventories the configured stores, plus the dropped ones that still
// hold roots the ledger l says we installed, and plans the pass. It
// returns the plan, the handles it covers, and whether every store that
// could be opened was read.
func (a *Agent) plan(ctx context.Context, ev *Evaluation, authoritative bool, retired map[trust.Fingerprint]bool, now time.Time, configured []storeHandle, l *Ledger) (*Plan, []storeHandle, bool) {
	hs := append(configured[:len(configured):len(configured)], a.orphans(l, configured)...)
	states := make([]StoreState, 0, len(hs))
	readOK := true
	for _, h := range hs {
		st := inventory(ctx, h)
		st.Orphaned = h.orphaned
		if st.Err != nil && h.openErr == nil {
			readOK = false
		}
		states = append(states, st)
	}
	return MakePlan(PlanInput{
		Desired:       ev.Desired,
		Authoritative: authoritative,
		Ledger:        l,
		Stores:        states,
		Retired:       retired,
		Now:           now.UTC(),
	}), hs, readOK
}

// plannedResults is a dry run's report: every change as planned, and the
// pairs that need none.
func plannedResults(plan *Plan) []TargetResult {
	var out []TargetResult
	for _, sp := range plan.Stores {
		for i, c := range sp.Changes {
			out = append(out, changeResult(sp.Store, c, sp.Retired[i], StatusPlanned, "", plan.Intent))
		}
		out = append(out, sp.Results...)
	}
	return out
}

// sweep removes the leftovers of writes a killed process never finished:
// in the state dir (ledger, status) and in every store that writes files
// (only files with our names). The caller holds the state lock; every
// pass that changes something sweeps too, so a leftover never outlives
// the next change. It reports whether it removed anything.
func (a *Agent) sweep(cfg *Config, handles []storeHandle) bool {
	a.swept = true
	ledger, status := filepath.Base(cfg.LedgerPath()), filepath.Base(cfg.StatusPath())
	removed, err := atomicfile.Sweep(cfg.StateDir, func(b string) bool { return b == ledger || b == status })
	a.logSweep("state_dir", removed, err)
	any := len(removed) > 0
	for _, h := range handles {
		if h.openErr != nil {
			continue
		}
		if sw, ok := h.store.(trust.Sweeper); ok {
			removed, err := sw.Sweep()
			a.logSweep(h.name, removed, err)
			any = any || len(removed) > 0
		}
	}
	return any
}

func (a *Agent) logSweep(where string, removed []string, err error) {
	for _, p := range removed {
		a.log.Info("removed the leftover of an interrupted write", "store", where, "file", p)
	}
	if err != nil {
		a.log.Warn("sweeping leftovers of interrupted writes failed", "store", where, "error", err)
	}
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// inventory checks and lists one store; any failure makes it unusable for
// this pass.
func inventory(ctx context.Context, h storeHandle) StoreState {
	st := StoreState{Name: h.name}
	if h.openErr != nil {
		st.Err = h.openErr
		return st
	}
	if err := h.store.Check(ctx); err != nil {
		st.Err = err
		return st
	}
	inv, err := h.store.List(ctx)
	if err != nil {
		st.Err = fmt.Errorf("listing %s: %w", h.name, err)
		return st
	}
	st.Inv = inv
	return st
}

// apply runs the intent/commit protocol:
//
//  1. write the intent ledger (installs "installing", removals "removing");
//  2. one Apply batch per store with changes;
//  3. write the committed ledger (confirmed installs "installed",
//     confirmed removals dropped).
//
// A crash after 1 leaves pending entries: the next pass adopts those it
// finds present and completes the rest. A crash inside 2 leaves some
// changes made: the store's Apply is idempotent and the planner re-derives
// what is left from the store itself. A crash before 3 is the same as
// after 2. Nothing is ever installed twice (the planner only installs what
// a target lacks) and nothing is forgotten (an entry leaves the ledger only
// once its root is confirmed gone).
func (a *Agent) apply(ctx context.Context, cfg *Config, plan *Plan, handles []storeHandle, rep *PassReport, now time.Time) error {
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return fmt.Errorf("agent: state dir: %w", err)
	}
	if err := a.step("intent"); err != nil {
		return err
	}
	if plan.LedgerChanged {
		if err := plan.Intent.Save(cfg.LedgerPath()); err != nil {
			return err
		}
		rep.LedgerWritten = true
	}
	results := make(map[string][]trust.Result, len(plan.Stores))
	for i, sp := range plan.Stores {
		rep.Results = append(rep.Results, sp.Results...)
		if len(sp.Changes) == 0 {
			continue
		}
		if err := a.step("apply:" + sp.Store); err != nil {
			return err
		}
		h := handles[i]
		log := a.log.With("store", sp.Store)
		log.Info("applying changes", "changes", len(sp.Changes))
		res := h.store.Apply(ctx, sp.Changes)
		if len(res) != len(sp.Changes) {
			// An adapter bug; never treat missing results as success.
			err := fmt.Errorf("agent: store %s returned %d results for %d changes", sp.Store, len(res), len(sp.Changes))
			fixed := make([]trust.Result, len(sp.Changes))
			for j, c := range sp.Changes {
				if j < len(res) && res[j].Change.FP == c.FP && res[j].Change.Target == c.Target {
					fixed[j] = res[j]
				} else {
					fixed[j] = trust.Failed(c, err)
				}
			}
			res = fixed
		}
		results[sp.Store] = res
		for j, r := range res {
			tr := changeResult(sp.Store, sp.Changes[j], sp.Retired[j], r.Status, r.Reason, plan.Intent)
			if r.Err != nil {
				tr.Error = r.Err.Error()
			}
			rep.Results = append(rep.Results, tr)
			kv := []any{"op", r.Change.Op, "fingerprint", r.Change.FP.String(), "target", r.Change.Target.String(), "status", r.Status}
			switch r.Status {
			case trust.StatusFailed:
				log.Error("change failed", append(kv, "error", r.Err)...)
			case trust.StatusSkipped:
				log.Warn("change skipped", append(kv, "reason", r.Reason)...)
			default:
				log.Info("change applied", kv...)
			}
		}
	}
	if err := a.step("commit"); err != nil {
		return err
	}
	committed := Commit(plan.Intent, plan, results, now.UTC())
	if !committed.Equal(plan.Intent) || (plan.LedgerChanged && !rep.LedgerWritten) {
		if err := committed.Save(cfg.LedgerPath()); err != nil {
			return err
		}
		rep.LedgerWritten = true
	}
	return nil
}

func (a *Agent) step(name string) error {
	if a.deps.hook == nil {
		return nil
	}
	return a.deps.hook(name)
}

func changeResult(store string, c trust.Change, retired bool, s trust.Status, reason string, l *Ledger) TargetResult {
	tr := TargetResult{Store: store, Target: c.Target, FP: c.FP, Op: c.Op, Retired: retired, Status: s, Reason: reason}
	if c.Cert != nil {
		tr.CertID, tr.Subject = c.Cert.ID, c.Cert.Subject()
	} else if lc, ok := l.Certs[c.FP]; ok {
		tr.CertID, tr.Subject = lc.ID, lc.Subject
	}
	return tr
}

// ledgerEvaluation stands in for an answer when there is none: the roots we
// installed that still pass the policy.
func ledgerEvaluation(l *Ledger, policy trust.Policy, retired map[trust.Fingerprint]bool) *Evaluation {
	ev := &Evaluation{}
	var cands []trust.Candidate
	for _, lc := range l.Managed() {
		cands = append(cands, trust.Candidate{ID: lc.ID, PEM: []byte(lc.PEM)})
	}
	ok, _ := policy.Evaluate(cands)
	for _, c := range ok {
		if retired[c.FP] {
			continue
		}
		ev.Desired = append(ev.Desired, c)
		ev.Infos = append(ev.Infos, CertInfo{ID: c.ID, FP: c.FP, Subject: c.Subject(), NotAfter: c.X509.NotAfter.UTC(), BindingStatus: "unknown (from the ledger)"})
	}
	return ev
}
