// Package nss is the "nss" trust store: every NSS database of every local
// user — Chrome and Chromium's ~/.pki/nssdb (and ~/.local/share/pki/nssdb,
// snap Chromium's copy), every Firefox profile named by any profiles.ini
// (deb, snap, flatpak, ~/.config/mozilla) — plus the system-wide
// /etc/pki/nssdb. Firefox and Chromium on Linux do not read the OS store,
// so this is how a root reaches them.
//
// Targets are (user, database). certutil runs as the database's owner (so
// every file stays theirs), adds roots with trust "C,," (a CA trusted for
// TLS servers) under the nickname "certagent <sha256 hex>", and lists and
// removes by fingerprint. A user without any database is reported Skipped
// "no NSS database", never as success. We create a database for nobody,
// with one exception: a user who runs a Chromium-based browser (its profile
// directory exists) but has neither ~/.pki/nssdb nor
// ~/.local/share/pki/nssdb gets ~/.pki/nssdb on the first install, owned by
// them. Chromium before 146 reads that database but never creates it;
// Chromium 146+ (measured: Debian's 156) creates ~/.local/share/pki/nssdb
// on its first certificate check, but still reads ~/.pki/nssdb when that
// exists (TestChromium proves both).
//
// List runs no command when nothing changed: each database's listing is
// cached under the (size, mtime, inode) of its cert9.db.
//
// Known limits: adding a root that the database already holds under another
// nickname only sets its trust (NSS keeps one entry, under the first
// nickname), and that entry is then listed as someone else's. Trust that
// Firefox itself wrote with its newer bundled NSS reads as ",," to the
// system certutil, so such roots are not listed.
package nss

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/internal/filestamp"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
)

// Name is the store's config name.
const Name = "nss"

// DefaultCertutil is certutil's path on every distro we serve.
const DefaultCertutil = "/usr/bin/certutil"

// DefaultSystemDB is the system-wide NSS database (Fedora creates it; it is
// read by NSS programs that use the system database).
const DefaultSystemDB = "/etc/pki/nssdb"

// Errors.
var (
	// ErrUnknownTarget is a Change for a database this store does not serve.
	ErrUnknownTarget = errors.New("nss: unknown target")
	// ErrBadChange is a malformed Change.
	ErrBadChange = trust.ErrBadChange
)

// Options configure the store.
type Options struct {
	// Users returns the local users; nil means a platform.UserLister over
	// UsersOptions (directory lookups cached while the homes stay the same).
	Users func() ([]platform.User, error)
	// UsersOptions are passed to platform.LocalUsers (passwd path, uid range).
	UsersOptions platform.UsersOptions
	// SystemDB is the system-wide database; "" means DefaultSystemDB, "-"
	// means none.
	SystemDB string
	// Certutil is certutil's absolute path; "" means DefaultCertutil.
	Certutil string
	// OSRelease is the os-release file, for the "install this package" hint.
	OSRelease string
	// Workers bounds how many databases are changed at once (default 4).
	Workers int
	// Runner runs certutil; nil means a new platform.ExecRunner.
	Runner platform.Runner
	// CacheFile, if set, keeps the databases' listings across processes
	// (a one-shot `certagent sync` next to the daemon, a restart), each
	// under its cert9.db's stamp, so a pass with nothing to change runs no
	// certutil at all. It should live in the agent's state directory.
	CacheFile string
	// Logger; nil means none.
	Logger hclog.Logger
}

// Store is the NSS store. Safe for concurrent use.
type Store struct {
	users func() ([]platform.User, error)
	// userSources are where the default user list comes from (watched);
	// nil when Options.Users was given.
	userSources []string
	systemDB    string
	certutil    string
	osRelease   string
	workers     int
	run         platform.Runner
	log         hclog.Logger

	runs atomic.Int64 // certutil runs, for tests

	// dbLocks serialise changes per database directory.
	dbLocks sync.Map // string → *sync.Mutex

	mu    sync.Mutex // guards cache and cacheLoaded
	cache map[string]cached
	// cacheFile is Options.CacheFile; cacheLoaded reports whether it was
	// read (once, at the first listing).
	cacheFile   string
	cacheLoaded bool
}

// cached is one database's listing while its cert9.db is unchanged.
type cached struct {
	key     filestamp.Stamp
	entries []nssEntry
}

