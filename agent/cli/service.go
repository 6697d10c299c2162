package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/agent/daemon"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust/stores"
)

const serviceUsage = `usage: certagent service install|uninstall|start|stop|restart|status

  install    install (or update) the system service and start it; safe to re-run
             (a package upgrade does): an existing service is updated in place
  uninstall  stop the service and remove it; succeeds when it is not installed
  start, stop, restart
  status     print the service manager's view (exit 0 running, 3 not running, 4 not installed)
`

// cmdService manages the system service.
func cmdService(args []string) int {
	fs := flag.NewFlagSet("service", flag.ContinueOnError)
	noStart := fs.Bool("no-start", false, "install: do not start the service (image builds, no init running)")
	fs.Usage = func() { fmt.Fprint(os.Stderr, serviceUsage); fs.PrintDefaults() }
	if len(args) == 0 {
		fs.Usage()
		return 2
	}
	action := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	paths := platform.DefaultPaths()
	svc, err := platform.NewService(serviceOptions(paths), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "certagent service:", err)
		return 1
	}
	if action != "status" && !isAdmin() {
		fmt.Fprintf(os.Stderr, "certagent service %s: needs root (or Administrator)\n", action)
		return 1
	}
	switch action {
	case "install":
		// systemd ignores a ReadWritePaths= directory that does not exist,
		// and the daemon could then never create it: make the directories
		// the configured stores create on their first write now (empty
		// ones change nothing).
		for _, d := range createDirs(paths) {
			if err := os.MkdirAll(d, 0o755); err != nil {
				fmt.Fprintln(os.Stderr, "certagent service install:", err)
				return 1
			}
		}
		if err := svc.Install(); err != nil {
			fmt.Fprintln(os.Stderr, "certagent service install:", err)
			return 1
		}
		fmt.Printf("certagent: service installed (%s)\n", svc.Platform())
		for _, w := range svc.Warnings() {
			fmt.Fprintln(os.Stderr, "certagent service install: warning:", w)
		}
		if *noStart {
			return 0
		}
		if st, _ := svc.State(); st != platform.ServiceRunning {
			if err := svc.Start(); err != nil {
				fmt.Fprintln(os.Stderr, "certagent service install: installed, but start failed:", err)
				return 1
			}
		}
		fmt.Println("certagent: service running")
		return 0
	case "uninstall":
		if err := svc.Uninstall(); err != nil {
			fmt.Fprintln(os.Stderr, "certagent service uninstall:", err)
			return 1
		}
		fmt.Println("certagent: service removed")
		return 0
	case "start", "stop", "restart":
		ctl := map[string]func() error{"start": svc.Start, "stop": svc.Stop, "restart": svc.Restart}[action]
		if err := ctl(); err != nil {
			fmt.Fprintf(os.Stderr, "certagent service %s: %v\n", action, err)
			return 1
		}
		return 0
	case "status":
		st, err := svc.State()
		if err != nil {
			fmt.Fprintln(os.Stderr, "certagent service status:", err)
		}
		fmt.Printf("certagent service (%s): %s\n", svc.Platform(), st)
		switch st {
		case platform.ServiceRunning:
			return 0
		case platform.ServiceNotInstalled:
			return 4
		default:
			return 3
		}
	default:
		fs.Usage()
		return 2
	}
}

// serviceOptions are the service's settings: run the daemon, with write
// access to the state dir and to what the stores declare they write.
func serviceOptions(paths platform.Paths) platform.ServiceOptions {
	o := platform.ServiceOptions{Arguments: []string{"run"}}
	// Local: a service installed before its token is provisioned still
	// gets the right writable paths.
	var configured []string
	if cfg, err := agent.LoadConfig(paths, agent.LoadOptions{Local: true}); err == nil {
		o.ReadWritePaths = append(o.ReadWritePaths, cfg.StateDir)
		configured = cfg.Stores
	}
	write, _ := stores.SandboxPaths(configured, stores.Env{})
	o.ReadWritePaths = append(o.ReadWritePaths, write...)
	return o
}

