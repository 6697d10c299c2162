// Package bundle is the "bundle:PATH" trust store: one PEM file holding the
// platform's system roots plus certagent's, for tools that take a CA file
// (NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE, SSL_CERT_FILE, git
// http.sslCAInfo).
//
// The file has three parts. A system section between
// "# certagent-system-roots begin" and "…end" lines is copied from the
// distro's CA bundle on every write, so a root the distro adds or distrusts
// follows at the next write (Apply, or Refresh which the agent calls every
// pass); a system root cannot be removed through this store (the result is
// Skipped with the file to fix), because the next write would bring it back.
// Each of certagent's roots is preceded by a "# certagent: <sha-256 hex>"
// line, which makes it Tagged. Any other certificate, one an administrator
// appended by hand, is kept as it is and can be removed by its exact
// fingerprint, like a retired root.
//
// On macOS and Windows there is no system bundle file: the bundle holds only
// certagent's roots and its header says so.
//
// A file at PATH that certagent did not write (no header) is never
// overwritten, nor is the system bundle itself.
package bundle

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/certagent/certagent/internal/atomicfile"
	"github.com/certagent/certagent/internal/filestamp"
	"github.com/certagent/certagent/trust"
)

// FileMode is the bundle's mode: roots are public and every tool must read
// them.
const FileMode fs.FileMode = 0o644

// Markers of the file format.
const (
	headerLine  = "# certagent bundle: system roots plus the roots certagent installs."
	systemBegin = "# certagent-system-roots begin"
	systemEnd   = "# certagent-system-roots end"
	ourMarker   = "# " + trust.Tag + ": "
)

// Sentinel errors.
var (
	// ErrNotOurs is wrapped when PATH holds a file certagent did not write.
	ErrNotOurs = errors.New("trust/bundle: file was not written by certagent")
	// ErrSystemRoot is wrapped in the reason of a removal that cannot be
	// done here because the root comes from the system bundle.
	ErrSystemRoot = errors.New("trust/bundle: root comes from the system bundle")
)

// Option configures a Store.
type Option func(*Store)

// WithSystemRoots replaces the distro bundle paths with paths: the first
// that exists supplies the system roots. No paths means no system roots.
// Tests use it so they never read /etc.
func WithSystemRoots(paths ...string) Option {
	return func(s *Store) { s.sources = append([]string(nil), paths...) }
}

// Store is a bundle: store, safe for concurrent use.
type Store struct {
	path    string
	sources []string

	// mu serialises writes against reads of the bundle in this process.
	mu sync.Mutex
	// subjects are the subjects of the certificates in the bundle as the
	// readers last parsed it, by fingerprint ("" when a block does not
	// parse); replaced with each parse so it never outgrows the file.
	// Guarded by mu.
	subjects map[trust.Fingerprint]string
	// fresh, when set, holds the stamps of the system roots file and of
	// the bundle when Refresh last found the bundle up to date: while both
	// stay the same, Refresh reads nothing. Any write clears it. Guarded by
	// mu.
	fresh *freshness
	// shared is the last content List or Check parsed, with the bundle's
	// stamp then: while the file keeps it, a quiet pass parses nothing.
	// It keeps fingerprints, not the bytes (the file and each block's DER,
	// a few hundred KiB a daemon would hold for nothing). Read-only;
	// writers read the file afresh. Guarded by mu.
	shared *sharedContent
}

type sharedContent struct {
	stamp filestamp.Stamp
	c     *content
}

// freshness is what Refresh saw the last time it had nothing to do.
type freshness struct {
	src, dst filestamp.Stamp
}

// stamps returns the current stamps of the system roots file and the
// bundle; ok is false when either cannot be read.
func (s *Store) stamps() (f freshness, ok bool) {
	src, err := s.findSource()
	if err != nil {
		return f, false
	}
	// No system roots file (macOS, Windows): its stamp stays zero.
	if src != "" {
		if f.src, err = filestamp.Of(src); err != nil {
			return f, false
		}
	}
	if f.dst, err = filestamp.Of(s.path); err != nil {
		return f, false
	}
	return f, true
}

