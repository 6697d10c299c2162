package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/controlplane/cli"
	"github.com/certagent/certagent/controlplane/storage/postgres/pgtest"
)

type gatewayRow struct {
	ID      string   `json:"id"`
	Live    bool     `json:"live"`
	Signing string   `json:"signing"`
	Loaded  []string `json:"loaded"`
}

// TestGatewayDeploysAndFollowsTheInUseRoot runs `certplane serve` with a
// deploy delay of an hour and `certplane gateway` on the same database: an
// activation completes only because the gateway loaded the root, and an
// in-use switch reaches the gateway.
func TestGatewayDeploysAndFollowsTheInUseRoot(t *testing.T) {
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "certplane.db")
	account := runCLI(t, "account", "create", "--db", db, "--data-dir", dir, "--name", "acme")
	startServer(t, dir, &offsetClock{}, "1h")

	list := func() []gatewayRow {
		var rows []gatewayRow
		out := runCLI(t, "gateway", "list", "--db", db, "--data-dir", dir, "--account", account, "--json")
		require.NoError(t, json.Unmarshal([]byte(out), &rows), out)
		return rows
	}
	assert.Empty(t, list())

	stop := startGatewayCLI(t, "--db", db, "--data-dir", dir, "--account", account, "--listen", "127.0.0.1:0", "--id", "edge-1")
	defer stop()
	require.Eventually(t, func() bool {
		rows := list()
		return len(rows) == 1 && rows[0].Live && rows[0].Signing != ""
	}, 30*time.Second, 50*time.Millisecond)
	first := list()[0].Signing

	id := runCLI(t, "cert", "generate", "--db", db, "--data-dir", dir, "--account", account)
	assert.Equal(t, "pending_deployment", runCLI(t, "cert", "activate", "--db", db, "--data-dir", dir, "--account", account, "--id", id))
	require.Eventually(t, func() bool {
		return strings.Contains(runCLI(t, "cert", "list", "--db", db, "--data-dir", dir, "--account", account), id+"  available")
	}, 30*time.Second, 100*time.Millisecond, "available long before the 1 h deploy delay: the gateway loaded it")
	rows := list()
	require.Len(t, rows, 1)
	assert.Len(t, rows[0].Loaded, 2)

	runCLI(t, "cert", "use", "--db", db, "--data-dir", dir, "--account", account, "--id", id)
	require.Eventually(t, func() bool {
		rows := list()
		return len(rows) == 1 && rows[0].Signing != first
	}, 30*time.Second, 50*time.Millisecond, "the switch reached the gateway")

	table := runCLI(t, "gateway", "list", "--db", db, "--data-dir", dir, "--account", account)
	assert.Contains(t, table, "edge-1")
	assert.Contains(t, table, "live")

	stop()
	assert.Empty(t, list(), "a stopped gateway removes its registration")
}

func TestGatewayCommandRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"gateway", "--data-dir", dir, "--account", "nope"}, 2},
		{[]string{"gateway", "--data-dir", dir, "--account", "0123456789abcdef0123456789abcdef", "--max-conns", "0"}, 2},
		{[]string{"gateway", "--data-dir", dir, "--account", "0123456789abcdef0123456789abcdef", "--upstream-ca", filepath.Join(dir, "missing.pem")}, 1},
		{[]string{"gateway", "--data-dir", dir, "--account", "0123456789abcdef0123456789abcdef", "--listen", "127.0.0.1:0"}, 1},
		{[]string{"gateway", "list", "--data-dir", dir, "--account", "0123456789abcdef0123456789abcdef"}, 1},
		{[]string{"gateway", "list", "--data-dir", dir}, 2},
	} {
		var out, errb bytes.Buffer
		code := cli.Main(context.Background(), tt.args, cli.Env{Stdout: &out, Stderr: &errb})
		assert.Equal(t, tt.code, code, "%v: %s", tt.args, errb.String())
		assert.Empty(t, out.String())
	}
}

// startGatewayCLI runs `certplane gateway` in-process until the returned
// stop is called (idempotent), which checks its exit code.
func startGatewayCLI(t *testing.T, args ...string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan int, 1)
	logs := &lockedBuffer{}
	go func() {
		done <- cli.Main(ctx, append([]string{"gateway"}, args...), cli.Env{Stdout: logs, Stderr: logs, Ready: func(a net.Addr) { ready <- a }})
	}()
	select {
	case <-ready:
	case code := <-done:
		cancel()
		t.Fatalf("gateway exited with %d: %s", code, logs.String())
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			assert.Equal(t, 0, <-done, "gateway exit code; logs:\n%s", logs.String())
		})
	}
}

// TestGatewaysOnPostgres runs a server and two gateways on one PostgreSQL
// database: an activation completes when both gateways loaded the root
// (the deploy delay is an hour), and an in-use switch reaches both.
func TestGatewaysOnPostgres(t *testing.T) {
	db := pgtest.DSN(t)
	dir := t.TempDir()
	account := runCLI(t, "account", "create", "--db", db, "--data-dir", dir, "--name", "acme")

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan int, 1)
	logs := &lockedBuffer{}
	go func() {
		done <- cli.Main(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--db", db, "--data-dir", dir, "--deploy-delay", "1h"},
			cli.Env{Stdout: logs, Stderr: logs, Ready: func(a net.Addr) { ready <- a }})
	}()
	select {
	case <-ready:
	case code := <-done:
		cancel()
		t.Fatalf("serve exited with %d: %s", code, logs.String())
	}
	defer func() {
		cancel()
		assert.Equal(t, 0, <-done, logs.String())
	}()

	list := func() []gatewayRow {
		var rows []gatewayRow
		out := runCLI(t, "gateway", "list", "--db", db, "--data-dir", dir, "--account", account, "--json")
		require.NoError(t, json.Unmarshal([]byte(out), &rows), out)
		return rows
	}
	for _, id := range []string{"edge-a", "edge-b"} {
		stop := startGatewayCLI(t, "--db", db, "--data-dir", dir, "--account", account, "--listen", "127.0.0.1:0", "--id", id)
		defer stop()
	}
	require.Eventually(t, func() bool {
		rows := list()
		return len(rows) == 2 && rows[0].Signing != "" && rows[1].Signing != ""
	}, 30*time.Second, 50*time.Millisecond)
	first := list()[0].Signing

	id := runCLI(t, "cert", "generate", "--db", db, "--data-dir", dir, "--account", account)
	runCLI(t, "cert", "activate", "--db", db, "--data-dir", dir, "--account", account, "--id", id)
	require.Eventually(t, func() bool {
		return strings.Contains(runCLI(t, "cert", "list", "--db", db, "--data-dir", dir, "--account", account), id+"  available")
	}, 30*time.Second, 100*time.Millisecond)
	for _, r := range list() {
		assert.Len(t, r.Loaded, 2, "%s loaded both roots before the root became available", r.ID)
	}
	runCLI(t, "cert", "use", "--db", db, "--data-dir", dir, "--account", account, "--id", id)
	require.Eventually(t, func() bool {
		rows := list()
		return len(rows) == 2 && rows[0].Signing != first && rows[1].Signing != first
	}, 30*time.Second, 20*time.Millisecond, "the switch reached both gateways")
}
