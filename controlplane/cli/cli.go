// Package cli is the certplane command line: the server (`serve`) and the
// admin shortcuts that work directly on the database (`account`, `token`,
// `cert`). cmd/certplane only wires process concerns (signals, exit code)
// to Main.
//
// Output is meant for scripts: a command that creates something prints
// only its id (or the token) on stdout; --json prints the full object.
// Diagnostics and logs go to stderr.
package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/mattn/go-isatty"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/ca"
	"github.com/certagent/certagent/controlplane/dashboard"
	"github.com/certagent/certagent/controlplane/longpoll"
	"github.com/certagent/certagent/controlplane/seal"
	"github.com/certagent/certagent/controlplane/storage"
	"github.com/certagent/certagent/controlplane/storage/postgres"
	"github.com/certagent/certagent/controlplane/storage/sqlite"
	"github.com/certagent/certagent/internal/buildinfo"
)

// Env is the process environment Main works in; tests fill it in.
type Env struct {
	Stdout, Stderr io.Writer
	// Getenv reads environment variables; nil means os.Getenv.
	Getenv func(string) string
	// Ready, if set, is called by serve with the bound address once it
	// accepts connections (tests listen on port 0).
	Ready func(addr net.Addr)
	// Now is the clock for the service; nil means time.Now.
	Now func() time.Time
}

// errUsage marks errors that should print the command's usage.
var errUsage = errors.New("usage")

const usage = `certplane: a self-hosted, Cloudflare-compatible control plane for Zero Trust
inspection root CAs (the API of api.cloudflare.com/client/v4, accounts/*/gateway/certificates).

Usage:
  certplane serve   [--listen 127.0.0.1:8080] [--db sqlite:PATH|postgres://…] [--data-dir D]
                    [--tls-cert F --tls-key F] [--deploy-delay 2s] [--key-type ecdsa-p256|rsa-2048|rsa-3072]
  certplane account create --name NAME [--db …] [--json]        prints the new 32-hex account id
  certplane account set --account ID [--min-readiness 0.95] [--device-active-days 7] [--json]
                                                                the readiness guard's settings
  certplane token create --account ID --scope read|write|device [--db …] [--json]
                                                                prints the token (shown only once)
  certplane token list   --account ID [--json]                  id, scope, created, revoked (never the secret)
  certplane token revoke --account ID --id TOKEN_ID|TOKEN [--json]
                                                                the token fails with 401 from the next request on
  certplane cert list       --account ID [--json]
  certplane cert generate   --account ID [--days 1825] [--key-type T] [--json]   prints the certificate id
  certplane cert activate   --account ID --id CERT [--json]
  certplane cert deactivate --account ID --id CERT [--json]
  certplane cert use        --account ID --id CERT|none [--force] [--json]
                            refused while fewer active devices trust CERT than min_readiness
  certplane cert readiness  --account ID --id CERT [--json]      devices that trust it, and those that do not
  certplane cert delete     --account ID --id CERT [--json]
  certplane cert download   --account ID --id CERT [--format pem|crt] [--out FILE]
  certplane gateway --account ID [--listen 127.0.0.1:3128] [--upstream-ca FILE] [--no-inspect HOST,…] [--id ID]
                                                                the inspection gateway: a forward proxy that signs
                                                                inspected TLS with the account's in-use root
  certplane gateway list --account ID [--json]                 registered gateways, last seen, loaded roots
  certplane devices list    --account ID [--stale true|false] [--page N] [--per-page N] [--json]
  certplane devices show    --account ID --id DEVICE [--json]
  certplane devices delete  --account ID --id DEVICE [--json]   its next check-in registers it afresh
  certplane version

Every command takes --db and --data-dir. The default data directory is
$XDG_DATA_HOME/certplane, else /var/lib/certplane; the default database is
sqlite:<data-dir>/certplane.db. Private keys are sealed with the key in
<data-dir>/seal.key (created 0600 on first use) or CERTPLANE_SEAL_KEY (base64).
The cert commands work on the database directly; a running server's deployer
completes their activations and deactivations.

Example: a server and an agent token in four lines
  certplane serve --db sqlite:/tmp/cp/certplane.db --data-dir /tmp/cp &
  ACCOUNT=$(certplane account create --db sqlite:/tmp/cp/certplane.db --data-dir /tmp/cp --name acme)
  TOKEN=$(certplane token create --db sqlite:/tmp/cp/certplane.db --account "$ACCOUNT" --scope device)
  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/client/v4/accounts/$ACCOUNT/gateway/certificates

The dashboard is on the same listener: open http://127.0.0.1:8080/dashboard/
and log in with a write token (full control) or a read token (read-only).
`

