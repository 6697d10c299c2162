// Package daemon is the long-running certagent: the reconcile loop
// (agent.Agent), the file watcher that turns config edits into reloads and
// store drift into a pass within seconds, and the LocalAPI through which
// `certagent status`, `sync` and `certs` reach it.
//
// A daemon started without a valid config does not exit: it serves status
// (misconfigured, with the load error) and starts the loop as soon as a
// valid config is written, so a package installed before its config is
// pushed by MDM or Ansible comes up by itself. A later invalid config is
// rejected with a health warning and the previous one stays in effect.
package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/agent/localapi"
	"github.com/certagent/certagent/agent/status"
	"github.com/certagent/certagent/agent/watch"
	"github.com/certagent/certagent/platform"
)

// ErrNoConfig is returned by LocalAPI calls that need a config while none
// valid is loaded.
var ErrNoConfig = errors.New("daemon: no valid config loaded")

// ErrPurged is returned by Sync after a purge: the daemon stays idle so it
// does not reinstall what was removed, until it is restarted.
var ErrPurged = errors.New("daemon: everything was purged; restart the service to manage roots again")

// Options configure the daemon. The zero value of every field but Paths
// has a real default.
type Options struct {
	// Paths are the config, managed settings, socket and state locations.
	Paths platform.Paths
	// Logger is the root logger; nil means a null logger.
	Logger hclog.Logger
	// Deps are handed to agent.New (tests inject a Source or stores); its
	// Logger is replaced by Logger.Named("agent").
	Deps agent.Deps
	// Load loads and validates the config; nil means agent.LoadConfig on
	// Paths.
	Load func() (*agent.Config, error)
	// Debounce is the watcher's quiet interval; zero means
	// watch.DefaultDebounce.
	Debounce time.Duration
	// ServiceState says how the daemon runs, for status ("running" under a
	// service manager, "foreground" in a terminal); "" means "running".
	ServiceState string
	// Ready, when set, is called once the LocalAPI listens (tests).
	Ready func()
}

// Daemon is one running certagent.
type Daemon struct {
	o       Options
	log     hclog.Logger
	started time.Time

	reloadCh  chan struct{}
	refreshCh chan struct{}
	w         *watch.Watcher

	// mu guards every field below it.
	mu  sync.Mutex
	ag  *agent.Agent
	cfg *agent.Config
	// problem is the last config load error ("" when the last load
	// succeeded).
	problem    string
	reloadedAt time.Time
	// agentStop stops the agent loop; agentDone closes when it returned.
	agentStop context.CancelFunc
	agentDone chan struct{}
	// purged reports that Purge ran: the loop stays stopped so it does not
	// reinstall what was just removed.
	purged bool
	// storeGroups are the watch groups of the current stores.
	storeGroups map[string]bool
	// managedSeen is the last registry policy seen (nil: not read yet).
	managedSeen []byte
}

// Run runs a daemon with o until ctx is done.
func Run(ctx context.Context, o Options) error {
	d, err := New(o)
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

// New returns a daemon; Run starts it.
func New(o Options) (*Daemon, error) {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Load == nil {
		p := o.Paths
		o.Load = func() (*agent.Config, error) { return agent.LoadConfig(p, agent.LoadOptions{}) }
	}
	if o.ServiceState == "" {
		o.ServiceState = "running"
	}
	o.Deps.Logger = o.Logger.Named("agent")
	// One agent in this process: what a heavy pass allocated goes back to
	// the OS when it ends, not whenever the scavenger gets to it.
	o.Deps.ReleaseMemory = true
	d := &Daemon{
		o:           o,
		log:         o.Logger,
		reloadCh:    make(chan struct{}, 1),
		refreshCh:   make(chan struct{}, 1),
		storeGroups: map[string]bool{},
	}
	w, err := watch.New(watch.Options{Debounce: o.Debounce, Logger: o.Logger.Named("watch"), OnChange: d.onChange})
	if err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	d.w = w
	return d, nil
}

// configGroup is the watch group of the config, managed settings and token
// files.
const configGroup = "config"

func (d *Daemon) onChange(group string) {
	if group == configGroup {
		select {
		case d.reloadCh <- struct{}{}:
		default:
		}
		return
	}
	d.mu.Lock()
	ag := d.ag
	d.mu.Unlock()
	if ag != nil {
		d.log.Debug("store changed on disk, syncing soon", "group", group)
		ag.Trigger("drift " + group)
	}
	// A new profile or user directory may need a watch of its own.
	select {
	case d.refreshCh <- struct{}{}:
	default:
	}
}

// Run serves until ctx is done, then stops the loop, the watcher and the
// LocalAPI.
func (d *Daemon) Run(ctx context.Context) error {
	d.started = time.Now()
	ln, err := platform.ListenLocalAPI(d.o.Paths.Socket)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	d.log.Info("certagent daemon starting", "socket", d.o.Paths.Socket, "config", d.o.Paths.ConfigFile, "pid", os.Getpid())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := localapi.NewServer(d, d.log.Named("localapi")).Serve(ctx, ln); err != nil {
			errc <- err
		}
	}()
	go func() {
		defer wg.Done()
		if err := d.w.Run(ctx); err != nil {
			errc <- err
		}
	}()
	d.reload(ctx)
	if d.o.Ready != nil {
		d.o.Ready()
	}

	// Store paths move as users log in for the first time and browsers
	// create profiles; re-derive them now and then as well as on events.
	refresh := time.NewTicker(time.Minute)
	defer refresh.Stop()
	hup := hangups()
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errc:
			runErr = err
			break loop
		case <-d.reloadCh:
			d.reload(ctx)
		case <-hup:
			d.log.Info("reload requested by signal")
			d.reload(ctx)
		case <-d.refreshCh:
			d.refreshWatches()
		case <-refresh.C:
			d.refreshWatches()
			if d.managedChanged() {
				// Windows policy lives in the registry, which the file
				// watch cannot see.
				d.log.Info("managed settings changed, reloading")
				d.reload(ctx)
			}
		}
	}
	cancel()
	d.stopAgent()
	wg.Wait()
	d.log.Info("certagent daemon stopped")
	return runErr
}

