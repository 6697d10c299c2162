// Package linuxca is the "system" trust store on Linux: the distribution's
// anchor directory plus its refresh tool (update-ca-certificates,
// update-ca-trust, trust extract-compat), chosen from /etc/os-release by a
// commented table (Families).
//
// What we write: one PEM file per root, named only from its fingerprint
// (certagent-<sha256 hex>.crt or .pem), atomically, mode 0644. One refresh
// per Apply, none when nothing changed; List only reads files (the anchor
// directory and the extracted bundle), so a pass with nothing to change runs
// no tool at all.
//
// What we report: every certificate in the anchor directory (ours Tagged,
// anyone else's not — e.g. WARP's managed-warp.crt, so retired roots are
// found) and every certificate in the extracted bundle. Ours count as
// installed only once the bundle holds them, so a pass interrupted between
// writing and refreshing is finished by the next. A foreign file is removed
// only when a Change names its exact fingerprint and the file holds exactly
// that one certificate.
//
// We do not use smallstep/truststore here: it runs through sudo whenever
// sudo is on PATH, reruns the refresh tool for every certificate, and picks
// the distro by the first directory that exists.
//
// Debian's Java gap: the ca-certificates-java hook adds every new anchor to
// /etc/ssl/certs/java/cacerts as "debian:<name>.pem" but never removes a
// deleted local one, even with --fresh; after a removal on Debian we delete
// that alias ourselves with keytool (see Options.JavaKeystore).
package linuxca

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/internal/atomicfile"
	"github.com/certagent/certagent/internal/filestamp"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
)

// Name is the store's config name.
const Name = "system"

// maxAnchorFile bounds what we read per file: a bundle of every public root
// is about 250 KiB.
const maxAnchorFile = 4 << 20

// Errors.
var (
	// ErrUnknownTarget is a Change for a target this store does not have.
	ErrUnknownTarget = errors.New("linuxca: unknown target (the system store has only the zero target)")
	// ErrBadChange is a malformed Change (no certificate, wrong fingerprint,
	// unknown op).
	ErrBadChange = trust.ErrBadChange
)

// Options configure the store. Every path has a default from the detected
// Family and can be overridden, so tests never touch /etc unless they mean
// to.
type Options struct {
	// OSRelease is the os-release file ("" means platform.OSReleasePaths).
	OSRelease string
	// Family, when non-nil, is used instead of detecting one.
	Family *Family
	// AnchorDir, Bundle and Tool override the family's paths; Tool must be
	// absolute.
	AnchorDir, Bundle, Tool string
	// Runner runs the refresh tool and keytool; nil means a new
	// platform.ExecRunner.
	Runner platform.Runner
	// Logger; nil means none.
	Logger hclog.Logger

	// JavaHook is Debian's ca-certificates-java hook; when it exists (and
	// the family is debian), removals are also deleted from JavaKeystore.
	// Defaults: /etc/ca-certificates/update.d/jks-keystore,
	// /etc/ssl/certs/java/cacerts, /usr/bin/keytool, "changeit".
	JavaHook, JavaKeystore, Keytool, JavaStorePass string
}

// Store is the Linux system store. Safe for concurrent use.
type Store struct {
	fam    Family
	famErr error
	run    platform.Runner
	log    hclog.Logger
	java   javaHook

	refreshes atomic.Int64

	mu sync.RWMutex // held for writing by Apply, for reading by List

	bmu    sync.Mutex // guards bcache
	bcache bundleCache
}

type javaHook struct {
	hook, keystore, keytool, pass string
}

