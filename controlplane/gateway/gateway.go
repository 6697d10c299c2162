// Package gateway is certplane's inspection gateway: an HTTP forward proxy
// for one account that intercepts TLS with leaf certificates minted on the
// fly from the account's in-use root, verifies every origin it talks to,
// and reports to the database which roots it has loaded, which is what
// makes a root's deployment (pending_deployment → available) and withdrawal
// (pending_deletion → inactive) real (DESIGN.md §10).
//
// Why the standard library: crypto/tls mints and serves the leaves
// (GetCertificate per handshake), net/http serves both the proxy side
// (CONNECT, absolute-URI requests, header limits, timeouts, 431/400 on bad
// input) and the intercepted side (HTTP/1.1 keep-alive and HTTP/2 through
// ALPN, with the same limits), and net/http/httputil.ReverseProxy forwards
// to origins with hop-by-hop headers, trailers, upgrades and streaming
// handled. A proxy library (goproxy, martian) would add its own request
// model on top of the same pieces and hand-written HTTP/1 parsing for the
// intercepted side, without HTTP/2; the standard library is the better
// tested and smaller surface for a component that sees every byte.
//
// The roots' private keys stay inside certplane's boundary: the gateway
// opens them from the same database with the same seal key as the server
// (controlplane.Service.PrivateKey); nothing is sent over the network.
package gateway

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/storage"
)

// Defaults for Config's zero values.
const (
	DefaultRefreshInterval = time.Second
	DefaultReportInterval  = 2 * time.Second
	DefaultLeafValidity    = 24 * time.Hour
	DefaultCacheSize       = 4096
	DefaultMaxConns        = 8192
	DefaultHeaderTimeout   = 10 * time.Second
	DefaultIdleTimeout     = 90 * time.Second
	DefaultDialTimeout     = 10 * time.Second
	// MaxHeaderBytes bounds a request's header block on both sides.
	MaxHeaderBytes = 64 << 10
)

// Config configures a Gateway.
type Config struct {
	// AccountID is the account whose in-use root signs leaves. Required.
	AccountID string
	// ID names this gateway in the registry; required. A restart with the
	// same id replaces the row.
	ID string
	// Hostname, Listen and Version are reported for `certplane gateway list`.
	Hostname, Listen, Version string
	// UpstreamRoots verifies origins; nil means the system pool.
	UpstreamRoots *x509.CertPool
	// NoInspect lists hosts tunnelled untouched: "example.com" matches that
	// name only, ".example.com" (or "*.example.com") every name under it.
	NoInspect []string
	// Logger may be nil.
	Logger hclog.Logger
	// Now is the clock for leaves; nil means time.Now.
	Now func() time.Time
	// Zero values mean the Default… constants.
	RefreshInterval, ReportInterval, LeafValidity time.Duration
	HeaderTimeout, IdleTimeout, DialTimeout       time.Duration
	CacheSize, MaxConns                           int
}

// rootSet is what the gateway has loaded, replaced as a whole on refresh.
type rootSet struct {
	revision int64
	// signing is the in-use root; nil when none is in use or its key did
	// not open (then nothing is intercepted).
	signing *root
	// loaded holds every root whose key opened, by fingerprint.
	loaded map[string]*root
}

func (s *rootSet) fingerprints() []string {
	out := make([]string, 0, len(s.loaded))
	for fp := range s.loaded {
		out = append(out, fp)
	}
	slices.Sort(out)
	return out
}

// Gateway is one running inspection gateway.
type Gateway struct {
	cfg     Config
	svc     *controlplane.Service
	log     hclog.Logger
	minter  *minter
	started time.Time

	roots atomic.Pointer[rootSet]
	// refreshMu serialises refreshes (the poll loop and Wake callers).
	refreshMu sync.Mutex
	wake      chan struct{}

	upstream *http.Transport
	// buffers serve ReverseProxy's copies, tunnelBuffers the tunnels.
	buffers, tunnelBuffers *bufferPool
	dialer                 *net.Dialer
	proxy                  *httputil.ReverseProxy // origins of intercepted requests
	plain                  *httputil.ReverseProxy // absolute-URI http:// requests
	outer                  *http.Server
	inner                  *http.Server
	innerLn                *chanListener
}

