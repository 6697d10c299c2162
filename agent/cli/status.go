package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/agent/daemon"
	"github.com/certagent/certagent/agent/localapi"
	"github.com/certagent/certagent/agent/status"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/runtimes"
	"github.com/certagent/certagent/trust/stores"
)

// cmdStatus is `certagent status [--json]`: the daemon's live status over
// the LocalAPI, or the last state it saved when it is not running. Exit 0
// healthy, 1 degraded, 2 daemon down or misconfigured.
func cmdStatus(args []string) int {
	fset := newFlagSet("status")
	asJSON := fset.Bool("json", false, "print the full report as JSON (for fleet tools)")
	probe := fset.Bool("runtimes", true, "find node, python, pip, aws, gcloud, git, curl, java, Firefox and Chromium and check the CA store each reads")
	if err := fset.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	paths := platform.DefaultPaths()
	rep := gatherStatus(ctx, paths)
	checkOSTrust(ctx, paths, rep)
	if *probe {
		checkRuntimes(ctx, rep)
	}
	var err error
	if *asJSON {
		err = status.WriteJSON(os.Stdout, rep)
	} else {
		err = status.Render(os.Stdout, rep, time.Now())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "certagent status:", err)
		return 2
	}
	return status.ExitCode(rep.Health)
}

// gatherStatus asks the daemon, and falls back to the state directory.
func gatherStatus(ctx context.Context, paths platform.Paths) *status.Report {
	rep, err := localapi.NewClient(paths.Socket).Status(ctx)
	if err == nil {
		return rep
	}
	return offlineStatus(paths, err)
}

// checkOSTrust asks this (fresh) process's OS verifier whether the roots
// the system store holds are really trusted. The roots come from the
// daemon, or from the ledger when it is down; without either the placements
// stay unchecked.
func checkOSTrust(ctx context.Context, paths platform.Paths, rep *status.Report) {
	var pem []byte
	if rep.Daemon.Running {
		pem, _ = localapi.NewClient(paths.Socket).CertsPEM(ctx)
	} else {
		stateDir := paths.StateDir
		if rep.Config.StateDir != "" {
			stateDir = rep.Config.StateDir
		}
		pem, _ = daemon.LedgerPEM(filepath.Join(stateDir, "ledger.json"))
	}
	certs, err := trust.ParsePEM(pem)
	if err != nil || len(certs) == 0 {
		return
	}
	_ = status.ApplyOSTrust(rep, certs, time.Now())
}

// runtimesTimeout bounds the whole runtime probe: each program it asks
// gets its own shorter timeout, and they run side by side.
const runtimesTimeout = 20 * time.Second

// checkRuntimes finds the runtimes on this machine and whether each will
// trust the in-use root, by reading the CA store each one loads. It runs
// here, in the CLI, never in the daemon's passes.
func checkRuntimes(ctx context.Context, rep *status.Report) {
	ctx, cancel := context.WithTimeout(ctx, runtimesTimeout)
	defer cancel()
	found := runtimes.Probe(ctx, runtimes.ProbeOptions{Timeout: 10 * time.Second, Browsers: browserInventories})
	status.ApplyRuntimes(rep, found)
}

// browserInventories lists Firefox's policy roots and every user's NSS
// databases through the stores that write them.
func browserInventories(ctx context.Context) (policy *trust.Inventory, policyErr error, nssInv *trust.Inventory, nssErr error) {
	list := func(name string) (*trust.Inventory, error) {
		// The daemon's listing cache (root's, in the state dir) spares
		// the certutil runs when this runs as root and nothing changed.
		st, err := stores.Open(name, stores.Env{StateDir: platform.DefaultPaths().StateDir})
		if err != nil {
			return nil, err
		}
		return st.List(ctx)
	}
	policy, policyErr = list("firefox-policy")
	nssInv, nssErr = list("nss")
	return policy, policyErr, nssInv, nssErr
}