// createDirs are the directories the configured stores create on their
// first write.
func createDirs(paths platform.Paths) []string {
	cfg, err := agent.LoadConfig(paths, agent.LoadOptions{Local: true})
	if err != nil {
		return nil
	}
	_, create := stores.SandboxPaths(cfg.Stores, stores.Env{})
	return create
}

// daemonGCPercent is the daemon's GOGC unless the environment sets one.
const daemonGCPercent = 25

// cmdRunDaemon is `certagent run`: the daemon in the foreground, under the
// service manager or in a terminal. Logs are JSON lines under a service
// manager and text on a terminal.
func cmdRunDaemon(args []string) int {
	fs := newFlagSet("run")
	level := fs.String("log-level", "", "trace, debug, info, warn or error (default: the config's log_level, else info)")
	cpuProfile := fs.String("cpuprofile", "", "write a Go CPU profile of the daemon to this file until it stops (scripts/agent-quiet.sh)")
	memProfile := fs.String("memprofile", "", "write a Go heap profile of the running daemon to this file (and its memory figures to FILE.txt) every 30 s (scripts/agent-quiet.sh)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if os.Getenv("GOGC") == "" {
		// The daemon at rest holds little live data; the default GOGC lets
		// the heap grow to twice that between collections and keeps it.
		// 25 keeps its RSS ~1.6 MiB lower at no CPU cost the quiet-pass
		// measurement could see (docs/performance.md §8). GOGC in the
		// environment still decides.
		debug.SetGCPercent(daemonGCPercent)
	}
	if *memProfile != "" {
		stop, err := startMemProfile(*memProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "certagent:", err)
			return 2
		}
		defer stop()
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "certagent:", err)
			return 2
		}
		defer stop()
	}
	paths := platform.DefaultPaths()
	interactive := platform.Interactive()
	lvl := *level
	var secrets []string
	if cfg, err := agent.LoadConfig(paths, agent.LoadOptions{Local: true}); err == nil {
		if lvl == "" {
			lvl = cfg.LogLevel
		}
		secrets = append(secrets, cfg.APIToken)
	}
	var out io.Writer = os.Stderr
	if !interactive && runtime.GOOS != "linux" {
		// journald keeps a Linux service's stderr; the Windows service
		// manager discards it and launchd's files never rotate, so there
		// the daemon writes its own rotated file (bugreport collects it).
		if lf, err := daemon.OpenLogFile(paths.LogDir); err == nil {
			defer lf.Close()
			out = lf
		}
	}
	log := daemon.NewLogger(daemon.LogOptions{Output: out, JSON: !interactive, Level: lvl, Secrets: secrets})
	state := "running"
	if interactive {
		state = "foreground"
	}
	run := func(ctx context.Context) error {
		return daemon.Run(ctx, daemon.Options{Paths: paths, Logger: log, ServiceState: state})
	}
	opts := serviceOptions(paths)
	if runtime.GOOS == "windows" {
		opts.OnFailure = func(err error) {
			log.Error("daemon failed; exiting so the service manager restarts it", "error", err)
			os.Exit(exitFailed)
		}
	}
	svc, err := platform.NewService(opts, run)
	if err != nil {
		log.Error("cannot set up the service", "error", err)
		return 1
	}
	if err := svc.Run(); err != nil {
		if errors.Is(err, platform.ErrDaemonRunning) {
			log.Error("another certagent daemon is running", "socket", paths.Socket)
		} else {
			log.Error("daemon failed", "error", err)
		}
		return 1
	}
	return 0
}

// isAdmin reports whether we may manage the service.
func isAdmin() bool {
	if runtime.GOOS == "windows" {
		return true // the service manager itself refuses non-admins
	}
	return os.Geteuid() == 0
}