// Main runs certplane with args (without the program name) and returns the
// exit code: 0 success, 1 failure, 2 usage error.
func Main(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	err := run(ctx, args, env)
	var fe *flagError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &fe):
		// The command's own usage, once; not the whole help as well.
		fmt.Fprintf(env.Stderr, "%v\n\n", fe)
		fe.usage()
		return 2
	case errors.Is(err, errUsage):
		fmt.Fprintf(env.Stderr, "certplane: %v\n\n%s", err, usage)
		return 2
	default:
		fmt.Fprintf(env.Stderr, "certplane: %v\n", err)
		return 1
	}
}

func run(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command", errUsage)
	}
	if len(args) == 2 && isHelp(args[1]) {
		switch args[0] {
		case "account", "devices", "token", "cert":
			// A group has no flags of its own: `cert --help` is a question.
			fmt.Fprint(env.Stdout, usage)
			return nil
		}
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(env.Stdout, usage)
		return nil
	case "version", "--version":
		fmt.Fprintln(env.Stdout, "certplane", buildinfo.Version)
		return nil
	case "serve":
		return serve(ctx, args[1:], env)
	case "account":
		if len(args) >= 2 && args[1] == "set" {
			return accountSet(ctx, args[2:], env)
		}
		if len(args) < 2 || args[1] != "create" {
			return fmt.Errorf("%w: want `account create|set`", errUsage)
		}
		return accountCreate(ctx, args[2:], env)
	case "devices":
		if len(args) < 2 {
			return fmt.Errorf("%w: want `devices list|show|delete`", errUsage)
		}
		return devicesCommand(ctx, args[1], args[2:], env)
	case "token":
		if len(args) < 2 {
			return fmt.Errorf("%w: want `token create|list|revoke`", errUsage)
		}
		switch args[1] {
		case "create":
			return tokenCreate(ctx, args[2:], env)
		case "list", "revoke":
			return tokenAdmin(ctx, args[1], args[2:], env)
		}
		return fmt.Errorf("%w: unknown token command %q", errUsage, args[1])
	case "gateway":
		return gatewayCommand(ctx, args[1:], env)
	case "cert":
		if len(args) < 2 {
			return fmt.Errorf("%w: want `cert list|generate|activate|deactivate|use|readiness|delete|download`", errUsage)
		}
		return certCommand(ctx, args[1], args[2:], env)
	}
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "help"
}

// common holds the flags every database command takes.
type common struct {
	db, dataDir string
	json        bool
}

func newFlags(name string, env Env, c *common, example string) *flag.FlagSet {
	fs := flag.NewFlagSet("certplane "+name, flag.ContinueOnError)
	// The flag package's own error line is dropped: Main prints the error
	// (see parse), then this usage once.
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.db, "db", "", "database: sqlite:PATH or postgres://… (default sqlite:<data-dir>/certplane.db)")
	fs.StringVar(&c.dataDir, "data-dir", "", "data directory for the database and the seal key (default $XDG_DATA_HOME/certplane or /var/lib/certplane)")
	if name != "serve" && name != "gateway" {
		fs.BoolVar(&c.json, "json", false, "print JSON")
	}
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "Usage: certplane %s [flags]\n\nExample:\n  %s\n\nFlags:\n", name, example)
		fs.SetOutput(env.Stderr)
		defer fs.SetOutput(io.Discard)
		fs.PrintDefaults()
	}
	return fs
}