// New returns the store for the bundle file at path.
func New(path string, opts ...Option) *Store {
	s := &Store{path: filepath.Clean(path), sources: defaultSources}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Name implements trust.Store.
func (s *Store) Name() string { return "bundle:" + s.path }

// Path returns the bundle file.
func (s *Store) Path() string { return s.path }

// block is one certificate of the bundle.
type block struct {
	fp  trust.Fingerprint
	der []byte
	// typ is the PEM type; hand-added blocks may be other than CERTIFICATE
	// and are kept verbatim.
	typ string
}

// content is a parsed bundle file.
type content struct {
	exists  bool
	ours    bool // has our header
	raw     []byte
	mode    fs.FileMode
	system  []block
	tagged  []block
	foreign []block
}

// source is the system bundle as read now.
type source struct {
	path   string // "" when there is none
	blocks []block
}

// SystemRootsFile returns the system bundle the store copies, or "" when
// none of its candidates exists.
func (s *Store) SystemRootsFile() string {
	p, _ := s.findSource()
	return p
}

func (s *Store) findSource() (string, error) {
	for _, p := range s.sources {
		st, err := os.Stat(p)
		if err == nil && st.Mode().IsRegular() {
			return p, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			// An unreadable system bundle must not silently become "no
			// system roots": tools would lose every public root.
			return "", fmt.Errorf("trust/bundle: system roots %s: %w", p, err)
		}
	}
	return "", nil
}

func (s *Store) readSource() (*source, error) {
	p, err := s.findSource()
	if err != nil || p == "" {
		return &source{}, err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("trust/bundle: reading system roots %s: %w", p, err)
	}
	src := &source{path: p}
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		// Copied without parsing: a root Go's parser is strict about is
		// still a root OpenSSL and Node accept.
		if b.Type == "CERTIFICATE" {
			src.blocks = append(src.blocks, block{fp: trust.FingerprintOf(b.Bytes), der: b.Bytes, typ: b.Type})
		}
	}
	return src, nil
}

