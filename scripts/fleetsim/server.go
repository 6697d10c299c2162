package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certagent/certagent/api"
)

// server is a real `certplane serve` child process on loopback.
type server struct {
	cmd     *exec.Cmd
	bin     string
	db      string
	dataDir string
	// URL is the API base, http://127.0.0.1:PORT/client/v4.
	URL string
	// Addr is host:port.
	Addr string
	// Pprof is where the server serves /debug/pprof/ (certplane --pprof).
	Pprof string

	mu       sync.Mutex
	stderr   bytes.Buffer // last output, for error messages; guarded by mu
	done     chan error
	stopOnce sync.Once
}

// buildCertplane compiles the product's ./cmd/certplane into dir. It runs
// inside fleetsim's source tree (`go run` from scripts/fleetsim) or the
// product's: fleetsim's module replaces the product's with its parent
// directory, so go list -m finds the product from either.
func buildCertplane(ctx context.Context, dir string) (string, error) {
	root, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/certagent/certagent").Output()
	if err != nil {
		return "", fmt.Errorf("fleetsim: find the certagent module (run inside the source tree, or pass -certplane): %w", err)
	}
	out := filepath.Join(dir, "certplane")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "./cmd/certplane")
	cmd.Dir = strings.TrimSpace(string(root))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("fleetsim: go build ./cmd/certplane: %w: %s", err, b)
	}
	return out, nil
}

// freshDB returns the --db value for a run: a new SQLite file in dataDir,
// or a new schema on the PostgreSQL database named by pgDSN (dropped by
// the returned cleanup).
func freshDB(ctx context.Context, kind, dataDir, pgDSN string) (db string, cleanup func(), err error) {
	switch kind {
	case "sqlite":
		return "sqlite:" + filepath.Join(dataDir, "certplane.db"), func() {}, nil
	case "postgres":
		if pgDSN == "" {
			return "", nil, errors.New("fleetsim: -db postgres needs CERTAGENT_PG_DSN (export CERTAGENT_PG_DSN=$(scripts/pg-start.sh))")
		}
		conn, err := pgx.Connect(ctx, pgDSN)
		if err != nil {
			return "", nil, fmt.Errorf("fleetsim: connect to PostgreSQL: %w", err)
		}
		defer conn.Close(ctx)
		schema := fmt.Sprintf("fleetsim_%d", time.Now().UnixNano())
		if _, err := conn.Exec(ctx, "create schema "+schema); err != nil {
			return "", nil, fmt.Errorf("fleetsim: create schema: %w", err)
		}
		u, err := url.Parse(pgDSN)
		if err != nil {
			return "", nil, fmt.Errorf("fleetsim: CERTAGENT_PG_DSN: %w", err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String(), func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if c, err := pgx.Connect(ctx, pgDSN); err == nil {
				_, _ = c.Exec(ctx, "drop schema "+schema+" cascade")
				_ = c.Close(ctx)
			}
		}, nil
	}
	return "", nil, fmt.Errorf("fleetsim: -db %q: want sqlite or postgres", kind)
}

// cli runs a certplane admin command against the run's database and
// returns its trimmed stdout.
func (s *server) cli(ctx context.Context, args ...string) (string, error) {
	full := append(args, "--db", s.db, "--data-dir", s.dataDir)
	cmd := exec.CommandContext(ctx, s.bin, full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("fleetsim: certplane %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return strings.TrimSpace(out.String()), nil
}

// freePort asks the kernel for an unused loopback port.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startServer starts `certplane serve` and waits until it accepts
// connections. Request logging is off (--log-level warn): it would
// measure the log pipe as much as the server.
func startServer(ctx context.Context, bin, db, dataDir string, deployDelay time.Duration) (*server, error) {
	addr, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("fleetsim: pick a port: %w", err)
	}
	prof, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("fleetsim: pick a port: %w", err)
	}
	s := &server{bin: bin, db: db, dataDir: dataDir, Addr: addr, URL: "http://" + addr + "/client/v4", Pprof: prof, done: make(chan error, 1)}
	s.cmd = exec.Command(bin, "serve", "--listen", addr, "--db", db, "--data-dir", dataDir,
		"--deploy-delay", deployDelay.String(), "--log-level", "warn", "--pprof", prof)
	s.cmd.Stdout = &lockedWriter{s: s}
	s.cmd.Stderr = &lockedWriter{s: s}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("fleetsim: start certplane: %w", err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return s, nil
		}
		select {
		case err := <-s.done:
			s.stopOnce.Do(func() {}) // nothing left to stop
			return nil, fmt.Errorf("fleetsim: certplane exited at start: %v: %s", err, s.output())
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("fleetsim: certplane did not listen on %s within 30s: %s", addr, s.output())
		}
	}
}

