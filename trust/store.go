// Package trust defines what a trust store is to certagent, how roots are
// identified (Fingerprint), which roots are acceptable (Policy), and holds the
// store adapters (one sub-package each) and their conformance suite
// (trust/trusttest).
//
// A Store may have several targets: the Linux system store has one; the nss
// store has one per NSS database of every local user. The agent plans per
// target and a store applies a whole batch at once, so a pass that installs
// ten roots runs a store's refresh tool once, and a pass with nothing to
// change runs nothing.
package trust

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Tag marks entries certagent wrote: NSS nicknames, Java aliases, Windows
// friendly names and file names start with it.
const Tag = "certagent"

// Sentinel errors.
var (
	// ErrUnavailable is wrapped by Store.Check when the store cannot be used
	// on this machine (tool missing, unsupported distro, read-only system).
	ErrUnavailable = errors.New("trust: store unavailable")
	// ErrNotSupported is returned by adapters on platforms they do not serve.
	ErrNotSupported = errors.New("trust: not supported on this platform")
)

// Target is one place inside a store. Single-place stores use the zero
// Target.
type Target struct {
	// User is the local account that owns the place ("" for system-wide).
	User string `json:"user,omitempty"`
	// Path is the database, keystore or file ("" when the store has one).
	Path string `json:"path,omitempty"`
}

func (t Target) String() string {
	switch {
	case t.User == "" && t.Path == "":
		return "-"
	case t.User == "":
		return t.Path
	case t.Path == "":
		return "user " + t.User
	default:
		return "user " + t.User + " " + t.Path
	}
}

// Entry is one certificate found in one target.
type Entry struct {
	FP     Fingerprint `json:"fingerprint"`
	Target Target      `json:"target"`
	// Subject is the certificate's subject as the store reports it.
	Subject string `json:"subject,omitempty"`
	// Tagged reports whether the entry carries our Tag (a nickname, alias
	// or file name we would write). The ledger, not the tag, decides what we
	// may remove; the tag makes listing exact.
	Tagged bool `json:"tagged,omitempty"`
	// TrustPending reports whether the store holds the certificate but the
	// OS does not trust it yet (macOS: a root process may not set trust
	// settings, so they must come from an MDM profile; Windows: the chain
	// engine refused it). False means trusted or not checked.
	TrustPending bool `json:"trust_pending,omitempty"`
}

// Skip is a target the store knows of but cannot serve, with why.
type Skip struct {
	Target Target `json:"target"`
	Reason string `json:"reason"`
}

// Inventory is what a store holds, target by target.
type Inventory struct {
	// Targets are every place the store writes to, in a stable order.
	Targets []Target `json:"targets"`
	// Entries are the certificates found in those targets.
	Entries []Entry `json:"entries"`
	// Skipped are places that exist but cannot be served (a user without
	// any NSS database, a keystore we may not write).
	Skipped []Skip `json:"skipped,omitempty"`
	// OwnCopies reports that every writer keeps its own copy here (files in
	// a directory) and that our copies are Tagged: a root we installed that
	// is present only untagged (through someone else's file, or a bundle not
	// yet rebuilt after our file was deleted) must be written again, since
	// that other copy can go away at any time. Stores where a root exists
	// once (NSS, keychains) leave it false.
	OwnCopies bool `json:"own_copies,omitempty"`
}

// Has reports whether target t holds fp.
func (inv *Inventory) Has(t Target, fp Fingerprint) bool {
	for _, e := range inv.Entries {
		if e.Target == t && e.FP == fp {
			return true
		}
	}
	return false
}

// Op is what a Change does.
type Op string

// The operations.
const (
	OpInstall Op = "install"
	OpRemove  Op = "remove"
)

// Change is one operation on one target.
type Change struct {
	Op     Op          `json:"op"`
	FP     Fingerprint `json:"fingerprint"`
	Target Target      `json:"target"`
	// Cert is required for OpInstall; for OpRemove it may be nil.
	Cert *Cert `json:"-"`
	// Foreign allows removing copies of this root that we did not write;
	// the agent sets it only for exact retired fingerprints. Without it a
	// removal takes out our own copy only (and is OK when we have none).
	// It matters to stores with Inventory.OwnCopies, where our tagged copy
	// and others' copies of one root sit side by side; stores with one
	// entry per root (nss, keychain, winroot) ignore it, since the only
	// copy there is the one the ledger says we installed.
	Foreign bool `json:"foreign,omitempty"`
}

