// Package runtimes is the "runtimes" trust store: it keeps a bundle (the
// platform's system roots plus certagent's, written by trust/bundle) and
// points the runtimes that ignore the OS trust store at it, for every user
// and every service, without editing anyone's files:
//
//	NODE_EXTRA_CA_CERTS                 Node.js (adds to its built-in roots)
//	REQUESTS_CA_BUNDLE                  Python requests (and what uses it)
//	PIP_CERT (+ site-wide pip.conf)     pip
//	AWS_CA_BUNDLE                       AWS CLI, boto3
//	CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE  gcloud
//
// Only NODE_EXTRA_CA_CERTS adds to a runtime's roots; the others replace
// them, so they are set only while the bundle really holds the system roots
// (Linux: the distro bundle; macOS: /etc/ssl/cert.pem). Where there is no
// system roots file (Windows) only NODE_EXTRA_CA_CERTS is set. SSL_CERT_FILE,
// CURL_CA_BUNDLE and GIT_SSL_CAINFO are never set: curl, git and OpenSSL
// already read the OS store, which the "system" store keeps, and
// SSL_CERT_FILE would also hide the roots of /etc/ssl/certs from Go and
// OpenSSL programs that scan the directory.
//
// How the variables reach everyone is per platform (wiring): on Linux a
// /etc/profile.d script (login shells), /etc/environment.d (systemd user
// managers: graphical sessions, user services), DefaultEnvironment= drop-ins
// for the system and user managers (services; also set in the running
// manager with systemctl set-environment), and a site-wide pip.conf when none
// exists; on macOS launchd (launchctl setenv, kept across reboots by a
// LaunchDaemon and a LaunchAgent); on Windows the machine environment in the
// registry.
//
// Every variable names the same file, which certagent rewrites in place:
// a root added or withdrawn later needs no new login. A value set before
// ours (by an administrator or a user) is kept.
//
// The wiring lives exactly as long as the bundle holds a root of ours: the
// batch that removes the last one (a withdrawal, `uninstall --purge`, or the
// store dropped from the config, which the agent turns into removals) also
// takes every file and variable of ours away, and the bundle file with
// them. Files are ours only when they carry our header and variables only
// when they hold our path, so what existed before is left as it was.
package runtimes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/internal/atomicfile"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/bundle"
)

// Name is the store's config name.
const Name = "runtimes"

// BundleFile is the bundle's file name inside Options.Dir.
const BundleFile = "ca-bundle.pem"

// Var is one environment variable that points a runtime at a CA file.
type Var struct {
	// Name is the variable.
	Name string
	// Runtime says who reads it.
	Runtime string
	// Replaces reports whether the runtime takes the file as its whole
	// trust list rather than an addition; such a variable is set only while
	// the bundle holds the system roots.
	Replaces bool
}

// Vars are the variables the store sets, in the order they are written.
var Vars = []Var{
	{Name: "NODE_EXTRA_CA_CERTS", Runtime: "node"},
	{Name: "REQUESTS_CA_BUNDLE", Runtime: "python requests", Replaces: true},
	{Name: "PIP_CERT", Runtime: "pip", Replaces: true},
	{Name: "AWS_CA_BUNDLE", Runtime: "aws", Replaces: true},
	{Name: "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE", Runtime: "gcloud", Replaces: true},
}

// Setting is one variable with its value.
type Setting struct {
	Name, Value string
}

// Settings returns the variables to set for a bundle at path; withSystem
// reports whether the bundle holds the system roots.
func Settings(path string, withSystem bool) []Setting {
	var out []Setting
	for _, v := range Vars {
		if v.Replaces && !withSystem {
			continue
		}
		out = append(out, Setting{Name: v.Name, Value: path})
	}
	return out
}

// header starts every file the store writes; a file is ours only when it
// starts with it.
const header = "# Written by certagent (store \"runtimes\"): removed with the store. Do not edit."

// wiring is how a platform delivers the settings to every user and service.
type wiring interface {
	// wired reports whether everything wire would do is in place.
	wired(ctx context.Context, set []Setting) (bool, error)
	// wire puts set in place and takes away any variable of ours not in
	// it; it changes nothing that is already right.
	wire(ctx context.Context, set []Setting) error
	// unwire takes away every file and variable of ours.
	unwire(ctx context.Context, bundlePath string) error
	// paths are the directories wire writes.
	paths() []string
}

// Options configure the store.
type Options struct {
	// Dir holds the bundle; "" means DefaultDir.
	Dir string
	// SystemRoots are the system roots files for the bundle, first existing
	// wins; nil means the platform's (see bundle). Tests set them.
	SystemRoots []string
	// Root prefixes every system path the wiring writes (tests); "" is /.
	Root string
	// Runner runs systemctl and launchctl; nil means a new
	// platform.ExecRunner.
	Runner platform.Runner
	// Logger; nil means none.
	Logger hclog.Logger

	// wiring replaces the platform's (tests of other platforms' logic).
	wiring wiring
}

// Store is the runtimes store. Safe for concurrent use.
type Store struct {
	dir    string
	bundle *bundle.Store
	wire   wiring
	log    hclog.Logger

	mu sync.Mutex // serialises Apply and Refresh with each other
}