// flagError is a flag the command's flag set refused; usage prints that
// command's usage.
type flagError struct {
	err   error
	usage func()
}

func (e *flagError) Error() string { return e.err.Error() }
func (e *flagError) Unwrap() error { return e.err }

// Is makes errors.Is(err, errUsage) hold.
func (e *flagError) Is(target error) bool { return target == errUsage }

// parse parses flags and positional arguments in any order (Go's flag
// package stops at the first positional one, so `cert activate ID --db X`
// would otherwise leave --db unparsed) and returns the positional ones.
//
// This loop is the whole of what a CLI library (cobra, urfave/cli) would
// add here, and certplane's commands are a handful of flat verbs: the
// standard flag package keeps the product's go.mod to what it links and
// the help text in our hands, so flag stays.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	usage := fs.Usage
	fs.Usage = func() {} // the flag package calls it on every error too
	defer func() { fs.Usage = usage }()
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				usage()
				return nil, err
			}
			return nil, &flagError{err: fmt.Errorf("%s: %w", fs.Name(), err), usage: usage}
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// parseNoArgs parses flags like parse and refuses positional arguments.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	return nil
}

// checkAccount refuses an --account that is not a 32-hex account id.
func checkAccount(id string) error {
	if !api.ValidAccountID(id) {
		return fmt.Errorf("%w: --account must be a 32-hex account id", errUsage)
	}
	return nil
}

// DefaultDataDir is $XDG_DATA_HOME/certplane, else /var/lib/certplane.
func DefaultDataDir(getenv func(string) string) string {
	if x := getenv("XDG_DATA_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "certplane")
	}
	return "/var/lib/certplane"
}

func (c *common) resolve(env Env) {
	if c.dataDir == "" {
		c.dataDir = DefaultDataDir(env.Getenv)
	}
	if c.db == "" {
		c.db = "sqlite:" + filepath.Join(c.dataDir, "certplane.db")
	}
}

// checkDB refuses a --db that names no database, before anything is
// created.
func (c *common) checkDB() error {
	switch {
	case postgres.IsDSN(c.db):
		return nil
	case strings.HasPrefix(c.db, "sqlite:"):
		if strings.TrimPrefix(strings.TrimPrefix(c.db, "sqlite:"), "//") == "" {
			return fmt.Errorf("%w: --db sqlite: needs a path", errUsage)
		}
		return nil
	}
	return fmt.Errorf("%w: --db %q: want sqlite:PATH or postgres://…", errUsage, c.db)
}

// openBackend opens the database named by c.db.
func (c *common) openBackend(ctx context.Context) (storage.Backend, error) {
	if err := c.checkDB(); err != nil {
		return nil, err
	}
	switch {
	case postgres.IsDSN(c.db):
		return postgres.Open(ctx, c.db)
	case strings.HasPrefix(c.db, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(c.db, "sqlite:"), "//")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("create database directory: %w", err)
		}
		return sqlite.Open(ctx, path)
	}
	return nil, fmt.Errorf("%w: --db %q: want sqlite:PATH or postgres://…", errUsage, c.db)
}

