package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/gateway"
	"github.com/certagent/certagent/controlplane/storage"
	"github.com/certagent/certagent/controlplane/storage/postgres"
	"github.com/certagent/certagent/internal/buildinfo"
)

// gatewayCommand runs `gateway` (the inspection gateway) or `gateway list`.
func gatewayCommand(ctx context.Context, args []string, env Env) error {
	if len(args) > 0 && args[0] == "list" {
		return gatewayList(ctx, args[1:], env)
	}
	return gatewayRun(ctx, args, env)
}

func gatewayRun(ctx context.Context, args []string, env Env) error {
	var c common
	fs := newFlags("gateway", env, &c, `certplane gateway --account "$ACCOUNT" --listen 127.0.0.1:3128`)
	account := fs.String("account", "", "account whose in-use root signs inspected traffic (required)")
	listen := fs.String("listen", "127.0.0.1:3128", "proxy address")
	upstreamCA := fs.String("upstream-ca", "", "PEM file of the CAs that verify origins (default: the system roots)")
	noInspect := fs.String("no-inspect", "", "comma-separated hosts tunnelled without inspection (.example.com: every name under it)")
	id := fs.String("id", "", "gateway id in the registry (default HOSTNAME/LISTEN)")
	maxConns := fs.Int("max-conns", gateway.DefaultMaxConns, "most client connections open at once; more are answered 503")
	leafValidity := fs.Duration("leaf-validity", gateway.DefaultLeafValidity, "validity of minted leaf certificates")
	level := fs.String("log-level", "info", "log level: trace, debug, info, warn, error")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := checkAccount(*account); err != nil {
		return err
	}
	if *maxConns < 1 || *leafValidity < time.Hour || *leafValidity > 398*24*time.Hour {
		return fmt.Errorf("%w: --max-conns must be positive and --leaf-validity between 1h and 398 days", errUsage)
	}
	var roots *x509.CertPool
	if *upstreamCA != "" {
		pem, err := os.ReadFile(*upstreamCA)
		if err != nil {
			return fmt.Errorf("read --upstream-ca: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--upstream-ca %s: no PEM certificate in it", *upstreamCA)
		}
	}
	var hosts []string
	for _, h := range strings.Split(*noInspect, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	log := newLogger(env, *level).Named("gateway")
	svc, b, err := c.service(ctx, env, true, controlplane.Options{Logger: log})
	if err != nil {
		return err
	}
	defer b.Close()
	if _, err := svc.Rules().Account(ctx, *account); err != nil {
		return fmt.Errorf("account %s: %w", *account, err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listen, err)
	}
	host, _ := os.Hostname()
	if *id == "" {
		*id = host + "/" + ln.Addr().String()
	}
	gw, err := gateway.New(svc, gateway.Config{
		AccountID: *account, ID: *id, Hostname: host, Listen: ln.Addr().String(), Version: buildinfo.Version,
		UpstreamRoots: roots, NoInspect: hosts, Logger: log, MaxConns: *maxConns, LeafValidity: *leafValidity,
	})
	if err != nil {
		ln.Close()
		return err
	}
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	bg := make(chan struct{})
	go func() {
		defer close(bg)
		gw.Run(runCtx)
	}()
	if pg, ok := b.(*postgres.Backend); ok {
		// An in-use switch reaches this gateway within milliseconds.
		l := &postgres.Listener{
			OnChange: func(ch postgres.Change) {
				if ch.AccountID == *account {
					gw.Wake()
				}
			},
			OnReconnect: gw.Wake,
			Logger:      log.Named("listen"),
		}
		go l.Run(runCtx, pg)
	}
	errc := make(chan error, 1)
	go func() { errc <- gw.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "account", *account, "id", *id, "db", redactDB(c.db), "no_inspect", strings.Join(hosts, ","))
	if env.Ready != nil {
		env.Ready(ln.Addr())
	}
	select {
	case err := <-errc:
		cancelRun()
		<-bg
		return fmt.Errorf("gateway: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = gw.Shutdown(shCtx)
	cancelRun()
	<-bg
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

type gatewayJSON struct {
	ID        string   `json:"id"`
	Hostname  string   `json:"hostname"`
	Listen    string   `json:"listen"`
	Version   string   `json:"version"`
	StartedAt string   `json:"started_at"`
	LastSeen  string   `json:"last_seen"`
	Live      bool     `json:"live"`
	Signing   string   `json:"signing"`
	Loaded    []string `json:"loaded"`
	Revision  int64    `json:"revision"`
}

func gatewayList(ctx context.Context, args []string, env Env) error {
	var c common
	fs := newFlags("gateway list", env, &c, `certplane gateway list --account "$ACCOUNT"`)
	account := fs.String("account", "", "account id (required)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := checkAccount(*account); err != nil {
		return err
	}
	svc, b, err := c.service(ctx, env, false, controlplane.Options{})
	if err != nil {
		return err
	}
	defer b.Close()
	gws, err := svc.Rules().Gateways(ctx, *account)
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("no account %s: %w", *account, storage.ErrNotFound)
	}
	if err != nil {
		return err
	}
	now := svc.Rules().Now()
	live := svc.Rules().GatewayLive()
	if c.json {
		out := make([]gatewayJSON, len(gws))
		for i, g := range gws {
			out[i] = gatewayJSON{ID: g.ID, Hostname: g.Hostname, Listen: g.Listen, Version: g.Version,
				StartedAt: g.StartedAt.Format(time.RFC3339), LastSeen: g.LastSeen.Format(time.RFC3339Nano),
				Live: g.Live(now, live), Signing: g.Signing, Loaded: g.Loaded, Revision: g.Revision}
			if out[i].Loaded == nil {
				out[i].Loaded = []string{}
			}
		}
		return printJSON(env.Stdout, out)
	}
	if len(gws) == 0 {
		fmt.Fprintln(env.Stderr, "no gateway has registered for this account: the deploy delay completes activations")
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tLAST SEEN\tSIGNING\tLOADED")
	for _, g := range gws {
		state := "live"
		if !g.Live(now, live) {
			state = "stale"
		}
		loaded := make([]string, len(g.Loaded))
		for i, fp := range g.Loaded {
			loaded[i] = short(fp)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s (%s ago)\t%s\t%s\n", sanitize(g.ID), state, g.LastSeen.Format(time.RFC3339),
			now.Sub(g.LastSeen).Round(time.Second), short(g.Signing), strings.Join(loaded, ","))
	}
	return tw.Flush()
}

// short abbreviates a fingerprint for the table ("" stays "-").
func short(fp string) string {
	if fp == "" {
		return "-"
	}
	if len(fp) > 23 {
		return fp[:23] + "…"
	}
	return fp
}

// sanitize keeps terminal controls out of table output.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
