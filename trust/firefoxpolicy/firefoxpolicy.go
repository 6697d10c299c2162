// Package firefoxpolicy is the "firefox-policy" trust store: Firefox's
// enterprise policy Certificates.Install in /etc/firefox/policies/policies.json
// (read by deb, tarball and snap Firefox on Linux), merged with whatever
// policies the administrator already has there: every other key is kept,
// and the file is rewritten (atomically, 0644) only when our entries change.
//
// Our entries are absolute paths of PEM files we write under a directory we
// own (/usr/local/share/certagent/firefox/certagent-<sha256 hex>.pem).
// Entries someone else wrote are listed by the certificates their files
// hold; one is dropped only when a Change names its exact fingerprint and
// its file holds exactly that certificate (their file is left alone).
//
// Firefox imports a policy certificate into each profile's cert9.db when it
// starts, and dropping the policy does not take it out again: after a
// withdrawal Firefox would go on trusting the root. So a removal also
// deletes those copies from every Firefox profile of every user
// (Options.Profiles, the nss store's RemoveFromFirefox: matched by exact
// fingerprint whatever trust flags Firefox's newer NSS wrote), and the store
// needs certutil for that: without it Check reports the store unavailable.
package firefoxpolicy

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/internal/atomicfile"
	"github.com/certagent/certagent/trust"
)

// Name is the store's config name.
const Name = "firefox-policy"

// Defaults.
const (
	DefaultPolicyFile = "/etc/firefox/policies/policies.json"
	DefaultCertDir    = "/usr/local/share/certagent/firefox"
)

// DefaultSearchDirs are where Firefox looks up a relative Install entry.
var DefaultSearchDirs = []string{"/usr/lib/mozilla/certificates", "/usr/lib64/mozilla/certificates"}

// maxFile bounds what we read of policies.json and of certificate files.
const maxFile = 4 << 20

// Errors.
var (
	ErrUnknownTarget = errors.New("firefoxpolicy: unknown target (the store has only the zero target)")
	ErrBadChange     = trust.ErrBadChange
	// ErrBadPolicy is an existing policies.json we cannot merge into; we
	// change nothing rather than lose the administrator's policies.
	ErrBadPolicy = errors.New("firefoxpolicy: policies.json cannot be merged")
)

// Options configure the store.
type Options struct {
	// PolicyFile, CertDir and SearchDirs override the defaults (tests).
	PolicyFile, CertDir string
	SearchDirs          []string
	// Logger; nil means none.
	Logger hclog.Logger
	// Profiles takes withdrawn roots out of Firefox profiles; nil means
	// the policy alone (tests of the file logic).
	Profiles Profiles
}

// Profiles is what takes a withdrawn root's copies out of every Firefox
// profile (nss.Store).
type Profiles interface {
	// Check reports whether it can work here (certutil installed).
	Check(ctx context.Context) error
	// RemoveFromFirefox deletes every copy of fps from every profile.
	RemoveFromFirefox(ctx context.Context, fps []trust.Fingerprint) (int, error)
}

// Store is the Firefox policy store. Safe for concurrent use.
type Store struct {
	policy, certDir string
	search          []string
	log             hclog.Logger
	profiles        Profiles

	mu sync.Mutex // serialises Apply and List
}

// New returns the store.
func New(o Options) *Store {
	s := &Store{policy: o.PolicyFile, certDir: o.CertDir, search: o.SearchDirs, log: o.Logger, profiles: o.Profiles}
	if s.policy == "" {
		s.policy = DefaultPolicyFile
	}
	if s.certDir == "" {
		s.certDir = DefaultCertDir
	}
	if s.search == nil {
		s.search = DefaultSearchDirs
	}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	s.log = s.log.Named(Name)
	return s
}

// Name implements trust.Store.
func (s *Store) Name() string { return Name }

