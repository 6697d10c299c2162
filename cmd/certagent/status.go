package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/agent/localapi"
	"github.com/certagent/certagent/agent/status"
	"github.com/certagent/certagent/platform"
)

// cmdStatus is `certagent status [--json]`: the daemon's live status over
// the LocalAPI, or the last state it saved when it is not running. Exit 0
// healthy, 1 degraded, 2 daemon down or misconfigured.
func cmdStatus(args []string) int {
	fset := flag.NewFlagSet("status", flag.ContinueOnError)
	asJSON := fset.Bool("json", false, "print the full report as JSON (for fleet tools)")
	if err := fset.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep := gatherStatus(ctx, platform.DefaultPaths())
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

// offlineStatus builds the report from the config and the status file the
// daemon persisted, with the daemon marked down and why.
func offlineStatus(paths platform.Paths, reachErr error) *status.Report {
	in := status.Inputs{Daemon: status.Daemon{Running: false, Source: "state file", Service: string(serviceState()), Error: reachErr.Error()}}
	if !errors.Is(reachErr, localapi.ErrNotRunning) {
		in.Daemon.Source = "state file (the daemon answered with an error)"
	}
	snap := &agent.Snapshot{ConfigSource: agent.ConfigSource{File: paths.ConfigFile, Managed: paths.ManagedFile}}
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
