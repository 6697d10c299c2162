// Package winroot is the Windows "system" trust store: the machine-wide
// LocalMachine\ROOT certificate store, which every user, every service and
// the Chromium-based browsers (and Firefox ≥ 120, which imports enterprise
// roots by default) trust.
//
// It is written for a service running as LocalSystem, which is why it does
// not use smallstep/truststore: truststore opens ROOT with
// CertOpenSystemStoreW, which reaches the *current user's* store (SYSTEM's
// own, seen by nobody), and it deletes every root whose serial number
// matches. Here the store is opened with CertOpenStore(CERT_STORE_PROV_SYSTEM,
// CERT_SYSTEM_STORE_LOCAL_MACHINE, "ROOT"), roots are matched only by the
// SHA-256 of their DER (computed here, never trusted from the store), the
// entries we add carry the friendly name "certagent <sha256 hex>", and no call
// can show UI.
//
// The Win32 calls sit behind the small certStore interface; the real one is
// in store_windows.go, and the tests drive the adapter through a fake that
// models the real store (duplicates, friendly names, Win32 error codes), so
// the logic runs in Linux CI.
package winroot

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/trust"
)

// Name is the store's config name.
const Name = "system"

// StorePath names the store in messages.
const StorePath = `LocalMachine\ROOT`

// Win32 and CryptoAPI codes the adapter reacts to. Values are from winerror.h.
const (
	codeAccessDenied = 5          // ERROR_ACCESS_DENIED
	codeNoMoreFiles  = 18         // ERROR_NO_MORE_FILES
	codeNotFound     = 0x80092004 // CRYPT_E_NOT_FOUND
	codeExists       = 0x80092005 // CRYPT_E_EXISTS
)

// Win32Error is a failed Windows call: which API failed and its Win32 (or
// HRESULT) code, so status can show exactly what the OS said.
type Win32Error struct {
	// Step is the API that failed ("CertOpenStore").
	Step string
	// Code is the GetLastError value.
	Code uint32
	// Msg is the system's text for Code ("Access is denied.").
	Msg string
}

func (e *Win32Error) Error() string {
	if e.Msg == "" {
		return fmt.Sprintf("%s: error 0x%08X", e.Step, e.Code)
	}
	return fmt.Sprintf("%s: %s (0x%08X)", e.Step, e.Msg, e.Code)
}

// Is matches the sentinels below by code, whatever the step.
func (e *Win32Error) Is(target error) bool {
	t, ok := target.(*Win32Error)
	return ok && t.Step == "" && t.Code == e.Code
}

// Sentinels for errors.Is.
var (
	// ErrAccessDenied: the process may not write LocalMachine\ROOT (not
	// running as LocalSystem or an elevated administrator).
	ErrAccessDenied error = &Win32Error{Code: codeAccessDenied, Msg: "Access is denied."}
	// ErrExists: the certificate is already in the store (CRYPT_E_EXISTS).
	ErrExists error = &Win32Error{Code: codeExists, Msg: "The object or property already exists."}
	// ErrNotFound: CRYPT_E_NOT_FOUND.
	ErrNotFound error = &Win32Error{Code: codeNotFound, Msg: "Cannot find object or property."}
)

// storeCert is one certificate context in the store.
type storeCert struct {
	DER []byte
	// FriendlyName is CERT_FRIENDLY_NAME_PROP_ID, "" when unset.
	FriendlyName string
}

// certStore is the seam over crypt32: one opened LocalMachine\ROOT.
type certStore interface {
	// Enum returns every certificate context in the store.
	Enum() ([]storeCert, error)
	// Add adds der as a new context with the friendly name set. It fails
	// with CRYPT_E_EXISTS when an identical certificate is present, and
	// leaves nothing behind when any step fails.
	Add(der []byte, friendlyName string) error
	// Delete removes every context whose encoding is exactly der, and
	// fails with CRYPT_E_NOT_FOUND when there is none. No context is held
	// between calls: a store provider may drop a change made while one of
	// its contexts is still referenced (Wine's does).
	Delete(der []byte) error
	// Verify builds a chain for der with the machine's chain engine and
	// returns nil when it ends in a trusted root.
	Verify(der []byte) error
	// Close releases the store.
	Close() error
}