// Pid returns the server's process id.
func (s *server) Pid() int { return s.cmd.Process.Pid }

// Stop ends the server with SIGTERM (graceful), then SIGKILL after 20 s.
// Safe to call more than once.
func (s *server) Stop() {
	s.stopOnce.Do(func() {
		if s.cmd.Process == nil {
			return
		}
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
}

func (s *server) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// lockedWriter keeps the last 64 KiB of the server's output.
type lockedWriter struct{ s *server }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	w.s.stderr.Write(p)
	if n := w.s.stderr.Len(); n > 64<<10 {
		w.s.stderr.Next(n - 64<<10)
	}
	return len(p), nil
}

// plane is what every fleetsim command starts from: a certplane process on
// a fresh database in its own work directory, with one account and a read
// token. Close stops and removes everything.
type plane struct {
	*server
	// Work is the plane's work directory; callers may keep their own
	// files there (agents' state) until Close.
	Work      string
	Account   string
	ReadToken string
	// ETag is the account's list ETag right after start.
	ETag    string
	closers []func()
}

// startPlane starts a plane named name (work directory prefix and account
// name) on database kind ("sqlite" or "postgres").
func startPlane(ctx context.Context, workDir, name, kind, pgDSN, bin string, deployDelay time.Duration) (*plane, error) {
	p := &plane{}
	fail := func(err error) (*plane, error) {
		p.Close()
		return nil, err
	}
	work, err := os.MkdirTemp(workDir, "fleetsim-"+name+"-")
	if err != nil {
		return nil, err
	}
	p.Work = work
	p.closers = append(p.closers, func() { os.RemoveAll(work) })
	dataDir := filepath.Join(work, "plane")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fail(err)
	}
	db, dropDB, err := freshDB(ctx, kind, dataDir, pgDSN)
	if err != nil {
		return fail(err)
	}
	p.closers = append(p.closers, dropDB)
	p.server, err = startServer(ctx, bin, db, dataDir, deployDelay)
	if err != nil {
		return fail(err)
	}
	p.closers = append(p.closers, p.server.Stop)
	if p.Account, err = p.cli(ctx, "account", "create", "--name", name); err != nil {
		return fail(err)
	}
	if p.ReadToken, err = p.cli(ctx, "token", "create", "--account", p.Account, "--scope", "read"); err != nil {
		return fail(err)
	}
	cl, err := api.NewClient(p.URL, p.Account, p.ReadToken)
	if err != nil {
		return fail(err)
	}
	first, err := cl.ListIfChanged(ctx, "", 0)
	if err != nil {
		return fail(err)
	}
	p.ETag = first.ETag
	return p, nil
}

// Close stops the server, drops the database and removes the work
// directory, in that order.
func (p *plane) Close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
	p.closers = nil
}

// baseline is the bare net/http 304 server, run as its own process (this
// binary's "baseline" command) so its CPU and memory are measured the same
// way as certplane's.
type baseline struct {
	cmd  *exec.Cmd
	Addr string
	// Pprof is where it serves /debug/pprof/.
	Pprof string
	Pid   int
}

func startBaseline(ctx context.Context) (*baseline, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	prof, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "baseline", "-listen", addr, "-pprof", prof)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("fleetsim: start baseline: %w", err)
	}
	b := &baseline{cmd: cmd, Addr: addr, Pprof: prof, Pid: cmd.Process.Pid}
	if err := waitListening(ctx, addr); err != nil {
		b.Stop()
		return nil, err
	}
	return b, nil
}

// Stop kills the baseline and reaps it.
func (b *baseline) Stop() {
	_ = b.cmd.Process.Kill()
	_ = b.cmd.Wait()
}