func (c Change) String() string {
	return fmt.Sprintf("%s %s %s", c.Op, c.FP.Short(), c.Target)
}

// ErrBadChange is wrapped by Change.Validate.
var ErrBadChange = errors.New("trust: malformed change")

// Validate returns an error wrapping ErrBadChange when c cannot be applied
// as given: an unknown Op, a zero fingerprint, or an install without a
// certificate or whose certificate's DER does not hash to FP. Adapters call
// it first so a malformed change fails and changes nothing.
func (c Change) Validate() error {
	if c.FP.IsZero() {
		return fmt.Errorf("%w: %s: zero fingerprint", ErrBadChange, c.Op)
	}
	switch c.Op {
	case OpRemove:
		return nil
	case OpInstall:
		if c.Cert == nil || c.Cert.X509 == nil {
			return fmt.Errorf("%w: install %s: no certificate", ErrBadChange, c.FP.Short())
		}
		if got := FingerprintOf(c.Cert.X509.Raw); got != c.FP {
			return fmt.Errorf("%w: install %s: the certificate's fingerprint is %s", ErrBadChange, c.FP.Short(), got.Short())
		}
		return nil
	default:
		return fmt.Errorf("%w: unknown operation %q", ErrBadChange, c.Op)
	}
}

// Status is the outcome of one Change.
type Status string

// The outcomes. Nothing skipped is ever reported as OK.
const (
	StatusOK      Status = "ok"
	StatusSkipped Status = "skipped"
	StatusFailed  Status = "failed"
)

// Result is the outcome of one Change.
type Result struct {
	Change Change `json:"change"`
	Status Status `json:"status"`
	// Reason says why a change was skipped, or what an OK result left to do
	// ("installed, trust pending: deliver it with an MDM profile").
	Reason string `json:"reason,omitempty"`
	// Err is the failure, with the command and its output when a tool ran.
	Err error `json:"-"`
}

// OK returns an OK result for c.
func OK(c Change) Result { return Result{Change: c, Status: StatusOK} }

// Skipped returns a skipped result for c.
func Skipped(c Change, reason string) Result {
	return Result{Change: c, Status: StatusSkipped, Reason: reason}
}

// ReasonOthersCopies is the Reason of an OK removal without Foreign that
// found no copy of ours and left the copies others wrote in place.
const ReasonOthersCopies = "no copy of ours left; others' copies left alone"

// LeftAlone returns the OK result of a removal without Foreign that found
// no copy of ours: the root is still held, but only by copies we did not
// write, and those are not ours to remove.
func LeftAlone(c Change) Result {
	return Result{Change: c, Status: StatusOK, Reason: ReasonOthersCopies}
}

// Failed returns a failed result for c.
func Failed(c Change, err error) Result { return Result{Change: c, Status: StatusFailed, Err: err} }

// Store is a trust store adapter.
//
// Implementations must be safe for concurrent use, must make Apply
// idempotent (installing a present root or removing an absent one is OK),
// must run their refresh tool at most once per Apply and not at all when
// nothing changed, and must never touch an entry not named in a Change.
type Store interface {
	// Name is the store's name as written in the config ("system", "nss",
	// "dir:/path").
	Name() string
	// Check reports whether the store can be used here; a non-nil error
	// wraps ErrUnavailable and says why and how to fix it.
	Check(ctx context.Context) error
	// List returns what the store holds.
	List(ctx context.Context) (*Inventory, error)
	// Apply performs the changes as one batch and returns one Result per
	// Change, in order.
	Apply(ctx context.Context, changes []Change) []Result
}

// Refresher is implemented by stores whose content also derives from state
// outside any Change, such as a bundle that copies the system roots. The
// agent calls Refresh once per pass, even when it has nothing to Apply;
// Refresh writes only when the derived content changed and reports whether
// it wrote.
type Refresher interface {
	Refresh(ctx context.Context) (bool, error)
}

