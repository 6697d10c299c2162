// Package dir is the "dir:PATH" trust store: a folder with one PEM file per
// root, for sandboxes, containers and tools that read a CA directory
// (SSL_CERT_DIR, Docker's certs.d, a mounted volume).
//
// Roots certagent writes are named certagent-<64 hex of the SHA-256>.pem,
// which makes them Tagged. List reads every *.pem, *.crt and *.cer file in
// the folder (PEM or DER), whoever put it there, so a retired root that an
// administrator dropped in by hand is found and can be removed by its exact
// fingerprint. A file that does not parse is reported as skipped and never
// touched, and a file holding several certificates is never rewritten.
package dir

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/certagent/certagent/internal/atomicfile"
	"github.com/certagent/certagent/trust"
)

// Modes of what the store creates: certificates are public, so readable by
// every program that may want to trust them.
const (
	FileMode fs.FileMode = 0o644
	DirMode  fs.FileMode = 0o755
)

// MaxFileBytes bounds how much of one file List reads; a CA directory holds
// certificates, not archives, and one big file must not stall a pass.
const MaxFileBytes = 1 << 20

// ErrForeignFile is wrapped when removing a root would mean rewriting a file
// certagent did not write (it holds more than that one certificate).
var ErrForeignFile = errors.New("trust/dir: root shares a file with other certificates")

// Store is a dir: store. It is safe for concurrent use; separate processes
// writing the same folder are not coordinated beyond atomic file writes.
type Store struct {
	path string
	// mu serialises Apply against List so a listing never sees half a
	// batch from this process.
	mu sync.RWMutex

	// cacheMu guards parsed, which maps the SHA-256 of a file's content to
	// its certificates: hashing is ~50 times cheaper than parsing, and a
	// content key, unlike a modification time, cannot go stale.
	cacheMu sync.Mutex
	parsed  map[[32]byte][]*trust.Cert
}

// New returns the store for the folder at path, which need not exist yet.
func New(path string) *Store { return &Store{path: filepath.Clean(path)} }

// Name implements trust.Store.
func (s *Store) Name() string { return "dir:" + s.path }

// Path returns the folder.
func (s *Store) Path() string { return s.path }

// FileName returns the name certagent gives the file of fp.
func FileName(fp trust.Fingerprint) string { return trust.Tag + "-" + fp.Hex() + ".pem" }

// Check implements trust.Store: the folder must be a directory, or not exist
// yet under a directory (it is created on first write).
func (s *Store) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for p := s.path; ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("trust/dir: %s: %w: %s is not a directory", s.path, trust.ErrUnavailable, p)
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("trust/dir: %s: %w: %v", s.path, trust.ErrUnavailable, err)
		}
		if filepath.Dir(p) == p {
			return fmt.Errorf("trust/dir: %s: %w: no existing parent directory", s.path, trust.ErrUnavailable)
		}
	}
}

// file is one certificate file found in the folder.
type file struct {
	name  string
	certs []*trust.Cert
}

// tagged reports whether f is the file certagent writes for its only
// certificate.
func (f *file) tagged() bool {
	return len(f.certs) == 1 && f.name == FileName(f.certs[0].FP)
}

// scan reads every certificate file of the folder. A missing folder is
// empty. Files that cannot be read or parsed are returned as skips.
func (s *Store) scan() ([]*file, []trust.Skip, error) {
	des, err := os.ReadDir(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("trust/dir: reading %s: %w", s.path, err)
	}
	var files []*file
	var skips []trust.Skip
	seen := make(map[[32]byte][]*trust.Cert, len(des))
	defer func() {
		// Keep only what this scan saw, so the cache never outgrows the
		// folder.
		s.cacheMu.Lock()
		s.parsed = seen
		s.cacheMu.Unlock()
	}()
	for _, de := range des {
		name := de.Name()
		if !isCertName(name) {
			continue
		}
		full := filepath.Join(s.path, name)
		certs, err := s.readCerts(full, seen)
		if errors.Is(err, errNotRegular) {
			continue
		}
		if err != nil {
			skips = append(skips, trust.Skip{Target: trust.Target{Path: full}, Reason: err.Error()})
			continue
		}
		files = append(files, &file{name: name, certs: certs})
	}
	return files, skips, nil
}

// isCertName reports whether a directory entry may hold certificates. Hidden
// files are skipped: atomicfile's temporaries start with a dot.
func isCertName(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".pem", ".crt", ".cer":
		return true
	}
	return false
}