// reload loads the config; a valid one starts or updates the agent, an
// invalid one is recorded and the previous one stays.
func (d *Daemon) reload(ctx context.Context) {
	cfg, err := d.o.Load()
	d.mu.Lock()
	running := d.ag != nil
	purged := d.purged
	d.mu.Unlock()
	d.setConfigWatch(cfg)
	if err != nil {
		d.mu.Lock()
		d.problem = err.Error()
		d.mu.Unlock()
		if running {
			d.log.Error("new config rejected; keeping the previous one", "error", err)
		} else {
			d.log.Error("config invalid; waiting for a valid one", "error", err)
		}
		return
	}
	AddSecret(d.log, cfg.APIToken)
	d.mu.Lock()
	d.problem = ""
	d.reloadedAt = time.Now()
	d.mu.Unlock()
	switch {
	case purged:
		d.log.Info("config changed after purge; restart the service to manage roots again")
		return
	case running:
		d.mu.Lock()
		ag := d.ag
		d.mu.Unlock()
		if err := ag.Reload(cfg); err != nil {
			d.mu.Lock()
			d.problem = err.Error()
			d.mu.Unlock()
			d.log.Error("new config rejected; keeping the previous one", "error", err)
			return
		}
		d.mu.Lock()
		d.cfg = cfg
		d.mu.Unlock()
	default:
		ag, err := agent.New(cfg, d.o.Deps)
		if err != nil {
			d.mu.Lock()
			d.problem = err.Error()
			d.mu.Unlock()
			d.log.Error("cannot start the agent; waiting for a valid config", "error", err)
			return
		}
		// Timer passes skip reading the stores the watcher saw unchanged.
		ag.SetStoreWatch(storeWatch{d.w})
		actx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		d.mu.Lock()
		if d.purged {
			// A purge arrived while the config loaded: stay idle.
			d.mu.Unlock()
			stop()
			return
		}
		d.ag, d.cfg, d.agentStop, d.agentDone = ag, cfg, stop, done
		d.mu.Unlock()
		go func() {
			defer close(done)
			// The long-poll (certplane's ?wait extension) brings an
			// activation here within seconds; it stops by itself on servers
			// without it and the interval loop carries on.
			lp := make(chan struct{})
			go func() {
				defer close(lp)
				if err := ag.WatchChanges(actx, 0); err != nil && !errors.Is(err, agent.ErrNoLongPoll) {
					d.log.Warn("long-poll stopped; interval polling continues", "error", err)
				}
			}()
			if err := ag.Run(actx); err != nil {
				d.log.Error("agent loop stopped", "error", err)
			}
			<-lp
		}()
		d.log.Info("agent started", "config", cfg.String())
	}
	d.refreshWatches()
}

// managedChanged reports whether managed settings that are not a file
// (the Windows policy registry key) changed since the last check.
func (d *Daemon) managedChanged() bool {
	if d.o.Paths.ManagedFile != "" {
		return false
	}
	m, err := platform.ReadManaged(d.o.Paths)
	if err != nil || filepath.IsAbs(m.Source) {
		return false
	}
	b, _ := json.Marshal(m.Settings)
	d.mu.Lock()
	defer d.mu.Unlock()
	changed := d.managedSeen != nil && !bytes.Equal(b, d.managedSeen)
	d.managedSeen = b
	return changed
}

// setConfigWatch watches the config file, the managed settings and the
// token file (of cfg, or of the previous config when cfg is nil).
func (d *Daemon) setConfigWatch(cfg *agent.Config) {
	paths := []string{d.o.Paths.ConfigFile}
	if d.o.Paths.ManagedFile != "" {
		paths = append(paths, d.o.Paths.ManagedFile)
	} else if m, _ := platform.ReadManaged(d.o.Paths); filepath.IsAbs(m.Source) {
		// macOS managed preferences are a plist MDM rewrites.
		paths = append(paths, m.Source)
	}
	if cfg == nil {
		d.mu.Lock()
		cfg = d.cfg
		d.mu.Unlock()
	}
	if cfg != nil && cfg.APITokenFile != "" {
		paths = append(paths, cfg.APITokenFile)
	}
	d.w.Set(configGroup, paths)
}