// New returns a gateway over svc, which must have been built with the
// seal key that opens the account's keys. It loads nothing yet: call
// Refresh (Run does).
func New(svc *controlplane.Service, cfg Config) (*Gateway, error) {
	if cfg.AccountID == "" || cfg.ID == "" {
		return nil, errors.New("gateway: an account id and a gateway id are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.RefreshInterval, DefaultRefreshInterval)
	def(&cfg.ReportInterval, DefaultReportInterval)
	def(&cfg.LeafValidity, DefaultLeafValidity)
	def(&cfg.HeaderTimeout, DefaultHeaderTimeout)
	def(&cfg.IdleTimeout, DefaultIdleTimeout)
	def(&cfg.DialTimeout, DefaultDialTimeout)
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	for i, h := range cfg.NoInspect {
		h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
		h = strings.TrimPrefix(h, "*")
		if h == "" || h == "." {
			return nil, fmt.Errorf("gateway: --no-inspect entry %q is empty", cfg.NoInspect[i])
		}
		cfg.NoInspect[i] = h
	}
	m, err := newMinter(cfg.LeafValidity, cfg.CacheSize, cfg.Now)
	if err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, svc: svc, log: cfg.Logger, minter: m, started: cfg.Now(), wake: make(chan struct{}, 1)}
	g.roots.Store(&rootSet{revision: -1, loaded: map[string]*root{}})
	g.setupHTTP()
	return g, nil
}

// Wake asks Run to look for changes now (a PostgreSQL notification); it
// never blocks.
func (g *Gateway) Wake() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// Signing returns the fingerprint of the root leaves are minted from, ""
// for none.
func (g *Gateway) Signing() string {
	if r := g.roots.Load().signing; r != nil {
		return r.fingerprint
	}
	return ""
}

// Loaded returns the fingerprints of the loaded roots, sorted.
func (g *Gateway) Loaded() []string { return g.roots.Load().fingerprints() }

// loadable reports whether a root in status s belongs on the gateways: on
// its way there or there, not on its way out.
func loadable(s api.BindingStatus) bool {
	return s == api.StatusAvailable || s == api.StatusPendingDeployment
}

// Refresh reloads the account's roots if its revision moved, and reports
// whether anything the gateway holds changed. A root whose key does not
// open (or does not match) is logged and left out: the gateway then does
// not report it, and its deployment stays pending, which is the truth.
func (g *Gateway) Refresh(ctx context.Context) (bool, error) {
	g.refreshMu.Lock()
	defer g.refreshMu.Unlock()
	cur := g.roots.Load()
	rev, err := g.svc.Rules().Revision(ctx, g.cfg.AccountID)
	if err != nil {
		return false, fmt.Errorf("gateway: read revision: %w", err)
	}
	if rev == cur.revision {
		return false, nil
	}
	acct, certs, err := g.svc.Rules().Backend().Snapshot(ctx, g.cfg.AccountID)
	if err != nil {
		return false, fmt.Errorf("gateway: read roots: %w", err)
	}
	next := &rootSet{revision: acct.Revision, loaded: map[string]*root{}}
	for _, c := range certs {
		if !loadable(c.Status) {
			continue
		}
		r, ok := cur.loaded[c.Fingerprint]
		if !ok {
			r, err = g.load(ctx, c)
			if err != nil {
				g.log.Error("cannot load root", "certificate_id", c.ID, "fingerprint", c.Fingerprint, "error", err)
				continue
			}
			g.log.Info("loaded root", "certificate_id", c.ID, "fingerprint", c.Fingerprint, "status", string(c.Status))
		}
		next.loaded[c.Fingerprint] = r
		if c.ID == acct.InUseID {
			next.signing = r
		}
	}
	if acct.InUseID != "" && next.signing == nil {
		g.log.Error("the in-use root is not loaded: not intercepting", "certificate_id", acct.InUseID)
	}
	g.roots.Store(next)
	changed := !slices.Equal(cur.fingerprints(), next.fingerprints()) || signingFP(cur) != signingFP(next)
	if signingFP(cur) != signingFP(next) {
		g.log.Info("signing root changed", "from", signingFP(cur), "to", signingFP(next), "revision", next.revision)
	}
	return changed, nil
}

func signingFP(s *rootSet) string {
	if s.signing == nil {
		return ""
	}
	return s.signing.fingerprint
}

// load parses a root and opens its key, and checks they belong together.
func (g *Gateway) load(ctx context.Context, c storage.Certificate) (*root, error) {
	cert, err := x509.ParseCertificate(c.DER)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	k, err := g.svc.PrivateKey(ctx, g.cfg.AccountID, c.ID)
	if err != nil {
		return nil, fmt.Errorf("open key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", k)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, errors.New("the key does not match the certificate")
	}
	return &root{id: c.ID, fingerprint: c.Fingerprint, cert: cert, key: signer}, nil
}

// Report writes this gateway's row: what it has loaded and signs with.
func (g *Gateway) Report(ctx context.Context) error {
	set := g.roots.Load()
	err := g.svc.Rules().ReportGateway(ctx, storage.Gateway{
		ID: g.cfg.ID, AccountID: g.cfg.AccountID, Hostname: g.cfg.Hostname, Listen: g.cfg.Listen,
		Version: g.cfg.Version, StartedAt: g.started, Loaded: set.fingerprints(), Signing: signingFP(set),
		Revision: set.revision,
	})
	if err != nil {
		return fmt.Errorf("gateway: report: %w", err)
	}
	return nil
}

// Run refreshes the roots every RefreshInterval (and on Wake) and reports
// every ReportInterval and after every change, until ctx ends; then it
// removes its registration, so a stopped gateway stops holding up
// deployments at once instead of after it goes stale.
func (g *Gateway) Run(ctx context.Context) {
	refresh := time.NewTicker(g.cfg.RefreshInterval)
	defer refresh.Stop()
	report := time.NewTicker(g.cfg.ReportInterval)
	defer report.Stop()
	step := func(force bool) {
		changed, err := g.Refresh(ctx)
		if err != nil {
			if ctx.Err() == nil {
				g.log.Error("refresh roots", "error", err)
			}
			return
		}
		if changed || force {
			if err := g.Report(ctx); err != nil && ctx.Err() == nil {
				g.log.Error("report", "error", err)
			}
		}
	}
	step(true)
	for {
		select {
		case <-ctx.Done():
			rm, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := g.svc.Rules().RemoveGateway(rm, g.cfg.AccountID, g.cfg.ID); err != nil && !errors.Is(err, storage.ErrNotFound) {
				g.log.Warn("remove registration", "error", err)
			}
			cancel()
			return
		case <-g.wake:
			step(false)
		case <-refresh.C:
			step(false)
		case <-report.C:
			step(true)
		}
	}
}