var errNotRegular = errors.New("not a regular file")

// readCerts reads the certificates of one file: PEM, or a single DER
// certificate (.cer and .crt files often are). Symlinks are followed, as
// OpenSSL does for hashed CA directories.
func (s *Store) readCerts(path string, seen map[[32]byte][]*trust.Cert) ([]*trust.Cert, error) {
	// Stat first: opening a FIFO named x.pem would block the pass until
	// someone writes to it.
	if st, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("unreadable: %w", err)
	} else if !st.Mode().IsRegular() {
		return nil, errNotRegular
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("unreadable: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("unreadable: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, errNotRegular
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("unreadable: %w", err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("larger than %d bytes, not read", MaxFileBytes)
	}
	sum := sha256.Sum256(data)
	s.cacheMu.Lock()
	certs, ok := s.parsed[sum]
	s.cacheMu.Unlock()
	if !ok {
		if certs, err = parseCerts(data); err != nil {
			return nil, err
		}
	}
	seen[sum] = certs
	return certs, nil
}

// parseCerts parses PEM, or failing that a single DER certificate.
func parseCerts(data []byte) ([]*trust.Cert, error) {
	certs, err := trust.ParsePEM(data)
	if errors.Is(err, trust.ErrNoCertificate) {
		if x, derr := x509.ParseCertificate(data); derr == nil {
			return []*trust.Cert{trust.NewCert(x)}, nil
		}
		return nil, errors.New("holds no certificate (neither PEM nor DER)")
	}
	if err != nil {
		return nil, fmt.Errorf("does not parse: %w", err)
	}
	return certs, nil
}

// List implements trust.Store.
func (s *Store) List(ctx context.Context) (*trust.Inventory, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	files, skips, err := s.scan()
	s.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	inv := &trust.Inventory{Targets: []trust.Target{{}}, Skipped: skips, OwnCopies: true}
	// One entry per root: the same root in two files is still one root,
	// Tagged when either file is ours.
	at := make(map[trust.Fingerprint]int)
	for _, f := range files {
		for _, c := range f.certs {
			i, ok := at[c.FP]
			if !ok {
				at[c.FP] = len(inv.Entries)
				inv.Entries = append(inv.Entries, trust.Entry{FP: c.FP, Subject: c.Subject(), Tagged: f.tagged()})
				continue
			}
			inv.Entries[i].Tagged = inv.Entries[i].Tagged || f.tagged()
		}
	}
	trust.SortEntries(inv.Entries)
	return inv, nil
}

// Apply implements trust.Store. There is no refresh tool: each change is
// one atomic file write or removal.
func (s *Store) Apply(ctx context.Context, changes []trust.Change) []trust.Result {
	if len(changes) == 0 {
		return nil
	}
	b := trust.NewBatch(changes)
	s.mu.Lock()
	defer s.mu.Unlock()
	files, _, scanErr := s.scan()
	for i, c := range changes {
		switch {
		case ctx.Err() != nil:
			b.Results[i] = trust.Failed(c, ctx.Err())
		case c.Target != trust.Target{}:
			b.Results[i] = trust.Failed(c, fmt.Errorf("trust/dir: %s: unknown target %s (the store has one)", s.path, c.Target))
		case c.Validate() != nil:
			b.Results[i] = trust.Failed(c, fmt.Errorf("trust/dir: %s: %w", s.path, c.Validate()))
		case scanErr != nil:
			b.Results[i] = trust.Failed(c, scanErr)
		case c.Op == trust.OpInstall:
			var err error
			if files, err = s.install(files, c.Cert); err != nil {
				b.Results[i] = trust.Failed(c, err)
			} else {
				b.Results[i] = trust.OK(c)
			}
		case !c.Foreign && !hasOurs(files, c.FP):
			// Our file is gone (deleted after the plan was made): another
			// file holding the root is its owner's, not ours to delete.
			if len(holders(files, c.FP)) > 0 {
				b.Results[i] = trust.LeftAlone(c)
			} else {
				b.Results[i] = trust.OK(c)
			}
		default:
			var err error
			if files, err = s.remove(files, c.FP); err != nil {
				b.Results[i] = trust.Failed(c, err)
			} else if held := holders(files, c.FP); len(held) > 0 {
				// Ours is gone; someone else's file keeps the root.
				b.Results[i] = trust.Skipped(c, "still trusted through "+strings.Join(held, ", ")+", which we did not write; not removed")
			} else {
				b.Results[i] = trust.OK(c)
			}
		}
	}
	return b.Results
}

// install writes cert's tagged file unless it is already there. It returns
// files updated.
func (s *Store) install(files []*file, cert *trust.Cert) ([]*file, error) {
	name := FileName(cert.FP)
	for _, f := range files {
		if f.name != name {
			continue
		}
		if f.tagged() {
			return files, nil
		}
		// Our name, someone else's content: do not overwrite certificates.
		return files, fmt.Errorf("trust/dir: %s: %s holds %d other certificate(s); not overwriting it", s.path, name, len(f.certs))
	}
	if err := s.mkdir(); err != nil {
		return files, err
	}
	// A corrupt file under our name (it did not parse, so it is not in
	// files) is replaced: the name is ours.
	if err := atomicfile.Write(filepath.Join(s.path, name), cert.PEM(), FileMode); err != nil {
		return files, fmt.Errorf("trust/dir: writing %s: %w", name, err)
	}
	return append(files, &file{name: name, certs: []*trust.Cert{cert}}), nil
}

// mkdir creates the folder when missing, 0755 whatever the umask: a CA
// directory other programs cannot read is useless.
func (s *Store) mkdir() error {
	if _, err := os.Stat(s.path); err == nil {
		return nil
	}
	if err := os.MkdirAll(s.path, DirMode); err != nil {
		return fmt.Errorf("trust/dir: creating %s: %w", s.path, err)
	}
	if err := os.Chmod(s.path, DirMode); err != nil {
		return fmt.Errorf("trust/dir: chmod %s: %w", s.path, err)
	}
	return nil
}

// hasOurs reports whether files include our tagged file for fp.
func hasOurs(files []*file, fp trust.Fingerprint) bool {
	for _, f := range files {
		if f.tagged() && f.certs[0].FP == fp {
			return true
		}
	}
	return false
}

// holders returns the names of the files that hold fp.
func holders(files []*file, fp trust.Fingerprint) []string {
	var out []string
	for _, f := range files {
		for _, c := range f.certs {
			if c.FP == fp {
				out = append(out, f.name)
				break
			}
		}
	}
	return out
}

// remove deletes our file for fp when there is one: another file holding
// the same root is its owner's. Without ours (only reached for a Foreign
// change: a retired root, named by its exact fingerprint) it deletes every
// file that holds fp and nothing else.
// When any such file also holds other certificates, nothing is removed:
// rewriting a file we did not write could lose what its owner put there.
func (s *Store) remove(files []*file, fp trust.Fingerprint) ([]*file, error) {
	for i, f := range files {
		if f.tagged() && f.certs[0].FP == fp {
			if err := atomicfile.Remove(filepath.Join(s.path, f.name)); err != nil {
				return files, fmt.Errorf("trust/dir: removing %s: %w", f.name, err)
			}
			return append(files[:i], files[i+1:]...), nil
		}
	}
	var hit []int
	for i, f := range files {
		for _, c := range f.certs {
			if c.FP != fp {
				continue
			}
			if len(f.certs) != 1 {
				return files, fmt.Errorf("%w: %s holds %d certificates; remove %s from it by hand", ErrForeignFile, filepath.Join(s.path, f.name), len(f.certs), fp)
			}
			hit = append(hit, i)
			break
		}
	}
	// Remove from the end so the indexes stay valid.
	sort.Sort(sort.Reverse(sort.IntSlice(hit)))
	for _, i := range hit {
		if err := atomicfile.Remove(filepath.Join(s.path, files[i].name)); err != nil {
			return files, fmt.Errorf("trust/dir: removing %s: %w", files[i].name, err)
		}
		files = append(files[:i], files[i+1:]...)
	}
	return files, nil
}

// Paths implements trust.PathDeclarer: the folder is written, created when
// missing, and watched.
func (s *Store) Paths() trust.Paths {
	return trust.Paths{Write: []string{s.path}, Create: []string{s.path}, Watch: []string{s.path}}
}

// Sweep implements trust.Sweeper: leftovers of our root files' writes.
func (s *Store) Sweep() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return atomicfile.Sweep(s.path, func(base string) bool { return trust.IsOurFileName(base, ".pem") })
}

var (
	_ trust.Store        = (*Store)(nil)
	_ trust.Sweeper      = (*Store)(nil)
	_ trust.PathDeclarer = (*Store)(nil)
)