// storeWatch is the agent's view of the watcher: a store's mark is its
// group's change count.
type storeWatch struct{ w *watch.Watcher }

// StoreMark implements agent.StoreWatch. A store that declares no paths
// has no group, and is never complete.
func (s storeWatch) StoreMark(name string) (uint64, bool) { return s.w.State(storeGroup(name)) }

// storeGroup is the watch group of the store with config name name.
func storeGroup(name string) string { return "store:" + name }

// refreshWatches points the store groups at the stores' current paths.
func (d *Daemon) refreshWatches() {
	d.mu.Lock()
	ag := d.ag
	d.mu.Unlock()
	if ag == nil {
		return
	}
	own := ag.StoreWatchPaths()
	groups := map[string]bool{}
	for name, paths := range own {
		// Each store names its own paths (trust.PathDeclarer); one that
		// names none is repaired by polling.
		g := storeGroup(name)
		groups[g] = true
		d.w.Set(g, paths)
	}
	d.mu.Lock()
	old := d.storeGroups
	d.storeGroups = groups
	d.mu.Unlock()
	for g := range old {
		if !groups[g] {
			d.w.Set(g, nil)
		}
	}
}

func (d *Daemon) stopAgent() {
	d.mu.Lock()
	stop, done := d.agentStop, d.agentDone
	d.ag, d.agentStop, d.agentDone = nil, nil, nil
	d.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// Status implements localapi.Backend.
func (d *Daemon) Status(ctx context.Context) (*status.Report, error) {
	d.mu.Lock()
	ag, cfg, problem, reloadedAt := d.ag, d.cfg, d.problem, d.reloadedAt
	d.mu.Unlock()
	in := status.Inputs{
		Daemon: status.Daemon{Running: true, PID: os.Getpid(), StartedAt: d.started.UTC(),
			Service: d.o.ServiceState, Source: "localapi"},
		ReloadedAt: reloadedAt,
	}
	if problem != "" {
		in.ConfigProblems = []string{problem}
	}
	var snap agent.Snapshot
	switch {
	case ag != nil:
		snap = ag.Snapshot()
		in.StoreErrors = ag.StoreOpenErrors()
		in.StateDir = cfg.StateDir
	case cfg != nil:
		// Purged: the loop is stopped; show the last saved state.
		if s, err := agent.LoadSnapshot(cfg.StatusPath()); err == nil {
			snap = *s
		}
		in.StateDir = cfg.StateDir
	default:
		in.ConfigInvalid = true
		snap.ConfigSource = agent.ConfigSource{File: d.o.Paths.ConfigFile, Managed: d.o.Paths.ManagedFile}
		if _, err := os.Stat(d.o.Paths.ConfigFile); err != nil {
			snap.ConfigSource.FileMissing = true
		}
	}
	return status.FromSnapshot(&snap, in), nil
}

// CertsPEM implements localapi.Backend: every root in the ledger.
func (d *Daemon) CertsPEM(ctx context.Context) ([]byte, error) {
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	if cfg == nil {
		return nil, ErrNoConfig
	}
	return LedgerPEM(cfg.LedgerPath())
}

// LedgerPEM returns the PEM of every root the ledger at path records.
func LedgerPEM(path string) ([]byte, error) {
	l, err := agent.LoadLedger(path)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	for _, c := range l.Managed() {
		b.WriteString(c.PEM)
		if n := b.Len(); n > 0 && b.Bytes()[n-1] != '\n' {
			b.WriteByte('\n')
		}
	}
	return b.Bytes(), nil
}

// Sync implements localapi.Backend.
func (d *Daemon) Sync(ctx context.Context, dryRun bool) (*agent.PassReport, error) {
	d.mu.Lock()
	ag, purged := d.ag, d.purged
	d.mu.Unlock()
	if purged {
		return nil, ErrPurged
	}
	if ag == nil {
		return nil, ErrNoConfig
	}
	rep, err := ag.SyncOnce(ctx, dryRun)
	if err == nil && rep != nil && rep.Failed() {
		err = errors.New("sync finished with failures (see the results)")
	}
	return rep, err
}

// Purge implements localapi.Backend: it stops the loop so nothing is
// reinstalled, then removes everything the ledger says we installed.
func (d *Daemon) Purge(ctx context.Context) (*agent.PurgeReport, error) {
	d.mu.Lock()
	cfg := d.cfg
	d.purged = true
	d.mu.Unlock()
	if cfg == nil {
		// No valid config: the default state dir's ledger is all purge
		// needs (a package removal must not fail on a broken config).
		cfg = &agent.Config{StateDir: d.o.Paths.StateDir}
	}
	d.stopAgent()
	d.log.Info("purging every root certagent installed")
	deps := d.o.Deps
	return agent.Purge(ctx, cfg, deps)
}
