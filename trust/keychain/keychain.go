// Package keychain is the macOS "system" trust store: the System keychain
// (/Library/Keychains/System.keychain) with admin-domain trust settings for
// SSL and basic X.509, which Safari, Chrome, curl and (≥ 120, enterprise
// roots on by default) Firefox use.
//
// Every change goes through Apple's /usr/bin/security tool, run through
// platform.Runner (the seam the tests replace with a model of the tool):
//
//	install  security add-trusted-cert -d -r trustRoot -p ssl -p basic -k KEYCHAIN FILE
//	list     security find-certificate -a -Z -p KEYCHAIN
//	         security trust-settings-export -d FILE
//	trust    security verify-cert -c FILE -p basic -l -L -q   (when no admin setting trusts it)
//	remove   security remove-trusted-cert -d FILE
//	         security delete-certificate -Z SHA1 KEYCHAIN
//
// Roots are matched by the SHA-256 of their DER, computed here from the PEM
// the tool prints; the SHA-1 is only the keychain's handle for the item. The
// keychain cannot carry our tag, so entries are never Tagged: the ledger
// alone says which are ours.
//
// Since macOS 11 a root process alone may not change admin trust settings
// ("The authorization was denied since no user interaction was possible").
// The root is then still added to the System keychain, the result is OK with
// ReasonTrustPending, List marks it TrustPending, and the trust itself must
// come from a configuration profile (`certagent mdm-profile`, see
// MobileConfig).
package keychain

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
)

// Name is the store's config name.
const Name = "system"

// Defaults.
const (
	DefaultKeychain = "/Library/Keychains/System.keychain"
	// DefaultSecurity is Apple's tool. It is run directly, never through
	// sudo (truststore prefixes sudo, which a root daemon does not need and
	// a hardened service cannot run), and never looked up on $PATH.
	DefaultSecurity = "/usr/bin/security"
	// AdminTrustSettings is where macOS keeps the admin domain's trust
	// settings; a change there can drop a root's trust.
	AdminTrustSettings = "/Library/Security/Trust Settings/Admin.plist"
)

// ReasonTrustPending is the Reason of an install whose root is in the
// keychain but whose trust settings the OS refused to a process without a
// user at the keyboard.
const ReasonTrustPending = "installed, trust pending: deliver it with an MDM profile (certagent mdm-profile)"

// Messages of the security tool the adapter reacts to (from Apple's
// SecurityTool sources and the Security framework's error strings).
var (
	// msgAuthDenied: errAuthorizationDenied / errAuthorizationInteractionNotAllowed
	// from SecTrustSettingsSetTrustSettings on macOS 11 and later.
	msgAuthDenied = []string{
		"authorization was denied",
		"no user interaction was possible",
		"User interaction is not allowed",
		"errAuthorizationDenied",
	}
	msgNoTrustSettings = "No Trust Settings were found"
	msgItemNotFound    = "could not be found in the keychain"
	msgDuplicate       = []string{"already in", "already exists in the keychain"}
	msgUnableToDelete  = "Unable to delete certificate matching"
)

// Options configures a Store.
type Options struct {
	// Runner runs the security tool; nil means a platform.ExecRunner.
	Runner platform.Runner
	// Logger is the agent's logger; nil means a null logger.
	Logger hclog.Logger
	// Security is the tool's absolute path ("" means DefaultSecurity).
	Security string
	// Keychain is the keychain file ("" means DefaultKeychain).
	Keychain string
	// TempDir is where the certificate files handed to the tool are written
	// (in a private 0700 directory, removed afterwards); "" means
	// os.TempDir().
	TempDir string
}

// Store is the System keychain adapter. It is safe for concurrent use: a
// mutex serialises every run of the tool.
type Store struct {
	opts Options
	log  hclog.Logger
	mu   sync.Mutex // serialises List, Check and Apply
}