// Check implements trust.Store. The policy works for any Firefox installed
// now or later, so only the paths are checked, and that withdrawn roots can
// be taken out of the profiles again.
func (s *Store) Check(ctx context.Context) error {
	if !filepath.IsAbs(s.policy) || !filepath.IsAbs(s.certDir) {
		return fmt.Errorf("%w: firefox-policy: %q and %q must be absolute", trust.ErrUnavailable, s.policy, s.certDir)
	}
	if s.profiles != nil {
		if err := s.profiles.Check(ctx); err != nil {
			return fmt.Errorf("%w: firefox-policy: Firefox keeps a policy root in every profile after the policy drops it, and certagent needs certutil to take it out when the root is withdrawn: %v", trust.ErrUnavailable, err)
		}
	}
	return nil
}

// ourPath is the only file we write for fp; it is what our Install entry
// names.
func (s *Store) ourPath(fp trust.Fingerprint) string {
	return filepath.Join(s.certDir, trust.Tag+"-"+fp.Hex()+".pem")
}

// doc is policies.json, kept as raw JSON everywhere except the path to
// Certificates.Install, so every key we do not own survives untouched.
type doc struct {
	top      map[string]json.RawMessage
	policies map[string]json.RawMessage
	certs    map[string]json.RawMessage
	install  []string
}