// opener opens the store, for writing when write is set.
type opener func(write bool) (certStore, error)

// Options configures a Store.
type Options struct {
	// Logger is the agent's logger; nil means a null logger.
	Logger hclog.Logger
}

// Store is the LocalMachine\ROOT adapter. It is safe for concurrent use: a
// mutex serialises every open of the store.
type Store struct {
	open opener
	log  hclog.Logger
	mu   sync.Mutex // serialises List and Apply
	// subjects caches parsed subjects by fingerprint (guarded by mu): a
	// machine's ROOT holds hundreds of roots and parsing each one on every
	// List dominated its cost.
	subjects map[trust.Fingerprint]string
}

// New returns the adapter for this machine's LocalMachine\ROOT. On other
// operating systems every call fails with trust.ErrNotSupported.
func New(opts Options) *Store { return newStore(openSystem, opts) }

func newStore(open opener, opts Options) *Store {
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Store{open: open, log: log.Named("winroot"), subjects: make(map[trust.Fingerprint]string)}
}

// Name implements trust.Store.
func (s *Store) Name() string { return Name }

// Check implements trust.Store: the store must open for writing, which it
// does only for LocalSystem and elevated administrators.
func (s *Store) Check(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.open(true)
	if err != nil {
		if errors.Is(err, ErrAccessDenied) {
			return fmt.Errorf("%w: trust/winroot: %s is not writable (%v): run certagent as the LocalSystem service or from an elevated prompt", trust.ErrUnavailable, StorePath, err)
		}
		return fmt.Errorf("%w: trust/winroot: open %s: %v", trust.ErrUnavailable, StorePath, err)
	}
	return st.Close()
}

// List implements trust.Store. Every certificate in the store is listed (the
// planner needs to see roots others installed, such as retired ones); ours
// are Tagged, and ours that the chain engine does not trust are
// TrustPending.
func (s *Store) List(ctx context.Context) (*trust.Inventory, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.open(false)
	if err != nil {
		return nil, fmt.Errorf("trust/winroot: open %s: %w", StorePath, err)
	}
	defer st.Close()
	certs, err := st.Enum()
	if err != nil {
		return nil, fmt.Errorf("trust/winroot: list %s: %w", StorePath, err)
	}
	inv := &trust.Inventory{Targets: []trust.Target{{}}}
	seen := make(map[trust.Fingerprint]bool, len(certs))
	subjects := make(map[trust.Fingerprint]string, len(certs))
	for _, c := range certs {
		fp := trust.FingerprintOf(c.DER)
		if seen[fp] {
			continue
		}
		seen[fp] = true
		subject, ok := s.subjects[fp]
		if !ok {
			subject = subjectOf(c.DER)
		}
		subjects[fp] = subject
		e := trust.Entry{FP: fp, Subject: subject, Tagged: c.FriendlyName == friendlyName(fp)}
		if e.Tagged {
			if err := st.Verify(c.DER); err != nil {
				e.TrustPending = true
				s.log.Warn("root in store but not trusted by the chain engine", "fingerprint", fp.Short(), "error", err)
			}
		}
		inv.Entries = append(inv.Entries, e)
	}
	s.subjects = subjects // keep only what the store still holds
	trust.SortEntries(inv.Entries)
	return inv, nil
}

// Apply implements trust.Store. The store is opened and enumerated once per
// batch; nothing is opened when the batch is empty. Roots added by the batch
// are verified with the chain engine only after the writing handle is
// closed, so that the engine reads ROOT as it is on disk: on Windows the
// change is already there, and under Wine the engine builds from a cache a
// still-open writer has not refreshed.
func (s *Store) Apply(ctx context.Context, changes []trust.Change) []trust.Result {
	if len(changes) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := trust.NewBatch(changes)
	added, removed, err := s.write(ctx, b)
	if err != nil {
		b.FailRemaining(err)
		return b.Results
	}
	s.verify(b, added, removed)
	return b.Results
}

