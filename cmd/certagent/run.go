package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/platform"
)

// cmdRun is `certagent run`: the reconcile loop in the foreground.
// SIGINT/SIGTERM stop it cleanly (the status file is saved); SIGHUP reloads
// the config and keeps the old one when the new one is invalid.
//
// This is the bare engine loop. The daemon (agent/daemon: LocalAPI, drift
// watcher, service manager) wraps the same agent.Agent; once it is in the
// tree `run` dispatches to it instead (cmdRunDaemon) and this file goes.
func cmdRun(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	level := fs.String("log-level", "", "trace, debug, info, warn or error (default: the config's log_level)")
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	paths := platform.DefaultPaths()
	cfg, err := agent.LoadConfig(paths, agent.LoadOptions{})
	if err != nil {
		newLogger("info").Error("cannot start: invalid configuration", "error", err)
		return exitConfig
	}
	lvl := cfg.LogLevel
	if *level != "" {
		lvl = *level
	}
	log := newLogger(lvl)
	a, err := agent.New(cfg, agent.Deps{Logger: log.Named("agent")})
	if err != nil {
		log.Error("cannot start", "error", err)
		return exitFor(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				next, err := agent.LoadConfig(paths, agent.LoadOptions{})
				if err != nil {
					log.Error("config reload rejected, keeping the running config", "error", err)
					continue
				}
				if err := a.Reload(next); err != nil {
					log.Error("config reload rejected, keeping the running config", "error", err)
					continue
				}
				if *level == "" {
					log.SetLevel(hclogLevel(next.LogLevel))
				}
			}
		}
	}()
	log.Info("certagent started", "config", cfg.Source.String(), "control_plane", cfg.ControlPlaneURL, "stores", cfg.Stores, "poll_interval", cfg.PollInterval.String())
	if err := a.Run(ctx); err != nil {
		log.Error("stopped", "error", err)
		return exitFailed
	}
	log.Info("certagent stopped")
	return exitOK
}
