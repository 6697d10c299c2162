// Package javaks is the "java" trust store: the cacerts keystore of every
// JDK found on the machine — under /usr/lib/jvm (and /usr/lib64/jvm), the
// JDK the alternatives "java" link points at, and $JAVA_HOME when the agent
// was started with one. Java does not read the OS store on Linux.
//
// A keystore that is a link into the distribution's own Java keystore
// (Debian's /etc/ssl/certs/java/cacerts, Fedora's
// /etc/pki/ca-trust/extracted/java/cacerts, ...) is skipped with "follows the
// system store": the system store's refresh regenerates it, and a root
// written there directly would be lost at the next refresh. (Debian's
// ca-certificates-java hook never removes a deleted anchor from it; the
// system store's adapter, trust/linuxca, deletes that alias itself.)
//
// keytool runs with an absolute path (the JDK's own, else /usr/bin/keytool),
// the store password from the environment (never in argv), alias
// "certagent-<sha256 hex>". Roots are matched by the SHA256 line of
// `keytool -list -v`; that listing is cached under the keystore file's
// (size, mtime, inode), so a pass with nothing to change starts no JVM.
package javaks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/internal/filestamp"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
)

// Name is the store's config name.
const Name = "java"

// Defaults.
var (
	DefaultJVMDirs = []string{"/usr/lib/jvm", "/usr/lib64/jvm"}
	// DefaultSystemStores are the distributions' generated Java keystores.
	DefaultSystemStores = []string{
		"/etc/ssl/certs/java/cacerts",                     // Debian, Ubuntu (ca-certificates-java)
		"/etc/pki/ca-trust/extracted/java/cacerts",        // Fedora, RHEL (update-ca-trust)
		"/etc/pki/java/cacerts",                           // older RHEL link name
		"/etc/ca-certificates/extracted/java-cacerts.jks", // Arch (trust extract-compat)
		"/var/lib/ca-certificates/java-cacerts",           // openSUSE
		"/etc/ssl/certs/java-cacerts",                     // Alpine (java-cacerts)
	}
)

const (
	defaultKeytool   = "/usr/bin/keytool"
	defaultJavaLink  = "/etc/alternatives/java"
	defaultStorePass = "changeit"
	storePassEnv     = "CERTAGENT_STOREPASS"
)

// Errors.
var (
	ErrUnknownTarget = errors.New("javaks: unknown target")
	ErrBadChange     = trust.ErrBadChange
)

// Options configure the store; every path can be overridden for tests.
type Options struct {
	// JVMDirs hold one JDK per subdirectory; nil means DefaultJVMDirs.
	JVMDirs []string
	// JavaLink is the alternatives link to the default java binary; ""
	// means /etc/alternatives/java, "-" none.
	JavaLink string
	// JavaHome is an extra JDK (the agent passes $JAVA_HOME; "" none).
	JavaHome string
	// SystemStores are keystores the system store generates; nil means
	// DefaultSystemStores.
	SystemStores []string
	// Keytool is used when a JDK has no bin/keytool; "" means /usr/bin/keytool.
	Keytool string
	// StorePass is the keystores' password; "" means "changeit".
	StorePass string
	// Runner runs keytool; nil means a new platform.ExecRunner.
	Runner platform.Runner
	// Logger; nil means none.
	Logger hclog.Logger
}

// Store is the Java store. Safe for concurrent use.
type Store struct {
	o    Options
	run  platform.Runner
	log  hclog.Logger
	runs atomic.Int64

	locks sync.Map // keystore path → *sync.Mutex

	mu    sync.Mutex // guards cache
	cache map[string]cached
}

type cached struct {
	key     filestamp.Stamp
	entries []alias
}

// alias is one trusted certificate entry.
type alias struct {
	name string
	fp   trust.Fingerprint
	// subject is keytool's Owner line.
	subject string
}

// keystore is one target.
type keystore struct {
	path    string // resolved, absolute
	keytool string
}