// service opens the backend and builds a Service; withSealer loads (and
// on first use creates) the seal key.
func (c *common) service(ctx context.Context, env Env, withSealer bool, opts controlplane.Options) (*controlplane.Service, storage.Backend, error) {
	c.resolve(env)
	if err := c.checkDB(); err != nil {
		return nil, nil, err
	}
	keyCreated := ""
	if withSealer {
		s, created, err := seal.Load(env.Getenv(seal.EnvKey), c.dataDir)
		if err != nil {
			return nil, nil, err
		}
		if created {
			keyCreated = filepath.Join(c.dataDir, seal.KeyFile)
		}
		opts.Sealer = s
	}
	b, err := c.openBackend(ctx)
	if err != nil {
		c.discardKey(keyCreated)
		return nil, nil, err
	}
	if opts.Now == nil {
		opts.Now = env.Now
	}
	svc, err := controlplane.New(b, opts)
	if err == nil {
		err = svc.CheckSealKey(ctx)
	}
	if err != nil {
		// Never leave behind a key that seals nothing and hides the real one.
		c.discardKey(keyCreated)
		b.Close()
		return nil, nil, err
	}
	if keyCreated != "" {
		fmt.Fprintf(env.Stderr, "certplane: created seal key %s (back it up: without it no stored private key can be opened)\n", keyCreated)
	}
	return svc, b, nil
}