// nssEntry is one certificate in a database, trusted for TLS.
type nssEntry struct {
	nick string
	cert *trust.Cert
	// ours reports whether the nickname is the one we write for cert.
	ours bool
	// shared reports whether other certificates have the same nickname.
	shared bool
}

// New returns the store.
func New(o Options) *Store {
	s := &Store{
		users: o.Users, systemDB: o.SystemDB, certutil: o.Certutil, osRelease: o.OSRelease,
		workers: o.Workers, run: o.Runner, log: o.Logger, cache: make(map[string]cached), cacheFile: o.CacheFile,
	}
	if s.users == nil {
		// Every pass asks; the lister asks the directory service only
		// when the homes or sessions changed.
		s.users = platform.NewUserLister(o.UsersOptions).Users
		s.userSources = o.UsersOptions.Sources()
	}
	switch s.systemDB {
	case "":
		s.systemDB = DefaultSystemDB
	case "-":
		s.systemDB = ""
	}
	if s.certutil == "" {
		s.certutil = DefaultCertutil
	}
	if s.workers <= 0 {
		s.workers = 4
	}
	if s.run == nil {
		s.run = &platform.ExecRunner{}
	}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	s.log = s.log.Named(Name)
	return s
}

// Name implements trust.Store.
func (s *Store) Name() string { return Name }

// Runs returns how many times certutil has run.
func (s *Store) Runs() int { return int(s.runs.Load()) }

// Check implements trust.Store: certutil must be installed.
func (s *Store) Check(ctx context.Context) error {
	st, err := os.Stat(s.certutil)
	if err == nil && !st.IsDir() && st.Mode().Perm()&0o111 != 0 {
		return nil
	}
	return fmt.Errorf("%w: nss: %s not found: install %s", trust.ErrUnavailable, s.certutil, s.certutilPackage())
}

// certutilPackage names the package that ships certutil on this distro.
func (s *Store) certutilPackage() string {
	osr, err := platform.ReadOSRelease(s.osRelease)
	if err != nil {
		return "libnss3-tools (Debian, Ubuntu), nss-tools (Fedora, RHEL, Alpine), mozilla-nss-tools (SUSE) or nss (Arch)"
	}
	for _, id := range osr.IDs() {
		switch id {
		case "debian", "ubuntu":
			return "libnss3-tools"
		case "fedora", "rhel", "centos", "amzn", "alpine":
			return "nss-tools"
		case "suse", "opensuse", "sles":
			return "mozilla-nss-tools"
		case "arch":
			return "nss"
		}
	}
	return "the NSS tools package (libnss3-tools, nss-tools or nss)"
}

// List implements trust.Store.
func (s *Store) List(ctx context.Context) (*trust.Inventory, error) {
	if err := s.Check(ctx); err != nil {
		return nil, err
	}
	dbs, skips, err := s.discover()
	if err != nil {
		return nil, fmt.Errorf("nss: %w", err)
	}
	inv := &trust.Inventory{Skipped: skips}
	for _, d := range dbs {
		inv.Targets = append(inv.Targets, d.target)
		if d.create && dbState(d.dir) == dbNone {
			continue
		}
		unlock := s.lockDB(d.dir)
		es, err := s.listDB(ctx, d)
		unlock()
		if err != nil {
			return nil, err
		}
		seen := make(map[trust.Fingerprint]bool)
		for _, e := range es {
			if seen[e.cert.FP] {
				continue
			}
			seen[e.cert.FP] = true
			inv.Entries = append(inv.Entries, trust.Entry{FP: e.cert.FP, Target: d.target, Subject: e.cert.Subject(), Tagged: e.ours})
		}
	}
	trust.SortEntries(inv.Entries)
	return inv, nil
}

// listDB returns d's TLS-trusted certificates, from the cache when cert9.db
// is unchanged. The caller holds d's lock. (Timestamps tick coarsely, so a
// foreign write in the same tick as our listing that keeps the size could
// go unseen until the next change; our own writes always invalidate.)
func (s *Store) listDB(ctx context.Context, d db) ([]nssEntry, error) {
	key, err := filestamp.Of(filepath.Join(d.dir, "cert9.db"))
	if err != nil {
		return nil, fmt.Errorf("nss: %s: %w", d.target, err)
	}
	s.mu.Lock()
	s.loadCacheLocked()
	c, ok := s.cache[d.dir]
	s.mu.Unlock()
	if ok && c.key == key {
		return c.entries, nil
	}
	// What the last listing knew stands in for exports of our own
	// nicknames (they name the fingerprint they hold).
	return s.listAndCache(ctx, d, key, knownCerts(c.entries, nil))
}

