// Command fleetsim measures certplane at fleet scale: it starts a real
// `certplane serve` process (SQLite or PostgreSQL) on loopback, runs N
// simulated devices against it, each a real agent.Agent (API client,
// policy, planner, ledger) on an in-memory trust store, and reports server
// requests/s, latency, CPU and RSS, bytes per poll, and convergence time
// from an activation until every device holds the new root, as Markdown
// tables and a PNG plot. It also compares the 304 poll throughput with a
// bare net/http handler (wrk). Every run is bounded in time and stops by
// itself.
//
//	make fleetsim    # bin/fleetsim; fleetsim is a Go module of its own
//	bin/fleetsim run   -agents 1000 -longpoll -out results/
//	bin/fleetsim bench -out results/
//	bin/fleetsim report -out results/
//
// The numbers in docs/performance.md come from it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

const usage = `usage:
  fleetsim run    [-agents N] [-longpoll] [-thin] [-db sqlite|postgres] [-poll 60s] [-window 60s] [-deploy-delay 1s] [-timeout 10m] -out DIR
  fleetsim bench  [-db sqlite|postgres] [-duration 5s] [-rounds 5] [-connections 64] [-threads 2] -out DIR
  fleetsim hold   [-db sqlite|postgres] [-agents 10000] -out DIR   server RSS with N held long-polls vs a bare server
  fleetsim checkin [-db sqlite|postgres] [-agents 10000] [-concurrency 32] [-sim-agents 100] [-sim-days 3] [-sim-step 30m] -out DIR
                   device check-ins: server CPU per check-in next to the list request, check-ins per agent per day
  fleetsim report -out DIR          tables (stdout and DIR/results.md) and DIR/convergence.png
  fleetsim baseline -listen ADDR    the bare net/http 304 server bench compares against

PostgreSQL runs use CERTAGENT_PG_DSN (scripts/pg-start.sh prints one) and a fresh schema each.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s fleetsim: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("fleetsim: no command")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	out := fs.String("out", "", "results directory")
	db := fs.String("db", "sqlite", "certplane database: sqlite or postgres")
	bin := fs.String("certplane", "", "certplane binary (default: build ./cmd/certplane)")
	workDir := fs.String("workdir", "", "where agents' state and the SQLite file live (default: /dev/shm if present, else the temp dir)")
	agents := fs.Int("agents", 1000, "simulated devices")
	longPoll := fs.Bool("longpoll", false, "agents hold a long-poll next to their interval polls")
	poll := fs.Duration("poll", 60*time.Second, "agents' poll interval (the product default is 60s)")
	window := fs.Duration("window", 60*time.Second, "steady-state measurement window")
	deployDelay := fs.Duration("deploy-delay", time.Second, "certplane --deploy-delay")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up a run after this long")
	duration := fs.Duration("duration", 5*time.Second, "bench: wrk duration per target and round")
	conns := fs.Int("connections", 64, "bench: wrk connections")
	threads := fs.Int("threads", 2, "bench: wrk threads")
	rounds := fs.Int("rounds", 5, "bench: alternating rounds per target")
	listen := fs.String("listen", "127.0.0.1:0", "baseline: address")
	pprofAddr := fs.String("pprof", "", "baseline: also serve /debug/pprof/ here")
	thin := fs.Bool("thin", false, "run: devices without an agent, each only long-polling (or polling) the list and noting when the root is available: the control plane's delivery without the agents' passes")
	cpuProfile := fs.String("cpuprofile", "", "run: write the fleet's own CPU profile of the convergence phase here")
	concurrency := fs.Int("concurrency", 32, "checkin: concurrent requests")
	simAgents := fs.Int("sim-agents", 100, "checkin: real agents run over simulated days (0: skip)")
	simDays := fs.Int("sim-days", 3, "checkin: simulated days")
	simStep := fs.Duration("sim-step", 30*time.Minute, "checkin: simulated time between passes")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if args[0] == "baseline" {
		return serveBaseline(ctx, *listen, *pprofAddr)
	}
	if *out == "" {
		return errors.New("fleetsim: -out DIR is required")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if *workDir == "" {
		*workDir = os.TempDir()
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			// Thousands of agents' ledgers: keep their fsyncs off the disk
			// other engineers' builds are using.
			*workDir = "/dev/shm"
		}
	}
	if args[0] == "report" {
		return report(*out)
	}
	if lim, err := raiseFileLimit(); err == nil {
		logf("open files limit %d", lim)
	}
	if *bin == "" && (args[0] == "run" || args[0] == "bench" || args[0] == "hold" || args[0] == "checkin") {
		dir, err := os.MkdirTemp("", "fleetsim-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		logf("building certplane")
		if *bin, err = buildCertplane(ctx, dir); err != nil {
			return err
		}
	}
	stamp := time.Now().UTC().Format("20060102T150405")
	switch args[0] {
	case "checkin":
		o := checkinOptions{Agents: *agents, Concurrency: max(1, *concurrency), DB: *db, Certplane: *bin, WorkDir: *workDir,
			PGDSN: os.Getenv("CERTAGENT_PG_DSN"), SimAgents: *simAgents, SimDays: *simDays, SimStep: *simStep}
		res, err := checkinBench(ctx, o, logf)
		if res != nil {
			if werr := writeJSON(filepath.Join(*out, "checkin-"+stamp+"-"+*db+".json"), res); werr != nil {
				return werr
			}
		}
		return err
	case "run":
		o := runOptions{Agents: *agents, DB: *db, LongPoll: *longPoll, Poll: *poll, DeployDelay: *deployDelay,
			Window: *window, Timeout: *timeout, Certplane: *bin, WorkDir: *workDir, PGDSN: os.Getenv("CERTAGENT_PG_DSN"), CPUProfile: *cpuProfile, Thin: *thin}
		if o.Agents < 1 {
			return errors.New("fleetsim: -agents must be at least 1")
		}
		res, err := simulate(ctx, o, logf)
		if res != nil {
			if werr := writeJSON(filepath.Join(*out, "run-"+stamp+"-"+o.name()+".json"), res); werr != nil {
				return werr
			}
		}
		return err
	case "hold":
		o := benchOptions{DB: *db, Certplane: *bin, WorkDir: *workDir, PGDSN: os.Getenv("CERTAGENT_PG_DSN")}
		res, err := holdBench(ctx, o, *agents, *out, logf)
		if err != nil {
			return err
		}
		logf("hold: certplane %.0f MiB (%.1f KiB per held request; %.0f MiB 10 s later), baseline %.0f MiB (%.1f KiB; %.0f MiB)",
			res.Certplane.HeldRSS, res.Certplane.PerHeld, res.Certplane.SettledRSS, res.Baseline.HeldRSS, res.Baseline.PerHeld, res.Baseline.SettledRSS)
		return writeJSON(filepath.Join(*out, "hold-"+stamp+"-"+*db+".json"), res)
	case "bench":
		o := benchOptions{DB: *db, Duration: *duration, Connections: *conns, Threads: *threads, Rounds: max(1, *rounds), Certplane: *bin,
			WorkDir: *workDir, PGDSN: os.Getenv("CERTAGENT_PG_DSN")}
		res, err := bench304(ctx, o, logf)
		if err != nil {
			return err
		}
		logf("bench: certplane %.0f req/s, baseline %.0f req/s, ratio %.2f", res.Certplane.RPS, res.Baseline.RPS, res.Ratio)
		return writeJSON(filepath.Join(*out, "bench-"+stamp+"-"+*db+".json"), res)
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("fleetsim: unknown command %q", args[0])
}

func report(dir string) error {
	res, err := loadResults(dir)
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "results.md"))
	if err != nil {
		return err
	}
	defer f.Close()
	writeTables(f, res)
	writeTables(os.Stdout, res)
	if len(res.runs) > 0 {
		if err := plotConvergence(filepath.Join(dir, "convergence.png"), res.runs); err != nil {
			return fmt.Errorf("fleetsim: plot: %w", err)
		}
	}
	return f.Close()
}