// New returns the store.
func New(o Options) *Store {
	if o.JVMDirs == nil {
		o.JVMDirs = DefaultJVMDirs
	}
	switch o.JavaLink {
	case "":
		o.JavaLink = defaultJavaLink
	case "-":
		o.JavaLink = ""
	}
	if o.SystemStores == nil {
		o.SystemStores = DefaultSystemStores
	}
	if o.Keytool == "" {
		o.Keytool = defaultKeytool
	}
	if o.StorePass == "" {
		o.StorePass = defaultStorePass
	}
	s := &Store{o: o, run: o.Runner, log: o.Logger, cache: make(map[string]cached)}
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

// Paths implements trust.PathDeclarer: keytool rewrites the JDKs' own
// cacerts under the JVM directories (and $JAVA_HOME); the distributions'
// generated keystores are the system store's. Nothing is watched: a
// keystore changes only through keytool, and polling repairs it.
func (s *Store) Paths() trust.Paths {
	w := append([]string(nil), s.o.JVMDirs...)
	if s.o.JavaHome != "" {
		w = append(w, s.o.JavaHome)
	}
	return trust.Paths{Write: w}
}

var _ trust.PathDeclarer = (*Store)(nil)

// Runs returns how many times keytool has run.
func (s *Store) Runs() int { return int(s.runs.Load()) }

// Check implements trust.Store: at least one JDK keystore (served or
// skipped) exists, and keytool is there for the served ones.
func (s *Store) Check(ctx context.Context) error {
	kss, skips := s.discover()
	if len(kss) == 0 && len(skips) == 0 {
		return fmt.Errorf("%w: java: no JDK found (looked in %s, %s and $JAVA_HOME)", trust.ErrUnavailable, strings.Join(s.o.JVMDirs, ", "), s.o.JavaLink)
	}
	for _, k := range kss {
		if !isExecutable(k.keytool) {
			return fmt.Errorf("%w: java: keytool not found for %s (looked for %s): install a JDK (default-jdk-headless, java-latest-openjdk-headless)", trust.ErrUnavailable, k.path, k.keytool)
		}
	}
	return nil
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode().Perm()&0o111 != 0
}

// discover finds the JDK keystores.
func (s *Store) discover() ([]keystore, []trust.Skip) {
	var homes []string
	for _, d := range s.o.JVMDirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			homes = append(homes, filepath.Join(d, e.Name()))
		}
	}
	if s.o.JavaLink != "" {
		if bin, err := filepath.EvalSymlinks(s.o.JavaLink); err == nil {
			// .../bin/java → the JDK (or JRE) home.
			homes = append(homes, filepath.Dir(filepath.Dir(bin)))
		}
	}
	if s.o.JavaHome != "" && filepath.IsAbs(s.o.JavaHome) {
		homes = append(homes, filepath.Clean(s.o.JavaHome))
	}
	system := make(map[string]bool)
	for _, p := range s.o.SystemStores {
		system[p] = true
		if r, err := filepath.EvalSymlinks(p); err == nil {
			system[r] = true
		}
	}
	var kss []keystore
	var skips []trust.Skip
	seen := make(map[string]bool)
	for _, home := range homes {
		for _, rel := range []string{"lib/security/cacerts", "jre/lib/security/cacerts"} {
			p := filepath.Join(home, rel)
			if _, err := os.Lstat(p); err != nil {
				continue
			}
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				continue // a dangling link
			}
			if seen[real] {
				continue
			}
			seen[real] = true
			if system[real] || system[p] {
				skips = append(skips, trust.Skip{Target: trust.Target{Path: p}, Reason: "follows the system store (" + real + ")"})
				continue
			}
			if st, err := os.Stat(real); err != nil || !st.Mode().IsRegular() {
				continue
			}
			kt := filepath.Join(home, "bin", "keytool")
			if !isExecutable(kt) {
				kt = s.o.Keytool
			}
			kss = append(kss, keystore{path: real, keytool: kt})
		}
	}
	return kss, skips
}