// New returns the store for this machine (or for opts.Family). Problems with
// the distribution are reported by Check, not here.
func New(opts Options) *Store {
	s := &Store{run: opts.Runner, log: opts.Logger}
	if s.run == nil {
		s.run = &platform.ExecRunner{}
	}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	s.log = s.log.Named(Name)
	if opts.Family != nil {
		s.fam = *opts.Family
	} else {
		osr, err := platform.ReadOSRelease(opts.OSRelease)
		if err != nil {
			s.famErr = fmt.Errorf("%w: system: %v", trust.ErrUnavailable, err)
		} else {
			s.fam, s.famErr = Detect(osr)
		}
	}
	if opts.AnchorDir != "" {
		s.fam.AnchorDir = opts.AnchorDir
	}
	if opts.Bundle != "" {
		s.fam.Bundle = opts.Bundle
	}
	if opts.Tool != "" {
		s.fam.Tools = []string{opts.Tool}
	}
	s.java = javaHook{
		hook:     orDefault(opts.JavaHook, "/etc/ca-certificates/update.d/jks-keystore"),
		keystore: orDefault(opts.JavaKeystore, "/etc/ssl/certs/java/cacerts"),
		keytool:  orDefault(opts.Keytool, "/usr/bin/keytool"),
		pass:     orDefault(opts.JavaStorePass, "changeit"),
	}
	return s
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Name implements trust.Store.
func (s *Store) Name() string { return Name }

// Family returns the distro row in use.
func (s *Store) Family() Family { return s.fam }

// Refreshes returns how many times the refresh tool has run.
func (s *Store) Refreshes() int { return int(s.refreshes.Load()) }

// Check implements trust.Store: the distribution is one we serve and its
// refresh tool is installed.
func (s *Store) Check(ctx context.Context) error {
	_, err := s.resolve()
	return err
}

// resolve returns the refresh tool's path, or why the store is unusable.
func (s *Store) resolve() (string, error) {
	if s.famErr != nil {
		return "", s.famErr
	}
	if s.fam.Unsupported != "" {
		return "", fmt.Errorf("%w: system (%s): %s", trust.ErrUnavailable, s.fam.Name, s.fam.Unsupported)
	}
	if !filepath.IsAbs(s.fam.AnchorDir) || !filepath.IsAbs(s.fam.Bundle) {
		return "", fmt.Errorf("%w: system: anchor directory %q and bundle %q must be absolute", trust.ErrUnavailable, s.fam.AnchorDir, s.fam.Bundle)
	}
	for _, t := range s.fam.Tools {
		if !filepath.IsAbs(t) {
			continue
		}
		if st, err := os.Stat(t); err == nil && !st.IsDir() && st.Mode().Perm()&0o111 != 0 {
			return t, nil
		}
	}
	return "", fmt.Errorf("%w: system (%s): refresh tool not found (looked for %s): install the %s package",
		trust.ErrUnavailable, s.fam.Name, strings.Join(s.fam.Tools, ", "), s.fam.Package)
}

// ourName is the only file name we ever write for fp.
func (s *Store) ourName(fp trust.Fingerprint) string { return trust.Tag + "-" + fp.Hex() + s.fam.Ext }

// anchorFile is one file in the anchor directory the refresh tool reads.
type anchorFile struct {
	path  string
	certs []*trust.Cert
	// ours reports whether the file has our name for the one certificate
	// it holds.
	ours bool
}

// scanAnchors reads every file the refresh tool would read. Files that do
// not parse as certificates are ignored: they are not ours and trust
// nothing.
func (s *Store) scanAnchors() ([]anchorFile, error) {
	var out []anchorFile
	root := s.fam.AnchorDir
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if d.IsDir() {
			// Our own temporary files are never anchors (and never end in
			// .crt, Debian's only extension); p11-kit reads no subdirectory.
			if p != root && (s.fam.Flat || d.Name() == atomicfile.TempDirName) {
				return fs.SkipDir
			}
			return nil
		}
		if !s.fam.consumes(d.Name()) {
			return nil
		}
		// Follows a symlink to a file, as find -L does; a link to a
		// directory is not descended.
		st, err := os.Stat(p)
		if err != nil || !st.Mode().IsRegular() || st.Size() > maxAnchorFile {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		certs := parseCerts(data)
		if len(certs) == 0 {
			return nil
		}
		af := anchorFile{path: p, certs: certs}
		af.ours = filepath.Dir(p) == filepath.Clean(root) && len(certs) == 1 && d.Name() == s.ourName(certs[0].FP)
		out = append(out, af)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("linuxca: scan %s: %w", root, err)
	}
	return out, nil
}

// parseCerts returns the certificates in PEM data, or the one DER
// certificate data is (p11-kit accepts both).
func parseCerts(data []byte) []*trust.Cert {
	if bytes.Contains(data, []byte("-----BEGIN")) {
		cs, err := trust.ParsePEM(data)
		if err != nil {
			return nil
		}
		return cs
	}
	c, err := x509.ParseCertificate(data)
	if err != nil {
		return nil
	}
	return []*trust.Cert{trust.NewCert(c)}
}

// bundleCache keeps what the bundle holds while its file is unchanged, so
// a List every few seconds does not re-parse 150 roots.
type bundleCache struct {
	key   filestamp.Stamp
	roots bundleRoots
}

// bundleRoots are the certificates of the extracted bundle: fingerprints
// and subjects, not the parsed certificates (a daemon would hold ~150 of
// them for nothing).
type bundleRoots map[trust.Fingerprint]string

// holds reports whether the bundle holds fp.
func (b bundleRoots) holds(fp trust.Fingerprint) bool {
	_, ok := b[fp]
	return ok
}

// readBundle returns the certificates in the extracted bundle; a missing
// bundle is empty.
func (s *Store) readBundle() (bundleRoots, error) {
	key, err := filestamp.Of(s.fam.Bundle)
	if errors.Is(err, fs.ErrNotExist) {
		return bundleRoots{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("linuxca: %w", err)
	}
	s.bmu.Lock()
	defer s.bmu.Unlock()
	if s.bcache.roots != nil && s.bcache.key == key {
		return s.bcache.roots, nil
	}
	data, err := os.ReadFile(s.fam.Bundle)
	if err != nil {
		return nil, fmt.Errorf("linuxca: read bundle: %w", err)
	}
	out := make(bundleRoots)
	// Parse block by block: one odd certificate must not hide the rest.
	for rest := data; ; {
		var c []*trust.Cert
		c, rest = nextPEMCert(rest)
		if c == nil && rest == nil {
			break
		}
		for _, x := range c {
			out[x.FP] = x.Subject()
		}
	}
	s.bcache = bundleCache{key: key, roots: out}
	return out, nil
}

// List implements trust.Store. It reads files only.
func (s *Store) List(ctx context.Context) (*trust.Inventory, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := s.resolve(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.listLocked()
}

func (s *Store) listLocked() (*trust.Inventory, error) {
	anchors, err := s.scanAnchors()
	if err != nil {
		return nil, err
	}
	bundle, err := s.readBundle()
	if err != nil {
		return nil, err
	}
	inv := &trust.Inventory{Targets: []trust.Target{{}}, OwnCopies: true}
	seen := make(map[trust.Fingerprint]bool)
	add := func(fp trust.Fingerprint, subject string, tagged bool) {
		if seen[fp] {
			return
		}
		seen[fp] = true
		inv.Entries = append(inv.Entries, trust.Entry{FP: fp, Subject: subject, Tagged: tagged})
	}
	// Ours first, so a root both we and someone else wrote is listed as
	// ours; ours only once the bundle holds it (otherwise a refresh is due).
	for _, a := range anchors {
		if a.ours && bundle.holds(a.certs[0].FP) {
			add(a.certs[0].FP, a.certs[0].Subject(), true)
		}
	}
	for _, a := range anchors {
		if !a.ours {
			for _, c := range a.certs {
				add(c.FP, c.Subject(), false)
			}
		}
	}
	for fp, subject := range bundle {
		add(fp, subject, false)
	}
	trust.SortEntries(inv.Entries)
	return inv, nil
}

// Paths implements trust.PathDeclarer for the detected distribution: the
// anchor directory (created when missing) and what its refresh tool
// writes; the anchor directory and the extracted bundle are watched (a
// rebuilt bundle without our anchor is drift too). Nothing on a
// distribution we do not write to.
func (s *Store) Paths() trust.Paths {
	if s.famErr != nil || s.fam.Unsupported != "" || s.fam.AnchorDir == "" {
		return trust.Paths{}
	}
	p := trust.Paths{
		Write:  append([]string{s.fam.AnchorDir}, s.fam.Writes...),
		Create: []string{s.fam.AnchorDir},
		Watch:  []string{s.fam.AnchorDir},
	}
	if s.fam.Bundle != "" {
		p.Watch = append(p.Watch, s.fam.Bundle)
	}
	return p
}

// Sweep implements trust.Sweeper: leftovers of our anchor files' writes.
func (s *Store) Sweep() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return atomicfile.Sweep(s.fam.AnchorDir, func(base string) bool { return trust.IsOurFileName(base, s.fam.Ext) })
}

var (
	_ trust.Sweeper      = (*Store)(nil)
	_ trust.PathDeclarer = (*Store)(nil)
)
