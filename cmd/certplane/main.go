// Command certplane is the self-hostable control plane: Cloudflare's Zero
// Trust certificate API on embedded SQLite or PostgreSQL. The logic lives
// in controlplane/cli; this only wires signals and the exit code.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/certagent/certagent/controlplane/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