// List implements trust.Store.
func (s *Store) List(ctx context.Context) (*trust.Inventory, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	kss, skips := s.discover()
	// Every writer keeps its own alias, and ours are Tagged: a root we
	// installed that only someone else's alias still holds is not ours
	// any more (and removing it would delete their alias).
	inv := &trust.Inventory{Skipped: skips, OwnCopies: true}
	for _, k := range kss {
		t := trust.Target{Path: k.path}
		inv.Targets = append(inv.Targets, t)
		unlock := s.lock(k.path)
		as, err := s.listKS(ctx, k)
		unlock()
		if err != nil {
			return nil, err
		}
		seen := make(map[trust.Fingerprint]bool)
		for _, a := range as {
			if seen[a.fp] {
				continue
			}
			seen[a.fp] = true
			inv.Entries = append(inv.Entries, trust.Entry{FP: a.fp, Target: t, Subject: a.subject, Tagged: isOurs(as, a.fp)})
		}
	}
	trust.SortEntries(inv.Entries)
	return inv, nil
}

// aliasFor is the alias we give fp.
func aliasFor(fp trust.Fingerprint) string { return trust.Tag + "-" + fp.Hex() }

func isOurs(as []alias, fp trust.Fingerprint) bool {
	for _, a := range as {
		if a.fp == fp && a.name == aliasFor(fp) {
			return true
		}
	}
	return false
}

func (s *Store) lock(p string) func() {
	m, _ := s.locks.LoadOrStore(p, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// listKS returns k's trusted certificates, from the cache when the file is
// unchanged. The caller holds k's lock.
func (s *Store) listKS(ctx context.Context, k keystore) ([]alias, error) {
	key, err := filestamp.Of(k.path)
	if err != nil {
		return nil, fmt.Errorf("javaks: %w", err)
	}
	s.mu.Lock()
	c, ok := s.cache[k.path]
	s.mu.Unlock()
	if ok && c.key == key {
		return c.entries, nil
	}
	out, err := s.keytool(ctx, k, "-list", "-v")
	if err != nil {
		return nil, fmt.Errorf("javaks: keytool -list (%s): %w", k.path, err)
	}
	as, err := parseList(out)
	if err != nil {
		return nil, fmt.Errorf("javaks: keytool -list (%s): %w", k.path, err)
	}
	s.mu.Lock()
	s.cache[k.path] = cached{key: key, entries: as}
	s.mu.Unlock()
	return as, nil
}

func (s *Store) keytool(ctx context.Context, k keystore, args ...string) ([]byte, error) {
	return s.keytoolIn(ctx, k, nil, args...)
}

func (s *Store) keytoolIn(ctx context.Context, k keystore, stdin []byte, args ...string) ([]byte, error) {
	s.runs.Add(1)
	return s.run.Run(ctx, platform.Cmd{
		Path:  k.keytool,
		Args:  append(args, "-keystore", k.path, "-storepass:env", storePassEnv),
		Stdin: stdin,
		// The password travels in the environment, not in argv (ps).
		Env: []string{"PATH=" + platform.DefaultPath, "LANG=C", "LC_ALL=C", storePassEnv + "=" + s.o.StorePass},
	})
}

// parseList reads `keytool -list -v`: each "Alias name:" block with entry
// type trustedCertEntry and its "SHA256:" fingerprint line. Key entries
// are not roots and are left out.
func parseList(out []byte) ([]alias, error) {
	var res []alias
	var cur *alias
	trusted := false
	flush := func() {
		if cur != nil && trusted && !cur.fp.IsZero() {
			res = append(res, *cur)
		}
		cur, trusted = nil, false
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "Alias name:"):
			flush()
			cur = &alias{name: strings.TrimSpace(strings.TrimPrefix(line, "Alias name:"))}
		case cur == nil:
		case strings.HasPrefix(line, "Entry type:"):
			trusted = strings.Contains(line, "trustedCertEntry")
		case strings.HasPrefix(line, "Owner:") && cur.subject == "":
			cur.subject = strings.TrimSpace(strings.TrimPrefix(line, "Owner:"))
		case strings.HasPrefix(line, "SHA256:") && cur.fp.IsZero():
			fp, err := trust.ParseFingerprint(strings.TrimSpace(strings.TrimPrefix(line, "SHA256:")))
			if err != nil {
				return nil, fmt.Errorf("alias %q: %w", cur.name, err)
			}
			cur.fp = fp
		}
	}
	flush()
	return res, sc.Err()
}