func (s *Store) read() (*doc, error) {
	d := &doc{top: map[string]json.RawMessage{}, policies: map[string]json.RawMessage{}, certs: map[string]json.RawMessage{}}
	st, err := os.Stat(s.policy)
	if errors.Is(err, os.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return nil, fmt.Errorf("firefoxpolicy: %w", err)
	}
	if st.Size() > maxFile {
		return nil, fmt.Errorf("%w: %s is %d bytes", ErrBadPolicy, s.policy, st.Size())
	}
	b, err := os.ReadFile(s.policy)
	if err != nil {
		return nil, fmt.Errorf("firefoxpolicy: %w", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return d, nil
	}
	if err := json.Unmarshal(b, &d.top); err != nil || d.top == nil {
		return nil, fmt.Errorf("%w: %s: not a JSON object: %v", ErrBadPolicy, s.policy, err)
	}
	if raw, ok := d.top["policies"]; ok {
		if err := json.Unmarshal(raw, &d.policies); err != nil || d.policies == nil {
			return nil, fmt.Errorf("%w: %s: \"policies\" is not an object", ErrBadPolicy, s.policy)
		}
	}
	if raw, ok := d.policies["Certificates"]; ok {
		if err := json.Unmarshal(raw, &d.certs); err != nil || d.certs == nil {
			return nil, fmt.Errorf("%w: %s: \"Certificates\" is not an object", ErrBadPolicy, s.policy)
		}
	}
	if raw, ok := d.certs["Install"]; ok {
		if err := json.Unmarshal(raw, &d.install); err != nil {
			return nil, fmt.Errorf("%w: %s: \"Certificates.Install\" is not a list of strings", ErrBadPolicy, s.policy)
		}
	}
	return d, nil
}

func (d *doc) encode() ([]byte, error) {
	inst, err := json.Marshal(d.install)
	if err != nil {
		return nil, err
	}
	d.certs["Install"] = inst
	if len(d.install) == 0 {
		delete(d.certs, "Install")
	}
	if len(d.certs) > 0 {
		if d.policies["Certificates"], err = json.Marshal(d.certs); err != nil {
			return nil, err
		}
	} else {
		delete(d.policies, "Certificates")
	}
	if d.top["policies"], err = json.Marshal(d.policies); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d.top); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// entryFile resolves an Install entry to the file Firefox would read.
func (s *Store) entryFile(entry string) string {
	if filepath.IsAbs(entry) {
		return filepath.Clean(entry)
	}
	if !filepath.IsLocal(entry) {
		return ""
	}
	for _, d := range s.search {
		p := filepath.Join(d, entry)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// readCerts returns the certificates in a PEM or DER file.
func readCerts(p string) []*trust.Cert {
	st, err := os.Stat(p)
	if err != nil || !st.Mode().IsRegular() || st.Size() > maxFile {
		return nil
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	if bytes.Contains(b, []byte("-----BEGIN")) {
		cs, err := trust.ParsePEM(b)
		if err != nil {
			return nil
		}
		return cs
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		return nil
	}
	return []*trust.Cert{trust.NewCert(c)}
}

// entry is one Install entry and what its file holds.
type entry struct {
	raw   string
	certs []*trust.Cert
	ours  bool
}

func (s *Store) entries(d *doc) []entry {
	var out []entry
	for _, raw := range d.install {
		p := s.entryFile(raw)
		if p == "" {
			continue
		}
		cs := readCerts(p)
		if len(cs) == 0 {
			continue
		}
		out = append(out, entry{raw: raw, certs: cs, ours: len(cs) == 1 && raw == s.ourPath(cs[0].FP)})
	}
	return out
}

// List implements trust.Store.
func (s *Store) List(ctx context.Context) (*trust.Inventory, error) {
	if err := s.Check(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.read()
	if err != nil {
		return nil, err
	}
	// Every writer names its own file in Install, and ours are Tagged: a
	// root we installed that only someone else's entry still names is not
	// ours any more (and removing it would drop their entry).
	inv := &trust.Inventory{Targets: []trust.Target{{}}, OwnCopies: true}
	seen := make(map[trust.Fingerprint]bool)
	es := s.entries(d)
	for _, pass := range []bool{true, false} { // ours first
		for _, e := range es {
			if e.ours != pass {
				continue
			}
			for _, c := range e.certs {
				if !seen[c.FP] {
					seen[c.FP] = true
					inv.Entries = append(inv.Entries, trust.Entry{FP: c.FP, Subject: c.Subject(), Tagged: e.ours})
				}
			}
		}
	}
	trust.SortEntries(inv.Entries)
	return inv, nil
}

// Apply implements trust.Store.
func (s *Store) Apply(ctx context.Context, changes []trust.Change) []trust.Result {
	if len(changes) == 0 {
		return nil
	}
	b := trust.NewBatch(changes)
	fail := func(err error) []trust.Result {
		b.FailRemaining(err)
		return b.Results
	}
	if err := s.Check(ctx); err != nil {
		return fail(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.read()
	if err != nil {
		return fail(err)
	}
	for i, c := range changes {
		if err := validate(c); err != nil {
			b.Results[i] = trust.Failed(c, err)
		}
	}
	// A change is done only once policies.json says so: every result that
	// depends on the policy write waits in staged until the file is written
	// and read back (a failed write or MkdirAll fails them all; it never
	// leaves them ok).
	staged := make(map[int]trust.Result, len(changes))
	var toDelete []string
	for i, c := range changes {
		if b.Decided(i) {
			continue
		}
		switch c.Op {
		case trust.OpInstall:
			p := s.ourPath(c.FP)
			if err := os.MkdirAll(s.certDir, 0o755); err != nil {
				b.Results[i] = trust.Failed(c, fmt.Errorf("firefoxpolicy: %w", err))
				continue
			}
			if _, err := atomicfile.WriteIfChanged(p, c.Cert.PEM(), 0o644); err != nil {
				b.Results[i] = trust.Failed(c, fmt.Errorf("firefoxpolicy: %w", err))
				continue
			}
			if !contains(d.install, p) {
				d.install = append(d.install, p)
			}
			staged[i] = trust.OK(c)
		case trust.OpRemove:
			r := s.remove(d, c, &toDelete)
			if r.Status == trust.StatusSkipped || r.Status == trust.StatusFailed {
				b.Results[i] = r
			} else {
				staged[i] = r
			}
		}
	}
	pending := make([]int, 0, len(staged))
	for i := range staged {
		pending = append(pending, i)
	}
	failPending := func(err error) []trust.Result {
		b.Slots(pending).FailRemaining(err)
		return b.Results
	}
	if data, err := d.encode(); err != nil {
		return failPending(fmt.Errorf("firefoxpolicy: encode: %w", err))
	} else if err := os.MkdirAll(filepath.Dir(s.policy), 0o755); err != nil {
		return failPending(fmt.Errorf("firefoxpolicy: %w", err))
	} else if wrote, err := s.writeIfChanged(data); err != nil {
		return failPending(fmt.Errorf("firefoxpolicy: write %s: %w", s.policy, err))
	} else if wrote {
		s.log.Info("wrote firefox policy", "file", s.policy, "entries", len(d.install))
	}
	// Read back what Firefox will read.
	after, err := s.read()
	if err != nil {
		return failPending(fmt.Errorf("firefoxpolicy: reading %s back: %w", s.policy, err))
	}
	for _, i := range pending {
		c := changes[i]
		named := contains(after.install, s.ourPath(c.FP))
		switch {
		case c.Op == trust.OpInstall && !named:
			b.Results[i] = trust.Failed(c, fmt.Errorf("firefoxpolicy: %s does not name %s after the write", s.policy, c.FP.Short()))
		case c.Op == trust.OpInstall && !holds(s.ourPath(c.FP), c.FP):
			b.Results[i] = trust.Failed(c, fmt.Errorf("firefoxpolicy: %s does not hold %s after the write", s.ourPath(c.FP), c.FP.Short()))
		case c.Op == trust.OpRemove && named:
			b.Results[i] = trust.Failed(c, fmt.Errorf("firefoxpolicy: %s still names %s after the write", s.policy, c.FP.Short()))
		default:
			b.Results[i] = staged[i]
		}
	}
	// Our files go only after the policy no longer names them.
	for _, p := range toDelete {
		if err := atomicfile.Remove(p); err != nil {
			s.log.Warn("remove certificate file", "file", p, "error", err)
		}
	}
	s.removeFromProfiles(ctx, b)
	return b.Results
}

// removeFromProfiles takes the roots whose removal from the policy is done
// out of every Firefox profile too; a root someone else's entry still
// installs stays (Firefox would import it again). A failure fails the
// removal, so the agent tries again.
func (s *Store) removeFromProfiles(ctx context.Context, b *trust.Batch) {
	if s.profiles == nil {
		return
	}
	var fps []trust.Fingerprint
	var idx []int
	for i, c := range b.Changes {
		if c.Op == trust.OpRemove && b.Results[i].Status == trust.StatusOK && b.Results[i].Reason == "" {
			fps = append(fps, c.FP)
			idx = append(idx, i)
		}
	}
	if len(fps) == 0 {
		return
	}
	n, err := s.profiles.RemoveFromFirefox(ctx, fps)
	if err != nil {
		for _, i := range idx {
			b.Results[i] = trust.Failed(b.Changes[i], fmt.Errorf("firefoxpolicy: removing the copies Firefox made in its profiles: %w", err))
		}
		return
	}
	if n > 0 {
		s.log.Info("removed withdrawn roots from firefox profiles", "copies", n)
	}
}

// holds reports whether the file at p holds the certificate fp.
func holds(p string, fp trust.Fingerprint) bool {
	for _, c := range readCerts(p) {
		if c.FP == fp {
			return true
		}
	}
	return false
}

// writeIfChanged writes the policy unless it already holds the same JSON
// (so a file with nothing of ours is not reformatted, and an absent one is
// not created just to say nothing).
func (s *Store) writeIfChanged(b []byte) (bool, error) {
	old, err := os.ReadFile(s.policy)
	if errors.Is(err, os.ErrNotExist) {
		var v map[string]any
		if json.Unmarshal(b, &v) == nil && len(v) == 1 {
			if p, ok := v["policies"].(map[string]any); ok && len(p) == 0 {
				return false, nil
			}
		}
	} else if err == nil && jsonEqual(old, b) {
		return false, nil
	}
	return true, atomicfile.Write(s.policy, b, 0o644)
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// remove drops fp from the policy: our entry alone when we have one (a
// copy someone else listed is theirs); otherwise, for a Foreign change (a
// retired root, named by its exact fingerprint), every entry whose file
// holds only fp, and for any other change nothing of theirs. An entry
// whose file holds other certificates too stays.
func (s *Store) remove(d *doc, c trust.Change, toDelete *[]string) trust.Result {
	ours := s.ourPath(c.FP)
	es := s.entries(d)
	var drop []string
	skipped := ""
	for _, e := range es {
		if e.ours && e.certs[0].FP == c.FP {
			drop = []string{e.raw}
			break
		}
		for _, x := range e.certs {
			if x.FP != c.FP {
				continue
			}
			if len(e.certs) != 1 {
				skipped = fmt.Sprintf("%s holds %d other certificates; not removed", e.raw, len(e.certs)-1)
			} else {
				drop = append(drop, e.raw)
			}
		}
	}
	if contains(drop, ours) {
		drop = []string{ours}
		skipped = ""
	}
	othersHold := false
	if !c.Foreign && !contains(d.install, ours) {
		// Not a retired root: only our entry goes (named by the policy
		// even when its file vanished after the plan was made); entries
		// others listed stay.
		for _, e := range es {
			if e.raw == ours {
				continue
			}
			for _, x := range e.certs {
				othersHold = othersHold || x.FP == c.FP
			}
		}
	}
	if !c.Foreign {
		drop, skipped = []string{ours}, ""
	}
	if _, err := os.Stat(ours); err == nil {
		// Our file goes, named by the policy or left over.
		*toDelete = append(*toDelete, ours)
	}
	kept := d.install[:0:0]
	for _, raw := range d.install {
		if !contains(drop, raw) {
			kept = append(kept, raw)
		}
	}
	d.install = kept
	if skipped != "" {
		return trust.Skipped(c, skipped)
	}
	if othersHold {
		return trust.LeftAlone(c)
	}
	return trust.OK(c)
}

func validate(c trust.Change) error { return trust.ValidateSingle(c, ErrUnknownTarget) }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Sweep implements trust.Sweeper: leftovers of policies.json's writes and
// of our certificate files', and our certificate files the policy no
// longer names (a removal writes the policy first and deletes the file
// after; a kill in between leaves the file).
func (s *Store) Sweep() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	policyBase := filepath.Base(s.policy)
	removed, err1 := atomicfile.Sweep(filepath.Dir(s.policy), func(b string) bool { return b == policyBase })
	more, err2 := atomicfile.Sweep(s.certDir, func(b string) bool { return trust.IsOurFileName(b, ".pem") })
	removed = append(removed, more...)
	errs := []error{err1, err2}
	d, err := s.read()
	if err != nil {
		// Without the policy we cannot tell which files it names.
		return removed, errors.Join(append(errs, err)...)
	}
	ents, err := os.ReadDir(s.certDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("firefoxpolicy: %w", err))
	}
	for _, e := range ents {
		p := filepath.Join(s.certDir, e.Name())
		if !e.Type().IsRegular() || !trust.IsOurFileName(e.Name(), ".pem") || contains(d.install, p) {
			continue
		}
		if err := atomicfile.Remove(p); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, p)
	}
	return removed, errors.Join(errs...)
}

// Paths implements trust.PathDeclarer: policies.json's directory and our
// certificate directory are written (and created when missing); they and
// the directories Firefox searches for a relative Install entry are
// watched.
func (s *Store) Paths() trust.Paths {
	own := []string{filepath.Dir(s.policy), s.certDir}
	return trust.Paths{Write: own, Create: own, Watch: append(append([]string(nil), own...), s.search...)}
}

var (
	_ trust.Sweeper      = (*Store)(nil)
	_ trust.PathDeclarer = (*Store)(nil)
)