// sameFile reports whether the bundle path is the system bundle itself.
func (s *Store) sameFile(src string) bool {
	if src == "" {
		return false
	}
	if filepath.Clean(src) == s.path {
		return true
	}
	a, err1 := os.Stat(src)
	b, err2 := os.Stat(s.path)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// read parses the bundle file. A missing file is an empty, not-yet-ours
// bundle.
// readShared is read for readers that change nothing (List, Check): the
// content parsed last time while the file keeps its stamp. The caller
// holds mu and must not modify the result.
func (s *Store) readShared() (*content, error) {
	st, err := filestamp.Of(s.path)
	if err == nil && s.shared != nil && s.shared.stamp == st {
		return s.shared.c, nil
	}
	s.shared = nil
	c, rerr := s.read()
	if rerr != nil {
		return nil, rerr
	}
	subjects := make(map[trust.Fingerprint]string, len(c.system)+len(c.tagged)+len(c.foreign))
	for _, blocks := range [][]block{c.system, c.foreign, c.tagged} {
		for i := range blocks {
			bl := &blocks[i]
			if _, ok := subjects[bl.fp]; !ok && bl.typ == "CERTIFICATE" {
				subjects[bl.fp] = s.subject(*bl)
			}
			bl.der = nil
		}
	}
	c.raw = nil
	s.subjects = subjects
	if err == nil {
		// Stamped before the read: a write in between moves the stamp
		// and the next reader parses again.
		s.shared = &sharedContent{stamp: st, c: c}
	}
	return c, nil
}

func (s *Store) read() (*content, error) {
	c := &content{}
	st, err := os.Stat(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("trust/bundle: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("trust/bundle: %s is not a regular file", s.path)
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return nil, fmt.Errorf("trust/bundle: %w", err)
	}
	c.exists, c.raw, c.mode = true, data, st.Mode().Perm()
	c.ours = bytes.HasPrefix(data, []byte(headerLine))
	if err := parse(data, c); err != nil {
		return nil, fmt.Errorf("trust/bundle: %s: %w", s.path, err)
	}
	return c, nil
}

// parse splits data into system, tagged and foreign blocks. A block is ours
// only when the marker right before it names its own fingerprint.
func parse(data []byte, c *content) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	var (
		inSystem bool
		marker   string // fingerprint hex of the last "# certagent:" line
		inBlock  bool
		buf      []byte
		start    int
	)
	var (
		beginPEM  = []byte("-----BEGIN ")
		endPEM    = []byte("-----END ")
		sysBegin  = []byte(systemBegin)
		sysEnd    = []byte(systemEnd)
		ourPrefix = []byte(ourMarker)
	)
	// Bytes, not Text: a system section is thousands of lines and a pass
	// should not allocate a string for each.
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimRight(sc.Bytes(), "\r")
		if inBlock {
			if bytes.HasPrefix(line, beginPEM) {
				return fmt.Errorf("line %d: PEM block starting at line %d never ends", n, start)
			}
			buf = append(append(buf, line...), '\n')
			if !bytes.HasPrefix(line, endPEM) {
				continue
			}
			inBlock = false
			pb, rest := pem.Decode(buf)
			if pb == nil || len(pb.Bytes) == 0 || len(bytes.TrimSpace(rest)) != 0 {
				return fmt.Errorf("line %d: corrupt PEM block", start)
			}
			b := block{typ: pb.Type, der: pb.Bytes}
			if pb.Type == "CERTIFICATE" {
				b.fp = trust.FingerprintOf(pb.Bytes)
			}
			switch {
			case inSystem:
				c.system = append(c.system, b)
			case marker != "" && b.typ == "CERTIFICATE" && marker == b.fp.Hex():
				c.tagged = append(c.tagged, b)
			default:
				c.foreign = append(c.foreign, b)
			}
			marker = ""
			continue
		}
		switch {
		case bytes.HasPrefix(line, beginPEM):
			inBlock, start = true, n
			buf = append(append(buf[:0], line...), '\n')
		case bytes.HasPrefix(line, sysBegin):
			inSystem = true
		case bytes.HasPrefix(line, sysEnd):
			inSystem = false
		case bytes.HasPrefix(line, ourPrefix):
			marker = strings.ToLower(string(bytes.TrimSpace(line[len(ourPrefix):])))
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if inBlock {
		return fmt.Errorf("line %d: PEM block never ends", start)
	}
	return nil
}

// render writes the bundle. Our roots are sorted by fingerprint and nothing
// time-dependent is written, so the same inputs give the same bytes and a
// pass with nothing to change writes nothing.
func render(src *source, tagged, foreign []block, subjects map[trust.Fingerprint]string) []byte {
	var b bytes.Buffer
	// One allocation for the whole file: base64 is 4/3 of the DER plus a
	// newline every 64 characters, and each block has a few lines around.
	size := 1024
	for _, set := range [][]block{src.blocks, tagged, foreign} {
		for _, bl := range set {
			size += len(bl.der)*4/3 + len(bl.der)/48 + 200
		}
	}
	b.Grow(size)
	b.WriteString(headerLine + "\n")
	b.WriteString("# Written by certagent: the system section and the certagent entries are\n")
	b.WriteString("# rewritten at every pass; certificates added by hand elsewhere are kept.\n")
	b.WriteString("# For NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE, SSL_CERT_FILE, git http.sslCAInfo.\n")
	if src.path == "" {
		b.WriteString(noSourceNote + "\n")
	}
	b.WriteString("\n" + systemBegin)
	if src.path != "" {
		b.WriteString(": " + sanitize(src.path))
	}
	b.WriteString("\n")
	for _, bl := range src.blocks {
		writeBlock(&b, bl)
	}
	b.WriteString(systemEnd + "\n")
	if len(foreign) > 0 {
		b.WriteString("\n# Added by hand, kept by certagent:\n")
		for _, bl := range foreign {
			writeBlock(&b, bl)
		}
	}
	for _, bl := range tagged {
		b.WriteString("\n" + ourMarker + bl.fp.Hex() + "\n")
		if sub := subjects[bl.fp]; sub != "" {
			b.WriteString("# subject: " + sanitize(sub) + "\n")
		}
		writeBlock(&b, bl)
	}
	return b.Bytes()
}

func writeBlock(b *bytes.Buffer, bl block) {
	_ = pem.Encode(b, &pem.Block{Type: bl.typ, Bytes: bl.der}) // writes to memory cannot fail
}

// sanitize makes untrusted text (a certificate's subject, a path) safe in a
// comment line: no line breaks or control characters that could forge a
// marker or a PEM boundary, and a bounded length.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// Check implements trust.Store.
func (s *Store) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	src, err := s.findSource()
	if err != nil {
		return fmt.Errorf("%w: %v", trust.ErrUnavailable, err)
	}
	if s.sameFile(src) {
		return fmt.Errorf("trust/bundle: %s: %w: it is the system bundle; choose another path", s.path, trust.ErrUnavailable)
	}
	s.mu.Lock()
	c, err := s.readShared()
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: %v", trust.ErrUnavailable, err)
	}
	if c.exists && !c.ours {
		return fmt.Errorf("trust/bundle: %s: %w: %w; move it away or choose another path", s.path, trust.ErrUnavailable, ErrNotOurs)
	}
	for p := filepath.Dir(s.path); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("trust/bundle: %s: %w: %s is not a directory", s.path, trust.ErrUnavailable, p)
			}
			return nil
		}
		if filepath.Dir(p) == p {
			return fmt.Errorf("trust/bundle: %s: %w: %v", s.path, trust.ErrUnavailable, err)
		}
	}
}