// discardKey removes a seal key file this run created, if any.
func (c *common) discardKey(path string) {
	if path != "" {
		os.Remove(path)
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newLogger(env Env, level string) hclog.Logger {
	// JSON when stderr is not a terminal (a service manager, a pipe).
	jsonFmt := true
	if f, ok := env.Stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		jsonFmt = false
	}
	return hclog.New(&hclog.LoggerOptions{
		Name: "certplane", Level: hclog.LevelFromString(level), Output: env.Stderr, JSONFormat: jsonFmt,
	})
}

func serve(ctx context.Context, args []string, env Env) error {
	var c common
	fs := newFlags("serve", env, &c, "certplane serve --listen 127.0.0.1:8080 --db sqlite:/var/lib/certplane/certplane.db")
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	tlsCert := fs.String("tls-cert", "", "TLS certificate file (PEM); serve HTTPS")
	tlsKey := fs.String("tls-key", "", "TLS private key file (PEM)")
	delay := fs.Duration("deploy-delay", controlplane.DefaultDeployDelay, "how long pending_deployment and pending_deletion last")
	keyType := fs.String("key-type", ca.KeyECDSAP256, "key of generated roots: ecdsa-p256, rsa-2048 or rsa-3072")
	level := fs.String("log-level", "info", "log level: trace, debug, info, warn, error")
	pprofAddr := fs.String("pprof", "", "serve Go's /debug/pprof/ on this loopback address (profiling; off by default)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return fmt.Errorf("%w: --tls-cert and --tls-key go together", errUsage)
	}
	if *delay < 0 {
		return fmt.Errorf("%w: --deploy-delay must not be negative", errUsage)
	}
	if !ca.ValidKeyType(*keyType) {
		return fmt.Errorf("%w: --key-type %q: want ecdsa-p256, rsa-2048 or rsa-3072", errUsage, *keyType)
	}
	if hclog.LevelFromString(*level) == hclog.NoLevel {
		return fmt.Errorf("%w: --log-level %q: want trace, debug, info, warn or error", errUsage, *level)
	}
	// Everything that can be refused is checked before the seal key is
	// created and before anything says it is listening.
	var tlsConfig *tls.Config
	if *tlsCert != "" {
		pair, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return fmt.Errorf("--tls-cert %s, --tls-key %s: %w", *tlsCert, *tlsKey, err)
		}
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listen, err)
	}
	defer ln.Close()
	log := newLogger(env, *level)
	d := *delay
	if d == 0 {
		d = -1 // zero means "immediately" on the command line
	}
	svc, b, err := c.service(ctx, env, true, controlplane.Options{Logger: log, DeployDelay: d, KeyType: *keyType})
	if err != nil {
		return err
	}
	defer b.Close()

	stopping, stop := context.WithCancel(context.Background())
	defer stop()
	dash, err := dashboard.New(dashboard.Options{Service: svc, Logger: log.Named("dashboard"), Secure: *tlsCert != "", Stopping: stopping})
	if err != nil {
		ln.Close()
		return err
	}
	if *pprofAddr != "" {
		stopProf, err := servePprof(*pprofAddr, log)
		if err != nil {
			return err
		}
		defer stopProf()
	}
	srv := &http.Server{
		Handler:           controlplane.WithConnTLS(dash.Mount(svc.Handler(stopping))),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      longpoll.MaxWait + 30*time.Second,
		IdleTimeout:       controlplane.IdleTimeout,
		MaxHeaderBytes:    controlplane.MaxHeaderBytes,
		ConnContext:       controlplane.ConnContext,
		ErrorLog:          log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}

	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	bg := make(chan struct{})
	go func() {
		defer close(bg)
		// Run also follows other replicas' (or, on SQLite, other
		// processes') changes: long-poll wake-ups, deployer kicks and the
		// in-memory token and revision caches depend on it.
		svc.Run(runCtx)
	}()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(controlplane.Listener(ln, tlsConfig)) }()
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	log.Info("listening", "addr", ln.Addr().String(), "url", scheme+"://"+ln.Addr().String()+controlplane.APIPrefix,
		"dashboard", scheme+"://"+ln.Addr().String()+dashboard.Prefix,
		"db", redactDB(c.db), "deploy_delay", delay.String())
	if tlsConfig == nil && !isLoopback(ln.Addr()) {
		log.Warn("serving plain HTTP on a non-loopback address: API tokens and certificates cross the network in the clear; give --tls-cert and --tls-key, or listen on 127.0.0.1 behind a TLS proxy",
			"addr", ln.Addr().String())
	}
	if env.Ready != nil {
		env.Ready(ln.Addr())
	}
	select {
	case err := <-errc:
		stop()
		cancelRun()
		<-bg
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	stop() // release held long-polls
	shCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = srv.Shutdown(shCtx)
	cancelRun()
	<-bg
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// isLoopback reports whether addr is a loopback address (127.0.0.0/8, ::1);
// the unspecified address (":8080") listens on every interface, so it is not.
func isLoopback(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// redactDB hides a PostgreSQL password in logs.
func redactDB(db string) string {
	if !postgres.IsDSN(db) {
		return db
	}
	if i := strings.Index(db, "@"); i > 0 {
		if j := strings.Index(db, "://"); j > 0 && j < i {
			user := db[j+3 : i]
			if k := strings.Index(user, ":"); k >= 0 {
				return db[:j+3] + user[:k] + ":***" + db[i:]
			}
		}
	}
	return db
}

func accountCreate(ctx context.Context, args []string, env Env) error {
	var c common
	fs := newFlags("account create", env, &c, "ACCOUNT=$(certplane account create --name acme)")
	name := fs.String("name", "", "account name (required)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if strings.TrimSpace(*name) == "" {
		return fmt.Errorf("%w: --name is required", errUsage)
	}
	svc, b, err := c.service(ctx, env, true, controlplane.Options{})
	if err != nil {
		return err
	}
	defer b.Close()
	a, err := svc.CreateAccount(ctx, *name)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(env.Stdout, map[string]any{
			"id": a.ID, "name": a.Name, "created_at": api.Time{Time: a.CreatedAt}, "certificate_id": a.InUseID,
		})
	}
	fmt.Fprintln(env.Stdout, a.ID)
	return nil
}

func tokenCreate(ctx context.Context, args []string, env Env) error {
	var c common
	fs := newFlags("token create", env, &c, `TOKEN=$(certplane token create --account "$ACCOUNT" --scope read)`)
	account := fs.String("account", "", "account id (required)")
	scope := fs.String("scope", "", "read (list and get), write (everything) or device (what agents need: list certificates and check in) (required)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := checkAccount(*account); err != nil {
		return err
	}
	if *scope != storage.ScopeRead && *scope != storage.ScopeWrite && *scope != storage.ScopeDevice {
		return fmt.Errorf("%w: --scope must be read, write or device", errUsage)
	}
	svc, b, err := c.service(ctx, env, false, controlplane.Options{})
	if err != nil {
		return err
	}
	defer b.Close()
	tok, err := svc.CreateToken(ctx, *account, *scope)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(env.Stdout, map[string]string{"token": tok, "account_id": *account, "scope": *scope})
	}
	fmt.Fprintln(env.Stdout, tok)
	return nil
}