// verify checks the batch's writes through one fresh read-only handle,
// opened after the writer closed.
func (s *Store) verify(b *trust.Batch, added []int, removed []removal) {
	last := map[trust.Fingerprint]int{}
	for i, c := range b.Changes {
		last[c.FP] = i
	}
	var check []removal
	for _, r := range removed {
		if b.Results[r.i].Status == trust.StatusOK && last[b.Changes[r.i].FP] == r.i {
			check = append(check, r)
		}
	}
	if len(added) == 0 && len(check) == 0 {
		return
	}
	st, err := s.open(false)
	if err != nil {
		err = fmt.Errorf("trust/winroot: open %s to verify: %w", StorePath, err)
		for _, i := range added {
			b.Results[i] = trust.Failed(b.Changes[i], err)
		}
		for _, r := range check {
			b.Results[r.i] = trust.Failed(b.Changes[r.i], err)
		}
		return
	}
	defer st.Close()
	s.verifyAdded(st, b, added)
	s.verifyRemoved(st, b, check)
}

// removal is a delete the batch made: the change's index and the
// certificate deleted, for verifyRemoved.
type removal struct {
	i   int
	der []byte
}

// verifyRemoved checks each root the batch deleted (and did not install
// again later in the batch): still
// listed in ROOT is a failure; no longer listed but still trusted by the
// chain engine means another physical store of the ROOT collection (Group
// Policy's, the enterprise one) holds a copy we did not write, so the
// removal is skipped with that reason, never reported done.
func (s *Store) verifyRemoved(st certStore, b *trust.Batch, check []removal) {
	if len(check) == 0 {
		return
	}
	after, err := st.Enum()
	for _, r := range check {
		c := b.Changes[r.i]
		switch {
		case err != nil:
			b.Results[r.i] = trust.Failed(c, fmt.Errorf("trust/winroot: list %s to verify the delete of %s: %w", StorePath, c.FP.Short(), err))
		case len(matching(after, c.FP)) > 0:
			b.Results[r.i] = trust.Failed(c, fmt.Errorf("trust/winroot: %s is still in %s after the delete", c.FP.Short(), StorePath))
		case st.Verify(r.der) == nil:
			b.Results[r.i] = trust.Skipped(c, fmt.Sprintf("deleted from %s, but the machine still trusts it through a copy in another physical store (Group Policy, enterprise) that we did not write; not removed", StorePath))
		}
	}
}

// write performs the changes through one writing handle, which it closes
// before returning. It fills results for every change except the installs
// it returns (their indexes), which are in the store and await verification.
func (s *Store) write(ctx context.Context, b *trust.Batch) (added []int, removed []removal, err error) {
	st, err := s.open(true)
	if err != nil {
		return nil, nil, fmt.Errorf("trust/winroot: open %s for writing: %w", StorePath, err)
	}
	defer func() {
		if cerr := st.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("trust/winroot: close %s: %w", StorePath, cerr)
		}
	}()
	certs, err := st.Enum()
	if err != nil {
		return nil, nil, fmt.Errorf("trust/winroot: list %s: %w", StorePath, err)
	}
	for i, c := range b.Changes {
		if err := ctx.Err(); err != nil {
			b.Results[i] = trust.Failed(c, fmt.Errorf("trust/winroot: %w", err))
			continue
		}
		var der []byte
		if idx := matching(certs, c.FP); c.Op == trust.OpRemove && len(idx) > 0 {
			der = certs[idx[0]].DER
		}
		var r trust.Result
		var wrote bool
		certs, r, wrote = s.apply(st, certs, c)
		if der != nil && r.Status == trust.StatusOK {
			removed = append(removed, removal{i: i, der: der})
		}
		if wrote {
			added = append(added, i)
			continue
		}
		b.Results[i] = r
		if c.Op == trust.OpRemove && r.Status == trust.StatusOK {
			// An install earlier in the batch did what it was asked; the
			// root is gone again by request, so there is nothing to verify.
			added = slices.DeleteFunc(added, func(j int) bool {
				if b.Changes[j].FP != c.FP {
					return false
				}
				b.Results[j] = trust.OK(b.Changes[j])
				return true
			})
		}
	}
	return added, removed, nil
}