// New returns the adapter.
func New(opts Options) *Store {
	if opts.Runner == nil {
		opts.Runner = &platform.ExecRunner{}
	}
	if opts.Security == "" {
		opts.Security = DefaultSecurity
	}
	if opts.Keychain == "" {
		opts.Keychain = DefaultKeychain
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Store{opts: opts, log: log.Named("keychain")}
}

// Name implements trust.Store.
func (s *Store) Name() string { return Name }

// WatchPaths names the files whose change means the store may have drifted
// (someone deleted the root or its trust in Keychain Access): the keychain
// and the admin trust settings. The daemon watches them for drift repair.
func (s *Store) WatchPaths() []string {
	return []string{s.opts.Keychain, AdminTrustSettings}
}

// Paths implements trust.PathDeclarer: what WatchPaths names. security
// writes the keychain itself; no service sandbox applies on macOS.
func (s *Store) Paths() trust.Paths { return trust.Paths{Watch: s.WatchPaths()} }

// Check implements trust.Store: the tool and the keychain must exist, and
// the keychain must list.
func (s *Store) Check(ctx context.Context) error {
	for _, p := range []string{s.opts.Security, s.opts.Keychain} {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("%w: trust/keychain: %q is not an absolute path", trust.ErrUnavailable, p)
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%w: trust/keychain: %v", trust.ErrUnavailable, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.find(ctx); err != nil {
		return fmt.Errorf("%w: %v", trust.ErrUnavailable, err)
	}
	return nil
}

// List implements trust.Store. Every certificate in the keychain is listed;
// self-signed CAs that no trust setting trusts are TrustPending.
func (s *Store) List(ctx context.Context) (*trust.Inventory, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	work, err := s.workDir()
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	certs, err := s.find(ctx)
	if err != nil {
		return nil, err
	}
	pending, err := s.pending(ctx, work, certs)
	if err != nil {
		return nil, err
	}
	inv := &trust.Inventory{Targets: []trust.Target{{}}}
	seen := make(map[trust.Fingerprint]bool, len(certs))
	for _, c := range certs {
		if seen[c.FP] {
			continue
		}
		seen[c.FP] = true
		inv.Entries = append(inv.Entries, trust.Entry{FP: c.FP, Subject: c.subject(), TrustPending: pending[c.FP]})
	}
	trust.SortEntries(inv.Entries)
	return inv, nil
}

// Apply implements trust.Store. The keychain is listed once before the batch
// and once after it (only when the batch changed something), so every
// result is checked against what the keychain really holds.
func (s *Store) Apply(ctx context.Context, changes []trust.Change) []trust.Result {
	if len(changes) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := trust.NewBatch(changes)
	failAll := func(err error) []trust.Result {
		b.FailRemaining(err)
		return b.Results
	}
	work, err := s.workDir()
	if err != nil {
		return failAll(err)
	}
	defer os.RemoveAll(work)
	before, err := s.find(ctx)
	if err != nil {
		return failAll(err)
	}
	held := make(map[trust.Fingerprint]kcCert, len(before))
	for _, c := range before {
		held[c.FP] = c
	}
	var pendingBefore map[trust.Fingerprint]bool
	changed := false
	for i, c := range changes {
		if c.Target != (trust.Target{}) {
			b.Results[i] = trust.Failed(c, fmt.Errorf("trust/keychain: unknown target %s (the store has one)", c.Target))
			continue
		}
		if err := c.Validate(); err != nil {
			b.Results[i] = trust.Failed(c, fmt.Errorf("trust/keychain: %w", err))
			continue
		}
		if err := ctx.Err(); err != nil {
			b.Results[i] = trust.Failed(c, fmt.Errorf("trust/keychain: %w", err))
			continue
		}
		switch c.Op {
		case trust.OpInstall:
			if have, ok := held[c.FP]; ok {
				if pendingBefore == nil {
					if pendingBefore, err = s.pending(ctx, work, before); err != nil {
						b.Results[i] = trust.Failed(c, err)
						continue
					}
				}
				b.Results[i] = trust.OK(c)
				if pendingBefore[have.FP] {
					b.Results[i].Reason = ReasonTrustPending
				}
				continue
			}
			changed = true
			b.Results[i] = s.install(ctx, work, c)
			if b.Results[i].Status == trust.StatusOK {
				der := c.Cert.X509.Raw
				held[c.FP] = kcCert{DER: der, X509: c.Cert.X509, FP: c.FP, SHA1: sha1.Sum(der)}
			}
		case trust.OpRemove:
			have, ok := held[c.FP]
			if !ok {
				b.Results[i] = trust.OK(c) // removing an absent root is OK
				continue
			}
			changed = true
			b.Results[i] = s.remove(ctx, work, c, have)
			if b.Results[i].Status == trust.StatusOK {
				delete(held, c.FP)
			}
		}
	}
	if !changed {
		return b.Results
	}
	// Check every OK result against the keychain. The keychain keys
	// certificates by issuer and serial number: when a different root with
	// ours' issuer and serial is already there, add-trusted-cert reports
	// success and ours is not added.
	after, err := s.find(ctx)
	if err != nil {
		for i, r := range b.Results {
			if r.Status == trust.StatusOK && r.Change.Op == trust.OpInstall {
				b.Results[i] = trust.Failed(r.Change, fmt.Errorf("trust/keychain: checking the install: %w", err))
			}
		}
		return b.Results
	}
	now := make(map[trust.Fingerprint]bool, len(after))
	for _, c := range after {
		now[c.FP] = true
	}
	// Only the last change to a root says what the keychain should hold.
	last := make(map[trust.Fingerprint]int, len(b.Results))
	for i, r := range b.Results {
		if r.Status == trust.StatusOK {
			last[r.Change.FP] = i
		}
	}
	for i, r := range b.Results {
		if r.Status != trust.StatusOK || last[r.Change.FP] != i {
			continue
		}
		fp := r.Change.FP
		switch {
		case r.Change.Op == trust.OpInstall && !now[fp]:
			err := fmt.Errorf("trust/keychain: %s is not in %s after add-trusted-cert: the keychain holds another certificate with the same issuer and serial number", fp.Short(), s.opts.Keychain)
			s.undoTrust(ctx, work, r.Change.Cert.X509.Raw, fp)
			b.Results[i] = trust.Failed(r.Change, err)
		case r.Change.Op == trust.OpRemove && now[fp]:
			b.Results[i] = trust.Failed(r.Change, fmt.Errorf("trust/keychain: %s is still in %s after delete-certificate", fp.Short(), s.opts.Keychain))
		}
	}
	return b.Results
}

// install adds the root with admin trust settings; when macOS refuses the
// trust settings, it makes sure the root itself is in the keychain and
// reports the trust as pending.
func (s *Store) install(ctx context.Context, work string, c trust.Change) trust.Result {
	der := c.Cert.X509.Raw
	file, err := writeCert(work, der)
	if err != nil {
		return trust.Failed(c, err)
	}
	_, err = s.run(ctx, "add-trusted-cert", "-d", "-r", "trustRoot", "-p", "ssl", "-p", "basic", "-k", s.opts.Keychain, file)
	if err == nil {
		s.log.Info("root installed", "fingerprint", c.FP.Short(), "keychain", s.opts.Keychain)
		return trust.OK(c)
	}
	if !authDenied(err) {
		return trust.Failed(c, fmt.Errorf("trust/keychain: install %s: %w", c.FP.Short(), err))
	}
	// add-trusted-cert adds to the keychain before it sets trust; make sure
	// of it on every macOS version (a duplicate is what we want).
	if _, aerr := s.run(ctx, "add-certificates", "-k", s.opts.Keychain, file); aerr != nil && !outputHas(aerr, msgDuplicate...) {
		return trust.Failed(c, fmt.Errorf("trust/keychain: install %s: trust refused (%v), and adding it without trust failed: %w", c.FP.Short(), err, aerr))
	}
	s.log.Warn("root installed, trust pending", "fingerprint", c.FP.Short(), "keychain", s.opts.Keychain,
		"hint", "deliver trust with an MDM profile: certagent mdm-profile")
	r := trust.OK(c)
	r.Reason = ReasonTrustPending
	return r
}

// remove drops the root's admin trust settings, then the certificate itself
// (addressed by its SHA-1, taken from the listing entry whose SHA-256
// matched).
func (s *Store) remove(ctx context.Context, work string, c trust.Change, have kcCert) trust.Result {
	file, err := writeCert(work, have.DER)
	if err != nil {
		return trust.Failed(c, err)
	}
	var note string
	if _, err := s.run(ctx, "remove-trusted-cert", "-d", file); err != nil {
		switch {
		case outputHas(err, msgNoTrustSettings):
			// Trust was never set (or already removed): nothing to undo.
		case authDenied(err):
			// The certificate goes anyway; a trust setting for a
			// certificate the keychain no longer holds anchors nothing it
			// does not present itself.
			note = "removed; macOS kept its admin trust setting (authorization denied without a user)"
		default:
			return trust.Failed(c, fmt.Errorf("trust/keychain: remove %s: %w", c.FP.Short(), err))
		}
	}
	sha1Hex := strings.ToUpper(hex.EncodeToString(have.SHA1[:]))
	if _, err := s.run(ctx, "delete-certificate", "-Z", sha1Hex, s.opts.Keychain); err != nil && !outputHas(err, msgUnableToDelete) {
		return trust.Failed(c, fmt.Errorf("trust/keychain: remove %s: %w", c.FP.Short(), err))
	}
	s.log.Info("root removed", "fingerprint", c.FP.Short(), "keychain", s.opts.Keychain)
	r := trust.OK(c)
	r.Reason = note
	return r
}

// undoTrust takes back trust settings set for a root that did not make it
// into the keychain.
func (s *Store) undoTrust(ctx context.Context, work string, der []byte, fp trust.Fingerprint) {
	file, err := writeCert(work, der)
	if err == nil {
		_, err = s.run(ctx, "remove-trusted-cert", "-d", file)
	}
	if err != nil && !outputHas(err, msgNoTrustSettings) {
		s.log.Warn("could not take back trust settings", "fingerprint", fp.Short(), "error", err)
	}
}

// find lists the keychain.
func (s *Store) find(ctx context.Context) ([]kcCert, error) {
	out, err := s.run(ctx, "find-certificate", "-a", "-Z", "-p", s.opts.Keychain)
	if err != nil {
		if outputHas(err, msgItemNotFound) {
			return nil, nil // an empty keychain
		}
		return nil, fmt.Errorf("trust/keychain: list %s: %w", s.opts.Keychain, err)
	}
	certs, err := parseFindCertificate(out)
	if err != nil {
		return nil, fmt.Errorf("trust/keychain: list %s: %w", s.opts.Keychain, err)
	}
	return certs, nil
}

// pending returns the self-signed CAs in certs that nothing trusts: no admin
// trust setting trusts them and verify-cert (which also sees trust delivered
// by configuration profiles) fails.
func (s *Store) pending(ctx context.Context, work string, certs []kcCert) (map[trust.Fingerprint]bool, error) {
	var roots []kcCert
	for _, c := range certs {
		if c.isSelfSignedCA() {
			roots = append(roots, c)
		}
	}
	out := map[trust.Fingerprint]bool{}
	if len(roots) == 0 {
		return out, nil
	}
	settings, err := s.trustSettings(ctx, work)
	if err != nil {
		return nil, err
	}
	for _, c := range roots {
		if settings[strings.ToUpper(hex.EncodeToString(c.SHA1[:]))] {
			continue
		}
		file, err := writeCert(work, c.DER)
		if err != nil {
			return nil, err
		}
		if _, err := s.run(ctx, "verify-cert", "-c", file, "-p", "basic", "-l", "-L", "-q"); err != nil {
			if platform.ExitCode(err) < 0 {
				return nil, fmt.Errorf("trust/keychain: verify %s: %w", c.FP.Short(), err)
			}
			out[c.FP] = true
		}
	}
	return out, nil
}

// trustSettings exports the admin domain's trust settings.
func (s *Store) trustSettings(ctx context.Context, work string) (map[string]bool, error) {
	file := filepath.Join(work, "admin-trust.plist")
	if _, err := s.run(ctx, "trust-settings-export", "-d", file); err != nil {
		if outputHas(err, msgNoTrustSettings) {
			return map[string]bool{}, nil
		}
		return nil, fmt.Errorf("trust/keychain: read admin trust settings: %w", err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("trust/keychain: read admin trust settings: %w", err)
	}
	settings, err := parseTrustSettings(data)
	if err != nil {
		return nil, fmt.Errorf("trust/keychain: %w", err)
	}
	return settings, nil
}

func (s *Store) run(ctx context.Context, args ...string) ([]byte, error) {
	return s.opts.Runner.Run(ctx, platform.Cmd{Path: s.opts.Security, Args: args})
}

// workDir makes the private directory the tool's input files go in.
func (s *Store) workDir() (string, error) {
	dir, err := os.MkdirTemp(s.opts.TempDir, "certagent-keychain-")
	if err != nil {
		return "", fmt.Errorf("trust/keychain: temporary directory: %w", err)
	}
	return dir, nil
}

// writeCert writes der as a PEM file named by its fingerprint.
func writeCert(dir string, der []byte) (string, error) {
	fp := trust.FingerprintOf(der)
	path := filepath.Join(dir, fp.Hex()+".pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("trust/keychain: write %s: %w", path, err)
	}
	return path, nil
}

// authDenied reports whether err is macOS refusing a trust-settings change
// to a process without a user.
func authDenied(err error) bool { return outputHas(err, msgAuthDenied...) }

// outputHas reports whether the failed command's output contains any of
// msgs.
func outputHas(err error, msgs ...string) bool {
	var ce *platform.CmdError
	if !errors.As(err, &ce) {
		return false
	}
	for _, m := range msgs {
		if bytes.Contains(ce.Output, []byte(m)) {
			return true
		}
	}
	return false
}