// knownCerts maps our nicknames to the certificates they hold, from a
// previous listing and from roots just added.
func knownCerts(es []nssEntry, added []*trust.Cert) map[string]*trust.Cert {
	m := make(map[string]*trust.Cert, len(es)+len(added))
	for _, e := range es {
		if e.ours && !e.shared {
			m[e.nick] = e.cert
		}
	}
	for _, c := range added {
		m[nickname(c.FP)] = c
	}
	return m
}

func (s *Store) certutilCmd(d db, args ...string) platform.Cmd {
	return platform.Cmd{Path: s.certutil, Args: append([]string{"-d", "sql:" + d.dir}, args...), As: d.user}
}

func (s *Store) runCertutil(ctx context.Context, c platform.Cmd) ([]byte, error) {
	s.runs.Add(1)
	return s.run.Run(ctx, c)
}

// listDBNow runs certutil -L, then -L -n NICK -a for every nickname
// trusted for TLS, to learn the certificates' fingerprints; except for our
// own nicknames ("certagent <sha256>") that known already holds, as long
// as the listing shows each once: those name their fingerprint, so a
// verification after adding 9 roots is one listing, not 9 exports.
func (s *Store) listDBNow(ctx context.Context, d db, known map[string]*trust.Cert) ([]nssEntry, error) {
	out, err := s.runCertutil(ctx, s.certutilCmd(d, "-L"))
	if err != nil {
		return nil, fmt.Errorf("nss: certutil -L (%s): %w", d.target, err)
	}
	lines := parseList(out)
	count := make(map[string]int)
	for _, l := range lines {
		count[l.nick]++
	}
	var es []nssEntry
	done := make(map[string]bool)
	for _, l := range lines {
		if done[l.nick] || !trustedForTLS(l.trust) {
			continue
		}
		done[l.nick] = true
		if c := known[l.nick]; c != nil && count[l.nick] == 1 && l.nick == nickname(c.FP) {
			es = append(es, nssEntry{nick: l.nick, cert: c, ours: true})
			continue
		}
		pemOut, err := s.runCertutil(ctx, s.certutilCmd(d, "-L", "-n", l.nick, "-a"))
		if err != nil {
			return nil, fmt.Errorf("nss: certutil -L -n %q (%s): %w", l.nick, d.target, err)
		}
		certs, err := trust.ParsePEM(pemOut)
		if err != nil {
			return nil, fmt.Errorf("nss: certutil -L -n %q (%s): %w", l.nick, d.target, err)
		}
		for _, c := range certs {
			es = append(es, nssEntry{nick: l.nick, cert: c, ours: l.nick == nickname(c.FP), shared: count[l.nick] > 1 || len(certs) > 1})
		}
	}
	return es, nil
}

// nickname is the nickname we give fp: our tag and the full fingerprint,
// so listing and removal are exact.
func nickname(fp trust.Fingerprint) string { return trust.Tag + " " + fp.Hex() }

// invalidate forgets dir's listing and returns it, so the relisting can
// reuse what it knew.
func (s *Store) invalidate(dir string) []nssEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cache[dir]
	delete(s.cache, dir)
	return c.entries
}

func (s *Store) lockDB(dir string) func() {
	m, _ := s.dbLocks.LoadOrStore(dir, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// relistDB lists d after a change, with known standing in for exports of
// our own nicknames, and caches the result. The caller holds d's lock.
func (s *Store) relistDB(ctx context.Context, d db, known map[string]*trust.Cert) ([]nssEntry, error) {
	// Stamped before the listing, as in listDB: a write after it moves
	// the stamp, so the next pass lists again.
	key, err := filestamp.Of(filepath.Join(d.dir, "cert9.db"))
	if err != nil {
		return nil, fmt.Errorf("nss: %s: %w", d.target, err)
	}
	return s.listAndCache(ctx, d, key, known)
}

// listAndCache lists d (listDBNow) and caches the result under key, the
// stamp taken before the listing. The caller holds d's lock.
func (s *Store) listAndCache(ctx context.Context, d db, key filestamp.Stamp, known map[string]*trust.Cert) ([]nssEntry, error) {
	es, err := s.listDBNow(ctx, d, known)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.cache[d.dir] = cached{key: key, entries: es}
	s.saveCacheLocked()
	s.mu.Unlock()
	return es, nil
}