// verifyAdded asks the machine's chain engine whether each root the batch
// added is trusted.
func (s *Store) verifyAdded(st certStore, b *trust.Batch, added []int) {
	for _, i := range added {
		c := b.Changes[i]
		if err := st.Verify(c.Cert.X509.Raw); err != nil {
			// It is in the store, but the machine does not trust it (a
			// policy, or an explicit distrust entry): say so rather than OK.
			b.Results[i] = trust.Failed(c, fmt.Errorf("trust/winroot: %s added to %s but the chain engine does not trust it: %w", c.FP.Short(), StorePath, err))
			continue
		}
		s.log.Info("root installed", "fingerprint", c.FP.Short(), "store", StorePath)
		b.Results[i] = trust.OK(c)
	}
}

// apply performs one change against the enumerated contents and returns the
// contents after it. wrote reports an install that added the root, whose
// result is left to verifyAdded.
func (s *Store) apply(st certStore, certs []storeCert, c trust.Change) (_ []storeCert, _ trust.Result, wrote bool) {
	if c.Target != (trust.Target{}) {
		return certs, trust.Failed(c, fmt.Errorf("trust/winroot: unknown target %s (the store has one)", c.Target)), false
	}
	if err := c.Validate(); err != nil {
		return certs, trust.Failed(c, fmt.Errorf("trust/winroot: %w", err)), false
	}
	switch c.Op {
	case trust.OpInstall:
		der := c.Cert.X509.Raw
		if len(matching(certs, c.FP)) > 0 {
			return certs, trust.OK(c), false
		}
		name := friendlyName(c.FP)
		err := st.Add(der, name)
		if err != nil && !errors.Is(err, ErrExists) {
			return certs, trust.Failed(c, addHint(fmt.Errorf("trust/winroot: add %s to %s: %w", c.FP.Short(), StorePath, err))), false
		}
		return append(certs, storeCert{DER: der, FriendlyName: name}), trust.Result{}, true
	case trust.OpRemove:
		// Delete exactly the contexts whose DER hashes to c.FP. truststore
		// deletes every root with the same serial number, which removes
		// other issuers' roots too; we never look at the serial.
		idx := matching(certs, c.FP)
		if len(idx) == 0 {
			return certs, trust.OK(c), false
		}
		if err := st.Delete(certs[idx[0]].DER); err != nil && !errors.Is(err, ErrNotFound) {
			// ErrNotFound: gone already, which is what was asked.
			return certs, trust.Failed(c, addHint(fmt.Errorf("trust/winroot: delete %s from %s: %w", c.FP.Short(), StorePath, err))), false
		}
		s.log.Info("root removed", "fingerprint", c.FP.Short(), "store", StorePath)
		return slices.DeleteFunc(certs, func(sc storeCert) bool { return sha256.Sum256(sc.DER) == c.FP }), trust.OK(c), false
	default:
		return certs, trust.Failed(c, fmt.Errorf("trust/winroot: unknown operation %q", c.Op)), false
	}
}

func addHint(err error) error {
	if errors.Is(err, ErrAccessDenied) {
		return fmt.Errorf("%w (run certagent as the LocalSystem service or from an elevated prompt)", err)
	}
	return err
}

// matching returns the indexes of certs whose DER hashes to fp.
func matching(certs []storeCert, fp trust.Fingerprint) []int {
	var idx []int
	for i, c := range certs {
		if sha256.Sum256(c.DER) == fp {
			idx = append(idx, i)
		}
	}
	return idx
}

// friendlyName is the tag our entries carry.
func friendlyName(fp trust.Fingerprint) string { return trust.Tag + " " + fp.Hex() }

// subjectOf returns the certificate's common name (or whole subject), or ""
// when the DER does not parse.
func subjectOf(der []byte) string {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return ""
	}
	return trust.NewCert(c).Subject()
}