// Paths are where a store lives on disk, declared by the store itself so
// that nothing else keeps a copy of its layout: the service sandbox's
// writable directories (ReadWritePaths= of the systemd unit) and the
// daemon's watch list are asked of the configured stores.
type Paths struct {
	// Write are the directories the store, or the tool it runs, writes in.
	Write []string
	// Create are those of Write the store creates on its first write; a
	// service install creates them beforehand, because a sandbox can only
	// grant a directory that exists.
	Create []string
	// Watch are the files and directories whose change may mean the store
	// drifted; empty means the store relies on polling.
	Watch []string
}

// PathDeclarer is implemented by every store that keeps its state in
// files. Stores that keep it elsewhere (keychains, registries) declare
// what they can watch, or nothing.
type PathDeclarer interface {
	Paths() Paths
}

// Sweeper is implemented by stores that write files (through
// internal/atomicfile): Sweep removes what a write killed midway left
// behind, only files with our names, and returns their paths. The agent
// calls it under the pass lock, at the start of a process's first pass
// and of every pass that changes something.
type Sweeper interface {
	Sweep() ([]string, error)
}

// IsOurFileName reports whether base is the name the file-based adapters
// give one root's file: Tag, a dash, the fingerprint's 64 hex digits, ext.
func IsOurFileName(base, ext string) bool {
	hexPart, ok := strings.CutPrefix(base, Tag+"-")
	if !ok {
		return false
	}
	hexPart, ok = strings.CutSuffix(hexPart, ext)
	if !ok || len(hexPart) != 64 {
		return false
	}
	for _, r := range hexPart {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F') {
			return false
		}
	}
	return true
}

// Install installs certs into every target of s that lacks them and returns
// the results of the changes it made. It is a convenience for tools and
// tests; the agent plans through its own planner.
func Install(ctx context.Context, s Store, certs ...*Cert) ([]Result, error) {
	inv, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	var changes []Change
	for _, t := range inv.Targets {
		for _, c := range certs {
			if !inv.Has(t, c.FP) {
				changes = append(changes, Change{Op: OpInstall, FP: c.FP, Target: t, Cert: c})
			}
		}
	}
	if len(changes) == 0 {
		return nil, nil
	}
	return s.Apply(ctx, changes), nil
}

// Uninstall removes fps from every target of s that holds them, copies
// others wrote included (Foreign): it is for tools and tests that name
// exact roots to get rid of. The agent plans its removals itself and sets
// Foreign only for retired fingerprints.
func Uninstall(ctx context.Context, s Store, fps ...Fingerprint) ([]Result, error) {
	inv, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	want := make(map[Fingerprint]bool, len(fps))
	for _, fp := range fps {
		want[fp] = true
	}
	var changes []Change
	for _, e := range inv.Entries {
		if want[e.FP] {
			changes = append(changes, Change{Op: OpRemove, FP: e.FP, Target: e.Target, Foreign: true})
		}
	}
	if len(changes) == 0 {
		return nil, nil
	}
	return s.Apply(ctx, changes), nil
}

// Contains reports whether every target of s holds fp (and s has at least
// one target).
func Contains(ctx context.Context, s Store, fp Fingerprint) (bool, error) {
	inv, err := s.List(ctx)
	if err != nil {
		return false, err
	}
	if len(inv.Targets) == 0 {
		return false, nil
	}
	for _, t := range inv.Targets {
		if !inv.Has(t, fp) {
			return false, nil
		}
	}
	return true, nil
}

// FirstError returns the first failed result's error, wrapped with its
// change, or nil.
func FirstError(results []Result) error {
	for _, r := range results {
		if r.Status == StatusFailed {
			return fmt.Errorf("%s: %w", r.Change, r.Err)
		}
	}
	return nil
}

// SortEntries orders entries by target then fingerprint, for stable output.
func SortEntries(es []Entry) {
	sort.Slice(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.Target.User != b.Target.User {
			return a.Target.User < b.Target.User
		}
		if a.Target.Path != b.Target.Path {
			return a.Target.Path < b.Target.Path
		}
		return string(a.FP[:]) < string(b.FP[:])
	})
}

// ValidateSingle checks a change for a single-target store: the zero
// Target (else errUnknown) and a well-formed Change (else ErrBadChange).
func ValidateSingle(c Change, errUnknown error) error {
	if c.Target != (Target{}) {
		return fmt.Errorf("%w: %s", errUnknown, c.Target)
	}
	return c.Validate()
}