// tokenJSON is how token list and revoke print a token with --json. There
// is no field for the secret or its hash: neither is ever printed again.
type tokenJSON struct {
	ID        string    `json:"id"`
	AccountID string    `json:"account_id"`
	Scope     string    `json:"scope"`
	CreatedAt api.Time  `json:"created_at"`
	RevokedAt *api.Time `json:"revoked_at"`
}

func toTokenJSON(t storage.Token) tokenJSON {
	j := tokenJSON{ID: t.ID, AccountID: t.AccountID, Scope: t.Scope, CreatedAt: api.Time{Time: t.CreatedAt}}
	if t.Revoked() {
		j.RevokedAt = &api.Time{Time: t.RevokedAt}
	}
	return j
}

// tokenAdmin runs `token list` and `token revoke`.
func tokenAdmin(ctx context.Context, sub string, args []string, env Env) error {
	var c common
	example := `certplane token list --account "$ACCOUNT"`
	if sub == "revoke" {
		example = `certplane token revoke --account "$ACCOUNT" --id "$TOKEN_ID"`
	}
	fs := newFlags("token "+sub, env, &c, example)
	account := fs.String("account", "", "account id (required)")
	var id *string
	if sub == "revoke" {
		id = fs.String("id", "", "token id, or the whole cpt_<id>.<secret> token (required)")
	}
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := checkAccount(*account); err != nil {
		return err
	}
	var tokenID string
	if sub == "revoke" {
		if *id == "" {
			return fmt.Errorf("%w: --id is required", errUsage)
		}
		var err error
		if tokenID, err = controlplane.TokenID(*id); err != nil {
			// Never echo the argument: it may be a whole secret token.
			return fmt.Errorf("%w: --id: %v", errUsage, err)
		}
	}
	svc, b, err := c.service(ctx, env, false, controlplane.Options{})
	if err != nil {
		return err
	}
	defer b.Close()
	if sub == "revoke" {
		t, err := svc.RevokeToken(ctx, *account, tokenID)
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("no token %s in account %s: %w", tokenID, *account, storage.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if c.json {
			return printJSON(env.Stdout, toTokenJSON(t))
		}
		fmt.Fprintln(env.Stdout, "revoked", t.RevokedAt.Format(time.RFC3339))
		return nil
	}
	ts, err := svc.Tokens(ctx, *account)
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("no account %s: %w", *account, storage.ErrNotFound)
	}
	if err != nil {
		return err
	}
	if c.json {
		out := make([]tokenJSON, len(ts))
		for i, t := range ts {
			out[i] = toTokenJSON(t)
		}
		return printJSON(env.Stdout, out)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSCOPE\tCREATED\tREVOKED")
	for _, t := range ts {
		revoked := "-"
		if t.Revoked() {
			revoked = t.RevokedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.ID, t.Scope, t.CreatedAt.Format(time.RFC3339), revoked)
	}
	return tw.Flush()
}

func certCommand(ctx context.Context, sub string, args []string, env Env) error {
	var c common
	// list and generate name no certificate: no --id to ignore.
	needsID := sub != "list" && sub != "generate"
	example := `certplane cert ` + sub + ` --account "$ACCOUNT"`
	if needsID {
		example += ` --id "$CERT"`
	}
	fs := newFlags("cert "+sub, env, &c, example)
	account := fs.String("account", "", "account id (required)")
	id := new(string)
	if needsID {
		fs.StringVar(id, "id", "", "certificate id (or give it as the argument)")
	}
	var days *int
	var keyType, format, out *string
	var force *bool
	switch sub {
	case "generate":
		days = fs.Int("days", ca.DefaultValidityDays, "validity in days, 1..10950")
		keyType = fs.String("key-type", "", "ecdsa-p256 (default), rsa-2048 or rsa-3072")
	case "download":
		format = fs.String("format", controlplane.FormatPEM, "pem or crt (DER)")
		out = fs.String("out", "", "write to this file instead of stdout")
	case "use":
		force = fs.Bool("force", false, "turn it on even when fewer active devices trust it than min_readiness")
	case "list", "activate", "deactivate", "delete", "readiness":
	default:
		return fmt.Errorf("%w: unknown cert command %q", errUsage, sub)
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if needsID && *id == "" && len(pos) == 1 {
		*id = pos[0]
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	if err := checkAccount(*account); err != nil {
		return err
	}
	if needsID && *id == "" {
		return fmt.Errorf("%w: --id is required", errUsage)
	}
	svc, b, err := c.service(ctx, env, sub == "generate", controlplane.Options{})
	if err != nil {
		return err
	}
	defer b.Close()

	var cert storage.Certificate
	switch sub {
	case "list":
		certs, _, err := svc.Rules().List(ctx, *account)
		if err != nil {
			return explain(err)
		}
		return printList(env.Stdout, certs, c.json)
	case "generate":
		cert, err = svc.Generate(ctx, *account, controlplane.GenerateRequest{ValidityDays: *days, KeyType: *keyType})
	case "activate":
		cert, err = svc.Rules().Activate(ctx, *account, *id)
	case "deactivate":
		cert, err = svc.Rules().Deactivate(ctx, *account, *id)
	case "delete":
		cert, err = svc.Rules().Delete(ctx, *account, *id)
	case "use":
		target := *id
		if target == "none" {
			target = api.NilUUID
		}
		use := svc.Use
		if *force {
			use = svc.UseForce
		}
		a, err := use(ctx, *account, target)
		if err != nil {
			if errors.Is(err, storage.ErrNotReady) {
				return fmt.Errorf("%v; let more devices sync first, lower it (certplane account set --min-readiness), or add --force", err)
			}
			return explain(err)
		}
		if c.json {
			conf, err := controlplane.APIConfiguration(a)
			if err != nil {
				return err
			}
			return printJSON(env.Stdout, conf)
		}
		if a.InUseID == "" {
			fmt.Fprintln(env.Stdout, api.NilUUID)
		} else {
			fmt.Fprintln(env.Stdout, a.InUseID)
		}
		return nil
	case "readiness":
		return certReadiness(ctx, svc, env, *account, *id, c.json)
	case "download":
		data, err := svc.Download(ctx, *account, *id, *format)
		if err != nil {
			return explain(err)
		}
		if *out == "" {
			_, err = env.Stdout.Write(data)
			return err
		}
		// A public certificate: world-readable is right.
		if err := os.WriteFile(*out, data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", *out, err)
		}
		return nil
	}
	if err != nil {
		return explain(err)
	}
	if c.json {
		return printJSON(env.Stdout, controlplane.APICertificate(cert))
	}
	if sub == "generate" {
		fmt.Fprintln(env.Stdout, cert.ID)
	} else {
		fmt.Fprintln(env.Stdout, cert.Status)
	}
	return nil
}

// explain turns storage sentinels into the same words the API uses.
func explain(err error) error {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("no such account or certificate: %w", err)
	}
	return err
}

func printList(w io.Writer, certs []storage.Certificate, asJSON bool) error {
	if asJSON {
		out := make([]api.Certificate, len(certs))
		for i, c := range certs {
			out[i] = controlplane.APICertificate(c)
		}
		return printJSON(w, out)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tIN USE\tTYPE\tEXPIRES\tFINGERPRINT")
	for _, c := range certs {
		inUse := ""
		if c.InUse {
			inUse = "yes"
		}
		fp := c.Fingerprint
		if len(fp) > 23 {
			fp = fp[:23] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Status, inUse, c.Type, c.ExpiresOn.Format("2006-01-02"), fp)
	}
	return tw.Flush()
}
