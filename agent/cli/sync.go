package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/agent/status"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
)

func defaultConfigPath() string { return platform.DefaultPaths().ConfigFile }

func defaultTokenPath() string {
	if runtime.GOOS == "windows" {
		return `C:\ProgramData\certagent\token`
	}
	return "/etc/certagent/token"
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// cmdSync runs one pass and prints what it did (or, with --dry-run, what it
// would do).
func cmdSync(args []string) int {
	fs := flag.NewFlagSet("sync", flag.ContinueOnError)
	dry := fs.Bool("dry-run", false, "plan only: print what would change, change nothing, write nothing")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	verbose := fs.Bool("verbose", false, "also log what happens (at the config's log_level) to stderr")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: certagent sync [--dry-run] [--json]\n\nOne reconcile pass now: poll the control plane, install what is missing,\nremove what certagent installed that is no longer available.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	if rep, err, ok := syncViaDaemon(*dry); ok {
		return finishDaemonSync(rep, err, *asJSON)
	}
	cfg, err := agent.LoadConfig(platform.DefaultPaths(), agent.LoadOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "certagent sync:", err)
		return exitConfig
	}
	log := newLogger(cfg.LogLevel, cfg.APIToken)
	if !*verbose {
		// The report says everything the log would, per target.
		log.SetLevel(hclog.Off)
	}
	a, err := agent.New(cfg, agent.Deps{Logger: log.Named("agent")})
	if err != nil {
		fmt.Fprintln(os.Stderr, "certagent sync:", err)
		return exitFor(err)
	}
	ctx, cancel := signalContext()
	defer cancel()
	rep, err := a.SyncOnce(ctx, *dry)
	if err != nil {
		fmt.Fprintln(os.Stderr, "certagent sync:", err)
		if rep == nil {
			return exitFor(err)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(os.Stderr, "certagent sync:", err)
			return exitFailed
		}
	} else {
		printReport(os.Stdout, rep)
	}
	if !*dry {
		// The report is out; now let the check-in finish (it never
		// changes the exit code).
		a.Close()
	}
	switch {
	case err != nil:
		return exitFor(err)
	case rep.Failed():
		return exitFailed
	}
	return exitOK
}

// printReport writes rep as text. Targets, reasons and tool output are
// other people's strings (a user's profile path, a certificate subject):
// they reach the terminal through status.Printable.
func printReport(w io.Writer, rep *agent.PassReport) {
	var b strings.Builder
	writeReport(&b, rep)
	io.WriteString(w, status.Printable(b.String()))
}