// List implements trust.Store: every certificate in the bundle file as it is
// on disk, ours Tagged.
func (s *Store) List(ctx context.Context) (*trust.Inventory, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.readShared()
	if err != nil {
		return nil, err
	}
	// Each writer's block is its own and ours are Tagged: a root we
	// installed that only a hand-appended block still holds is not ours.
	inv := &trust.Inventory{Targets: []trust.Target{{}}, OwnCopies: true}
	at := make(map[trust.Fingerprint]int)
	add := func(bl block, tagged bool) {
		if bl.typ != "CERTIFICATE" {
			return
		}
		if i, ok := at[bl.fp]; ok {
			inv.Entries[i].Tagged = inv.Entries[i].Tagged || tagged
			return
		}
		// A subject is a nicety; the fingerprint is what counts.
		at[bl.fp] = len(inv.Entries)
		inv.Entries = append(inv.Entries, trust.Entry{FP: bl.fp, Tagged: tagged, Subject: s.subjects[bl.fp]})
	}
	for _, bl := range c.system {
		add(bl, false)
	}
	for _, bl := range c.foreign {
		add(bl, false)
	}
	for _, bl := range c.tagged {
		add(bl, true)
	}
	trust.SortEntries(inv.Entries)
	return inv, nil
}

// Apply implements trust.Store. The whole batch becomes at most one atomic
// write, and none when the bytes would not change.
func (s *Store) Apply(ctx context.Context, changes []trust.Change) []trust.Result {
	if len(changes) == 0 {
		return nil
	}
	b := trust.NewBatch(changes)
	s.mu.Lock()
	defer s.mu.Unlock()
	c, src, err := s.load()
	if err != nil {
		b.FailRemaining(err)
		return b.Results
	}
	tagged := make(map[trust.Fingerprint]block, len(c.tagged))
	subjects := make(map[trust.Fingerprint]string)
	for _, bl := range c.tagged {
		tagged[bl.fp] = bl
	}
	foreign := c.foreign
	system := make(map[trust.Fingerprint]bool, len(src.blocks))
	for _, bl := range src.blocks {
		system[bl.fp] = true
	}
	var changed []int
	for i, ch := range changes {
		switch {
		case ctx.Err() != nil:
			b.Results[i] = trust.Failed(ch, ctx.Err())
		case ch.Target != trust.Target{}:
			b.Results[i] = trust.Failed(ch, fmt.Errorf("trust/bundle: %s: unknown target %s (the store has one)", s.path, ch.Target))
		case ch.Validate() != nil:
			b.Results[i] = trust.Failed(ch, fmt.Errorf("trust/bundle: %s: %w", s.path, ch.Validate()))
		case ch.Op == trust.OpInstall:
			if _, ok := tagged[ch.FP]; !ok {
				tagged[ch.FP] = block{fp: ch.FP, der: ch.Cert.X509.Raw, typ: "CERTIFICATE"}
				changed = append(changed, i)
			}
			subjects[ch.FP] = ch.Cert.Subject()
			b.Results[i] = trust.OK(ch)
		default:
			// Ours alone when present: a copy an administrator appended
			// by hand is theirs. Without ours, a Foreign change names a
			// retired root and its blocks go; any other leaves them.
			hit := false
			if _, ok := tagged[ch.FP]; ok {
				delete(tagged, ch.FP)
				hit = true
			} else if !ch.Foreign {
				if !system[ch.FP] && holds(foreign, ch.FP) {
					b.Results[i] = trust.LeftAlone(ch)
					continue
				}
			} else {
				kept := foreign[:0:0]
				for _, bl := range foreign {
					if bl.typ == "CERTIFICATE" && bl.fp == ch.FP {
						hit = true
						continue
					}
					kept = append(kept, bl)
				}
				foreign = kept
			}
			if hit {
				changed = append(changed, i)
			}
			if system[ch.FP] {
				b.Results[i] = trust.Skipped(ch, fmt.Sprintf("%v: it is copied from %s at every write; remove it from the system trust store", ErrSystemRoot, src.path))
				continue
			}
			b.Results[i] = trust.OK(ch)
		}
	}
	list := make([]block, 0, len(tagged))
	for _, bl := range tagged {
		list = append(list, bl)
		if _, ok := subjects[bl.fp]; !ok {
			subjects[bl.fp] = s.subject(bl)
		}
	}
	sort.Slice(list, func(i, j int) bool { return bytes.Compare(list[i].fp[:], list[j].fp[:]) < 0 })
	if !c.exists && len(changed) == 0 {
		// Only removals of absent roots: no reason to create the file.
		return b.Results
	}
	if err := s.write(c, render(src, list, foreign, subjects)); err != nil {
		// Every change the write carried fails with it.
		for _, i := range changed {
			b.Results[i] = trust.Failed(changes[i], err)
		}
	}
	return b.Results
}