// New returns the store.
func New(o Options) *Store {
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	if o.Runner == nil {
		o.Runner = &platform.ExecRunner{}
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	var bopts []bundle.Option
	sys := o.SystemRoots
	if sys == nil {
		sys = platformSystemRoots
	}
	if sys != nil {
		bopts = append(bopts, bundle.WithSystemRoots(sys...))
	}
	s := &Store{
		dir:    filepath.Clean(o.Dir),
		bundle: bundle.New(filepath.Join(o.Dir, BundleFile), bopts...),
		log:    o.Logger.Named(Name),
	}
	s.wire = o.wiring
	if s.wire == nil {
		s.wire = newWiring(o)
	}
	return s
}

// Name implements trust.Store.
func (s *Store) Name() string { return Name }

// BundlePath is the file every variable names.
func (s *Store) BundlePath() string { return s.bundle.Path() }

// WritePaths are the directories the store writes: the bundle's and the
// wiring's. The service manager must let the daemon write them.
func (s *Store) WritePaths() []string {
	return append([]string{s.dir}, s.wire.paths()...)
}

// Check implements trust.Store.
func (s *Store) Check(ctx context.Context) error {
	if !filepath.IsAbs(s.dir) {
		return fmt.Errorf("%w: runtimes: %s is not absolute", trust.ErrUnavailable, s.dir)
	}
	if err := checkValue(s.BundlePath()); err != nil {
		return fmt.Errorf("%w: runtimes: %v", trust.ErrUnavailable, err)
	}
	return s.bundle.Check(ctx)
}

// List implements trust.Store: the bundle's roots other than the copies of
// the system roots (those are not this store's to add or remove, and the
// file that holds them goes with our last root). Tagged entries are what
// runtimes trust through the wiring, which Refresh keeps in place.
func (s *Store) List(ctx context.Context) (*trust.Inventory, error) {
	inv, err := s.bundle.List(ctx)
	if err != nil {
		return nil, err
	}
	system, hand, err := s.bundle.Parts()
	if err != nil {
		return nil, err
	}
	kept := inv.Entries[:0]
	for _, e := range inv.Entries {
		if e.Tagged || hand[e.FP] || !system[e.FP] {
			kept = append(kept, e)
		}
	}
	inv.Entries = kept
	return inv, nil
}

// Apply implements trust.Store: the bundle changes as one write, then the
// wiring follows it (in place while a root of ours is in the bundle, gone
// with the last one). An install whose wiring could not be put in place is
// Failed: runtimes would not see it.
func (s *Store) Apply(ctx context.Context, changes []trust.Change) []trust.Result {
	if len(changes) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	res := s.bundle.Apply(ctx, changes)
	if _, err := s.follow(ctx); err != nil {
		for i, r := range res {
			if r.Status == trust.StatusOK {
				res[i] = trust.Failed(r.Change, err)
			}
		}
	}
	return res
}

// Refresh implements trust.Refresher: the bundle's system section follows
// the distro's, and wiring someone removed is put back.
func (s *Store) Refresh(ctx context.Context) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	wrote, err := s.bundle.Refresh(ctx)
	if err != nil {
		return wrote, err
	}
	w, err := s.follow(ctx)
	return wrote || w, err
}

// follow makes the wiring match the bundle, and reports whether it changed
// anything. s.mu must be held.
func (s *Store) follow(ctx context.Context) (bool, error) {
	inv, err := s.bundle.List(ctx)
	if err != nil {
		return false, err
	}
	ours := 0
	for _, e := range inv.Entries {
		if e.Tagged {
			ours++
		}
	}
	sys := s.bundle.SystemRootsFile()
	if ours > 0 {
		set := Settings(s.BundlePath(), sys != "")
		ok, err := s.wire.wired(ctx, set)
		if err != nil {
			return false, fmt.Errorf("runtimes: %w", err)
		}
		if ok {
			return false, nil
		}
		if err := s.wire.wire(ctx, set); err != nil {
			return true, fmt.Errorf("runtimes: %w", err)
		}
		s.log.Info("runtimes pointed at the bundle", "bundle", s.BundlePath(), "variables", len(set))
		return true, nil
	}
	// None of ours left: the wiring goes first (nothing may name a file
	// that is about to vanish), then the bundle unless someone appended
	// roots of their own to it.
	if err := s.wire.unwire(ctx, s.BundlePath()); err != nil {
		return false, fmt.Errorf("runtimes: %w", err)
	}
	_, hand, err := s.bundle.Parts()
	if err != nil {
		return false, fmt.Errorf("runtimes: %w", err)
	}
	if len(hand) > 0 {
		return false, nil
	}
	if _, err := os.Stat(s.BundlePath()); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err := atomicfile.Remove(s.BundlePath()); err != nil {
		return false, fmt.Errorf("runtimes: %w", err)
	}
	// The directory is ours; it goes when empty.
	_ = os.Remove(s.dir)
	s.log.Info("runtimes no longer pointed at the bundle", "bundle", s.BundlePath())
	return true, nil
}

// checkValue refuses a bundle path that the shell, systemd or an env file
// would read differently from what it is.
func checkValue(p string) error {
	for _, r := range p {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '/' || r == '.' || r == '_' || r == '-' || r == ':' || r == '\\':
		default:
			return fmt.Errorf("the bundle path %q holds %q; use letters, digits and / . _ - only", p, r)
		}
	}
	return nil
}

var (
	_ trust.Store     = (*Store)(nil)
	_ trust.Refresher = (*Store)(nil)
)

// Paths implements trust.PathDeclarer: WritePaths are written, created
// when missing, and watched: a deleted drop-in triggers the pass whose
// Refresh puts it back.
func (s *Store) Paths() trust.Paths {
	w := s.WritePaths()
	return trust.Paths{Write: w, Create: w, Watch: w}
}

// Sweep implements trust.Sweeper: leftovers of the bundle's writes.
func (s *Store) Sweep() ([]string, error) { return s.bundle.Sweep() }

var (
	_ trust.Sweeper      = (*Store)(nil)
	_ trust.PathDeclarer = (*Store)(nil)
)