// offlineStatus builds the report from the config and the status file the
// daemon persisted, with the daemon marked down and why.
func offlineStatus(paths platform.Paths, reachErr error) *status.Report {
	in := status.Inputs{Daemon: status.Daemon{Running: false, Source: "state file", Service: string(serviceState()), Error: reachErr.Error()}}
	if !errors.Is(reachErr, localapi.ErrNotRunning) {
		in.Daemon.Source = "state file (the daemon answered with an error)"
	}
	snap := &agent.Snapshot{ConfigSource: agent.ConfigSource{File: paths.ConfigFile, Managed: paths.ManagedFile}}
	if f, err := os.Open(paths.ConfigFile); errors.Is(err, fs.ErrPermission) {
		// The config holds the token and is root's alone: a user cannot
		// judge it, which does not make it invalid. The saved status (0644)
		// still tells most of the story.
		in.ConfigProblems = []string{fmt.Sprintf("%s is not readable by this user; run `sudo certagent status` to check it", paths.ConfigFile)}
		if s, err := agent.LoadSnapshot(filepath.Join(agent.StateDirHint(paths), "status.json")); err == nil {
			snap = s
		}
		return status.FromSnapshot(snap, in)
	} else if err == nil {
		f.Close()
	}
	// The full check says what the daemon would say about the config; the
	// local one still finds the state directory when the token is missing.
	if _, err := agent.LoadConfig(paths, agent.LoadOptions{}); err != nil {
		in.ConfigInvalid = true
		in.ConfigProblems = []string{err.Error()}
	}
	cfg, err := agent.LoadConfig(paths, agent.LoadOptions{Local: true})
	if err == nil {
		in.StateDir = cfg.StateDir
		if s, err := agent.LoadSnapshot(cfg.StatusPath()); err == nil {
			snap = s
		} else if !errors.Is(err, fs.ErrNotExist) {
			in.ConfigProblems = append(in.ConfigProblems, err.Error())
		} else {
			snap.ControlPlaneURL, snap.AccountID, snap.Stores = cfg.ControlPlaneURL, cfg.AccountID, cfg.Stores
			snap.PollInterval = cfg.PollInterval.String()
			snap.ConfigSource = cfg.Source
		}
	}
	return status.FromSnapshot(snap, in)
}

// serviceState asks the service manager, briefly; "" when it cannot say.
func serviceState() platform.ServiceState {
	svc, err := platform.NewService(platform.ServiceOptions{Arguments: []string{"run"}}, nil)
	if err != nil {
		return ""
	}
	st, err := svc.State()
	if err != nil {
		return ""
	}
	return st
}

// The commands that change or read the machine's roots go through the
// daemon when it runs, so there is one writer of the ledger and the stores
// (a second process would race it, and its file watch would undo a purge
// made behind its back). ok is false when no daemon answers: the caller
// then does the work in-process.

// daemonTimeout bounds a LocalAPI call that runs a pass.
const daemonTimeout = 10 * time.Minute

// syncViaDaemon asks the running daemon for a pass.
func syncViaDaemon(dryRun bool) (rep *agent.PassReport, err error, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), daemonTimeout)
	defer cancel()
	rep, err = localapi.NewClient(platform.DefaultPaths().Socket).Sync(ctx, dryRun)
	if errors.Is(err, localapi.ErrNotRunning) {
		return nil, nil, false
	}
	if rep != nil && rep.Started.IsZero() {
		rep = nil
	}
	return rep, err, true
}

// finishDaemonSync prints a pass the daemon ran, like an in-process sync.
func finishDaemonSync(rep *agent.PassReport, err error, asJSON bool) int {
	if err != nil {
		fmt.Fprintln(os.Stderr, "certagent sync (through the daemon):", err)
		if rep == nil {
			return exitFailed
		}
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if werr := enc.Encode(rep); werr != nil {
			return exitFailed
		}
	} else {
		printReport(os.Stdout, rep)
	}
	if err != nil || rep.Failed() {
		return exitFailed
	}
	return exitOK
}

// certsViaDaemon asks the running daemon for the PEM of its roots.
func certsViaDaemon() (pem []byte, err error, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pem, err = localapi.NewClient(platform.DefaultPaths().Socket).CertsPEM(ctx)
	if errors.Is(err, localapi.ErrNotRunning) {
		return nil, nil, false
	}
	return pem, err, true
}

// finishDaemonCerts prints the daemon's answer like cmdCerts does.
func finishDaemonCerts(pem []byte, err error) int {
	if err != nil {
		fmt.Fprintln(os.Stderr, "certagent certs (through the daemon):", err)
		return exitFailed
	}
	if len(pem) == 0 {
		fmt.Fprintln(os.Stderr, "certagent certs: no roots managed yet (run `certagent sync`)")
		return exitOK
	}
	_, _ = os.Stdout.Write(pem)
	return exitOK
}

// purgeViaDaemon has the running daemon stop its loop and purge, so its
// drift repair does not reinstall what is being removed.
func purgeViaDaemon() (rep *agent.PurgeReport, err error, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), daemonTimeout)
	defer cancel()
	rep, err = localapi.NewClient(platform.DefaultPaths().Socket).Purge(ctx)
	if errors.Is(err, localapi.ErrNotRunning) {
		return nil, nil, false
	}
	if rep == nil {
		rep = &agent.PurgeReport{}
	}
	return rep, err, true
}

// finishDaemonPurge prints the daemon's purge like cmdUninstall does.
func finishDaemonPurge(rep *agent.PurgeReport, err error) int {
	if !printPurge(rep, err, "certagent uninstall (through the daemon)") {
		return exitFailed
	}
	fmt.Printf("removed %d root(s) through the daemon; it stays idle until restarted\n", len(rep.Results))
	return exitOK
}