func writeReport(w io.Writer, rep *agent.PassReport) {
	f := rep.Fetch
	switch f.Status {
	case "ok", "not_modified":
		fmt.Fprintf(w, "control plane: %s\n", strings.ReplaceAll(f.Status, "_", " "))
	default:
		fmt.Fprintf(w, "control plane: %s: %s\n", f.Status, f.Error)
		fmt.Fprintln(w, "  nothing is removed until the control plane gives a valid answer (fail static)")
	}
	fmt.Fprintf(w, "desired roots: %d\n", len(rep.Desired))
	for _, d := range rep.Desired {
		inUse := ""
		if d.InUse {
			inUse = "  (in use)"
		}
		fmt.Fprintf(w, "  %s  %s  expires %s%s\n", d.FP.Short(), d.Subject, d.NotAfter.Format("2006-01-02"), inUse)
	}
	if len(rep.Rejected) > 0 {
		fmt.Fprintf(w, "rejected: %d (never installed)\n", len(rep.Rejected))
		for _, r := range rep.Rejected {
			fmt.Fprintf(w, "  %s  %s: %s\n", r.FP.Short(), r.ID, r.Reason)
		}
	}
	if len(rep.Withheld) > 0 {
		fmt.Fprintf(w, "not deployed: %d\n", len(rep.Withheld))
		for _, c := range rep.Withheld {
			fmt.Fprintf(w, "  %s  %s  %s\n", c.FP.Short(), c.Subject, c.BindingStatus)
		}
	}
	verb := "changes"
	if rep.DryRun {
		verb = "planned changes (dry run: nothing was changed)"
	}
	fmt.Fprintf(w, "%s: %d\n", verb, rep.Changes)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	counts := map[string]int{}
	for _, r := range rep.Results {
		op := string(r.Op)
		if op == "" {
			op = "-"
		}
		if r.Retired {
			op += " (retired)"
		}
		detail := r.Reason
		if r.Error != "" {
			detail = r.Error
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", r.Status, op, r.FP.Short(), r.Store, r.Target, detail)
		counts[string(r.Status)]++
	}
	tw.Flush()
	fmt.Fprintf(w, "summary: %d ok, %d skipped, %d failed", counts[string(trust.StatusOK)], counts[string(trust.StatusSkipped)], counts[string(trust.StatusFailed)])
	if rep.DryRun {
		fmt.Fprintf(w, ", %d planned", counts[string(agent.StatusPlanned)])
	}
	fmt.Fprintln(w)
}

// cmdCerts prints the PEM of every root in the ledger, like `warp-cli certs`.
func cmdCerts(args []string) int {
	fs := newFlagSet("certs")
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	if pem, err, ok := certsViaDaemon(); ok {
		return finishDaemonCerts(pem, err)
	}
	cfg, err := agent.LoadConfig(platform.DefaultPaths(), agent.LoadOptions{Local: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "certagent certs:", err)
		return exitConfig
	}
	l, err := agent.LoadLedger(cfg.LedgerPath())
	if err != nil {
		fmt.Fprintln(os.Stderr, "certagent certs:", err)
		return exitFailed
	}
	managed := l.Managed()
	if len(managed) == 0 {
		fmt.Fprintln(os.Stderr, "certagent certs: no roots managed yet (run `certagent sync`)")
		return exitOK
	}
	for _, c := range managed {
		fmt.Print(c.PEM)
	}
	return exitOK
}

// cmdUninstall removes everything certagent installed. It must work in a
// package's pre-remove script: no control plane, and a config that may be
// half gone.
func cmdUninstall(args []string) int {
	fs := newFlagSet("uninstall")
	purge := fs.Bool("purge", false, "remove every root certagent installed from every store, then its ledger and status")
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	if !*purge {
		fmt.Fprintln(os.Stderr, "usage: certagent uninstall --purge\n\n--purge removes every root certagent installed (and only those), then its state.\nTo remove the service itself: certagent service uninstall")
		return exitConfig
	}
	if rep, err, ok := purgeViaDaemon(); ok {
		return finishDaemonPurge(rep, err)
	}
	paths := platform.DefaultPaths()
	cfg, err := agent.LoadConfig(paths, agent.LoadOptions{Local: true})
	if err != nil {
		// The ledger's location is all purge needs; a broken config must
		// not block a package removal.
		dir := agent.StateDirHint(paths)
		fmt.Fprintf(os.Stderr, "certagent uninstall: %v\ncertagent uninstall: purging with the state dir %s\n", err, dir)
		cfg = &agent.Config{StateDir: dir}
	}
	log := newLogger("warn", cfg.APIToken)
	ctx, cancel := signalContext()
	defer cancel()
	rep, err := agent.Purge(ctx, cfg, agent.Deps{Logger: log.Named("agent")})
	if !printPurge(rep, err, "certagent uninstall") {
		return exitFailed
	}
	fmt.Printf("removed %d root(s); state removed from %s\n", len(rep.Results), cfg.StateDir)
	return exitOK
}

// printPurge prints one line per removal and, when the purge failed, the
// error and every root still installed. It reports whether the purge
// succeeded.
func printPurge(rep *agent.PurgeReport, err error, who string) bool {
	for _, r := range rep.Results {
		detail := r.Reason
		if r.Error != "" {
			detail = r.Error
		}
		fmt.Print(status.Printable(fmt.Sprintf("%-8s %s %s %s %s %s\n", r.Status, r.Op, r.FP.Short(), r.Store, r.Target, detail)))
	}
	if err == nil {
		return true
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", who, err)
	for _, e := range rep.Remaining {
		fmt.Fprint(os.Stderr, status.Printable(fmt.Sprintf("  still installed: %s %s %s (%s)\n", e.FP.Short(), e.Store, e.Target, e.Subject)))
	}
	return false
}
