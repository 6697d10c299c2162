package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"time"

	"github.com/certagent/certagent/internal/atomicfile"
	"github.com/certagent/certagent/trust"
)

// LedgerVersion is the ledger file format version.
const LedgerVersion = 1

// EntryState is where an entry stands in the intent/commit protocol.
type EntryState string

// The entry states. The planner treats a pending state as "this may be in
// the store and, if it is, it is ours": that is what makes a crash between
// the intent write and the outcome write recoverable without duplicates.
const (
	// StateInstalling: intent written, the store may or may not hold it.
	StateInstalling EntryState = "installing"
	// StateInstalled: the store confirmed the install.
	StateInstalled EntryState = "installed"
	// StateRemoving: intent to remove written, the store may still hold it.
	StateRemoving EntryState = "removing"
)

// LedgerKey identifies one entry: one root in one target of one store.
type LedgerKey struct {
	Store  string            `json:"store"`
	Target trust.Target      `json:"target"`
	FP     trust.Fingerprint `json:"fingerprint"`
}

func (k LedgerKey) String() string { return k.Store + " " + k.Target.String() + " " + k.FP.Short() }

// LedgerEntry is a root certagent installed (or is installing) somewhere.
type LedgerEntry struct {
	LedgerKey
	CertID   string     `json:"cert_id,omitempty"`
	Subject  string     `json:"subject,omitempty"`
	NotAfter time.Time  `json:"not_after"`
	State    EntryState `json:"state"`
	// Since is when State was set.
	Since time.Time `json:"since"`
	// InstalledAt is when the install was first confirmed (zero until then).
	InstalledAt time.Time `json:"installed_at,omitzero"`
}