// Parts returns the fingerprints of the certificates in the bundle's system
// section and of those appended by hand (neither system roots nor
// certagent's), as the file is now.
func (s *Store) Parts() (system, handAdded map[trust.Fingerprint]bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.read()
	if err != nil {
		return nil, nil, err
	}
	system, handAdded = make(map[trust.Fingerprint]bool), make(map[trust.Fingerprint]bool)
	for _, bl := range c.system {
		system[bl.fp] = true
	}
	for _, bl := range c.foreign {
		if bl.typ == "CERTIFICATE" {
			handAdded[bl.fp] = true
		}
	}
	return system, handAdded, nil
}

// holds reports whether blocks include the certificate fp.
func holds(blocks []block, fp trust.Fingerprint) bool {
	for _, bl := range blocks {
		if bl.typ == "CERTIFICATE" && bl.fp == fp {
			return true
		}
	}
	return false
}

// Refresh rewrites the bundle when the system roots changed since the last
// write, and reports whether it wrote. A bundle not written yet is left for
// the first Apply. The agent calls it once per pass (trust.Refresher).
func (s *Store) Refresh(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Every pass calls Refresh; reading and re-rendering ~150 roots costs
	// 1.5 ms and 0.9 MB, so skip it while neither file has changed.
	now, ok := s.stamps()
	if ok && s.fresh != nil && *s.fresh == now {
		return false, nil
	}
	c, src, err := s.load()
	if err != nil || !c.exists {
		return false, err
	}
	subjects := make(map[trust.Fingerprint]string, len(c.tagged))
	for _, bl := range c.tagged {
		subjects[bl.fp] = s.subject(bl)
	}
	tagged := append([]block(nil), c.tagged...)
	sort.Slice(tagged, func(i, j int) bool { return bytes.Compare(tagged[i].fp[:], tagged[j].fp[:]) < 0 })
	data := render(src, tagged, c.foreign, subjects)
	if c.mode == FileMode && bytes.Equal(data, c.raw) {
		if ok {
			s.fresh = &now
		}
		return false, nil
	}
	return true, s.write(c, data)
}

// subject returns the subject of a block for its comment line, from the
// readers' cache when it is there. s.mu must be held.
func (s *Store) subject(bl block) string {
	if sub, ok := s.subjects[bl.fp]; ok {
		return sub
	}
	x, err := x509.ParseCertificate(bl.der)
	if err != nil {
		return ""
	}
	return trust.NewCert(x).Subject()
}

// load reads the bundle and the system roots and refuses a file that is not
// ours to write.
func (s *Store) load() (*content, *source, error) {
	src, err := s.readSource()
	if err != nil {
		return nil, nil, err
	}
	if s.sameFile(src.path) {
		return nil, nil, fmt.Errorf("trust/bundle: %s is the system bundle; refusing to write it", s.path)
	}
	c, err := s.read()
	if err != nil {
		return nil, nil, err
	}
	if c.exists && !c.ours {
		return nil, nil, fmt.Errorf("trust/bundle: %s: %w; move it away or choose another path", s.path, ErrNotOurs)
	}
	return c, src, nil
}

// write replaces the bundle with data unless it already holds exactly that.
func (s *Store) write(c *content, data []byte) error {
	if c.exists && c.mode == FileMode && bytes.Equal(data, c.raw) {
		return nil
	}
	s.fresh = nil
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return fmt.Errorf("trust/bundle: creating %s: %w", filepath.Dir(s.path), err)
	}
	if err := atomicfile.Write(s.path, data, FileMode); err != nil {
		return fmt.Errorf("trust/bundle: writing %s: %w", s.path, err)
	}
	return nil
}

// Paths implements trust.PathDeclarer: the bundle's directory is written
// (an atomic replacement makes a temporary file there) and created when
// missing; the bundle and the system roots files it copies are watched (a
// distro update of those is a Refresh to do).
func (s *Store) Paths() trust.Paths {
	d := filepath.Dir(s.path)
	return trust.Paths{Write: []string{d}, Create: []string{d}, Watch: append([]string{s.path}, s.sources...)}
}

// Sweep implements trust.Sweeper: leftovers of the bundle's writes.
func (s *Store) Sweep() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	base := filepath.Base(s.path)
	return atomicfile.Sweep(filepath.Dir(s.path), func(b string) bool { return b == base })
}

var (
	_ trust.Store        = (*Store)(nil)
	_ trust.Sweeper      = (*Store)(nil)
	_ trust.PathDeclarer = (*Store)(nil)
)
