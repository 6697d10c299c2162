// Package cli is the certagent command line: the daemon (`run`), one-shot
// passes (`sync`, `uninstall --purge`), `status`, `service`, `mdm-profile`
// and `bugreport`. A command that can, asks the running daemon over the
// LocalAPI and otherwise works in-process. cmd/certagent only calls Main.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/mattn/go-isatty"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/agent/daemon"
	"github.com/certagent/certagent/internal/buildinfo"
)

// Exit codes, the same for every command.
const (
	exitOK = 0
	// exitFailed: something did not work (a target failed, the control
	// plane did not answer, a removal failed).
	exitFailed = 1
	// exitConfig: misconfigured (or, for status, the daemon is down).
	exitConfig = 2
)

// command is one subcommand.
type command struct {
	name    string
	args    string
	summary string
	run     func(args []string) int
}

// newFlagSet is the flag set of a command without usage text of its own:
// -h prints the command's line of the command table, then its flags.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		for _, c := range commands() {
			if c.name == name {
				fmt.Fprintf(fs.Output(), "usage: %s\n\n%s\n", strings.TrimSpace("certagent "+c.name+" "+c.args), c.summary)
			}
		}
		fs.PrintDefaults()
	}
	return fs
}

func commands() []command {
	return []command{
		{"run", "", "run the agent in the foreground (what the service manager starts)", cmdRunDaemon},
		{"sync", "[--dry-run] [--json]", "one reconcile pass now; --dry-run only prints the plan", cmdSync},
		{"status", "[--json]", "health, roots and stores; exit 0 healthy, 1 degraded, 2 down or misconfigured", cmdStatus},
		{"certs", "", "print the PEM of every root certagent manages", cmdCerts},
		{"service", "install|uninstall|start|stop|restart|status", "manage the system service", cmdService},
		{"uninstall", "--purge", "remove every root certagent installed, then its state", cmdUninstall},
		{"mdm-profile", "", "write a macOS configuration profile that trusts the roots", cmdMDMProfile},
		{"bugreport", "", "collect what support needs (no secrets)", cmdBugreport},
		{"version", "", "print the version", cmdVersion},
		{"help", "", "this help", func([]string) int { usage(os.Stdout); return exitOK }},
	}
}

// Main runs the command line args (without the program name) and returns
// the exit code.
func Main(args []string) int {
	if len(args) == 0 {
		usage(os.Stderr)
		return exitConfig
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		usage(os.Stdout)
		return exitOK
	case "-version", "--version":
		name = "version"
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(args[1:])
		}
	}
	fmt.Fprintf(os.Stderr, "certagent: unknown command %q (see `certagent help`)\n", name)
	return exitConfig
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `certagent keeps your organisation's HTTPS-inspection root CAs trusted on this
machine: it polls the control plane (Cloudflare Zero Trust or certplane) for the
account's certificates, installs every Available one into the OS and browser
trust stores, and removes the ones it installed once they are withdrawn or
expired, plus known-dead roots (Cloudflare's 2025-02-02 default root).

Usage: certagent <command> [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %-44s %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintf(w, `
Config: %s (CERTAGENT_CONFIG overrides the path).
Managed settings (MDM) win over the file, key by key. A minimal config:

  {
    "control_plane_url": "https://api.cloudflare.com/client/v4",
    "account_id":        "<32 hex characters>",
    "api_token_file":    "%s"
  }

Keys: control_plane_url, account_id, api_token or api_token_file (mode 0600),
poll_interval ("60s"), stores (default %s; also firefox-policy,
java, runtimes, bundle:PATH, dir:PATH), remove_retired (true), retired_fingerprints
(SHA-256), state_dir, log_level (info), ca_file / pin_sha256 (control-plane TLS).

Safety: only roots certagent installed are ever removed (its ledger in
state_dir records them), plus exact retired fingerprints. When the control
plane is unreachable or answers anything malformed, nothing is removed.

Exit codes: 0 ok, 1 something failed (see the output), 2 misconfigured.
Try: certagent sync --dry-run
`, defaultConfigPath(), defaultTokenPath(), strings.Join(agent.DefaultStores(runtime.GOOS), ", "))
}

func cmdVersion(args []string) int {
	fmt.Printf("certagent %s (%s, %s/%s)\n", buildinfo.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

// newLogger returns a one-shot command's root logger on stderr: the
// daemon's constructor (secrets redacted wherever they appear), JSON when
// stderr is not a terminal, text on one, every line kept (a single pass
// has no repeats worth folding).
func newLogger(level string, secrets ...string) hclog.Logger {
	tty := isatty.IsTerminal(os.Stderr.Fd()) || isatty.IsCygwinTerminal(os.Stderr.Fd())
	return daemon.NewLogger(daemon.LogOptions{Output: os.Stderr, JSON: !tty, Level: level, RepeatWindow: -1, Secrets: secrets})
}

// exitFor maps an error to an exit code.
func exitFor(err error) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, agent.ErrConfig) {
		return exitConfig
	}
	return exitFailed
}