// LedgerCert is the certificate behind entries, kept so that `certagent
// certs` and uninstall work with the control plane gone.
type LedgerCert struct {
	ID       string    `json:"id,omitempty"`
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"not_after"`
	PEM      string    `json:"pem"`
}

// Ledger is what certagent installed: the only things it will ever remove
// (besides exact retired fingerprints). It is a value: methods that change
// it return a new Ledger so a plan can be diffed against the original.
type Ledger struct {
	Version int                              `json:"version"`
	Entries []LedgerEntry                    `json:"entries"`
	Certs   map[trust.Fingerprint]LedgerCert `json:"certs"`
	// index maps a key to its position in Entries; rebuilt by normalize.
	index map[LedgerKey]int
	// dirty reports a set or remove since the last normalize.
	dirty bool
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{Version: LedgerVersion, Certs: map[trust.Fingerprint]LedgerCert{}}
}

// ErrLedgerCorrupt is returned when the ledger file exists but cannot be
// read; the agent then refuses to remove anything rather than forget what it
// owns.
var ErrLedgerCorrupt = errors.New("agent: ledger corrupt")

// LoadLedger reads the ledger at path; a missing file is an empty ledger.
func LoadLedger(path string) (*Ledger, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return NewLedger(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent: ledger %s: %w", path, err)
	}
	l := NewLedger()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(l); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrLedgerCorrupt, path, err)
	}
	if l.Version != LedgerVersion {
		return nil, fmt.Errorf("%w: %s: version %d, want %d", ErrLedgerCorrupt, path, l.Version, LedgerVersion)
	}
	if l.Certs == nil {
		l.Certs = map[trust.Fingerprint]LedgerCert{}
	}
	for i, e := range l.Entries {
		switch e.State {
		case StateInstalling, StateInstalled, StateRemoving:
		default:
			return nil, fmt.Errorf("%w: %s: entry %d has state %q", ErrLedgerCorrupt, path, i, e.State)
		}
		if e.Store == "" || e.FP.IsZero() {
			return nil, fmt.Errorf("%w: %s: entry %d has no store or fingerprint", ErrLedgerCorrupt, path, i)
		}
	}
	l.normalize()
	return l, nil
}

// Save writes the ledger atomically with mode 0600.
func (l *Ledger) Save(path string) error {
	b, err := l.Marshal()
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return fmt.Errorf("agent: writing ledger: %w", err)
	}
	return nil
}

// Marshal returns the ledger's file form (stable order).
func (l *Ledger) Marshal() ([]byte, error) {
	l.normalize()
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("agent: encoding ledger: %w", err)
	}
	return append(b, '\n'), nil
}

// normalize sorts entries, drops certs no entry refers to, and rebuilds the
// index.
func (l *Ledger) normalize() {
	l.dirty = false
	sort.Slice(l.Entries, func(i, j int) bool { return keyLess(l.Entries[i].LedgerKey, l.Entries[j].LedgerKey) })
	used := make(map[trust.Fingerprint]bool, len(l.Certs))
	l.index = make(map[LedgerKey]int, len(l.Entries))
	for i, e := range l.Entries {
		used[e.FP] = true
		l.index[e.LedgerKey] = i
	}
	for fp := range l.Certs {
		if !used[fp] {
			delete(l.Certs, fp)
		}
	}
}

func keyLess(a, b LedgerKey) bool {
	if a.Store != b.Store {
		return a.Store < b.Store
	}
	if a.Target.User != b.Target.User {
		return a.Target.User < b.Target.User
	}
	if a.Target.Path != b.Target.Path {
		return a.Target.Path < b.Target.Path
	}
	return bytes.Compare(a.FP[:], b.FP[:]) < 0
}

// Get returns the entry for k.
func (l *Ledger) Get(k LedgerKey) (LedgerEntry, bool) {
	if l.index == nil {
		l.normalize()
	}
	i, ok := l.index[k]
	if !ok {
		return LedgerEntry{}, false
	}
	return l.Entries[i], true
}

// Clone returns a deep copy.
func (l *Ledger) Clone() *Ledger {
	c := &Ledger{Version: l.Version, Entries: append([]LedgerEntry(nil), l.Entries...), Certs: make(map[trust.Fingerprint]LedgerCert, len(l.Certs))}
	for k, v := range l.Certs {
		c.Certs[k] = v
	}
	c.normalize()
	return c
}

// set inserts or replaces an entry (the index is rebuilt by normalize).
func (l *Ledger) set(e LedgerEntry) {
	if l.index == nil {
		l.normalize()
	}
	l.dirty = true
	if i, ok := l.index[e.LedgerKey]; ok {
		l.Entries[i] = e
		return
	}
	l.index[e.LedgerKey] = len(l.Entries)
	l.Entries = append(l.Entries, e)
}

// remove deletes the entry for k.
func (l *Ledger) remove(k LedgerKey) {
	out := l.Entries[:0]
	for _, e := range l.Entries {
		if e.LedgerKey != k {
			out = append(out, e)
		}
	}
	l.Entries = out
	l.normalize()
	l.dirty = true
}

// Equal reports whether two ledgers hold the same entries and certs. Both
// must be normalized (every constructor and mutator here leaves them so).
// It runs on every pass, so it compares fields rather than encodings.
func (l *Ledger) Equal(o *Ledger) bool {
	if l.Version != o.Version || len(l.Entries) != len(o.Entries) || len(l.Certs) != len(o.Certs) {
		return false
	}
	for i := range l.Entries {
		a, b := l.Entries[i], o.Entries[i]
		if a.LedgerKey != b.LedgerKey || a.CertID != b.CertID || a.Subject != b.Subject || a.State != b.State ||
			!a.NotAfter.Equal(b.NotAfter) || !a.Since.Equal(b.Since) || !a.InstalledAt.Equal(b.InstalledAt) {
			return false
		}
	}
	for fp, a := range l.Certs {
		b, ok := o.Certs[fp]
		if !ok || a.ID != b.ID || a.Subject != b.Subject || a.PEM != b.PEM || !a.NotAfter.Equal(b.NotAfter) {
			return false
		}
	}
	return true
}

// StoreNames returns the stores the ledger has entries in, sorted.
func (l *Ledger) StoreNames() []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range l.Entries {
		if !seen[e.Store] {
			seen[e.Store] = true
			out = append(out, e.Store)
		}
	}
	sort.Strings(out)
	return out
}

// Managed returns the certificates of every entry, ordered by subject then
// fingerprint: what `certagent certs` prints.
func (l *Ledger) Managed() []LedgerCert {
	out := make([]LedgerCert, 0, len(l.Certs))
	fps := make([]trust.Fingerprint, 0, len(l.Certs))
	for fp := range l.Certs {
		fps = append(fps, fp)
	}
	sort.Slice(fps, func(i, j int) bool {
		a, b := l.Certs[fps[i]], l.Certs[fps[j]]
		if a.Subject != b.Subject {
			return a.Subject < b.Subject
		}
		return bytes.Compare(fps[i][:], fps[j][:]) < 0
	})
	for _, fp := range fps {
		out = append(out, l.Certs[fp])
	}
	return out
}
