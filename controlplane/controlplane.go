// Package controlplane is certplane: the Cloudflare-compatible Zero Trust
// Gateway certificate API (DESIGN.md §3) over a storage.Backend.
//
// A Service ties together the lifecycle rules (storage.Rules), root CA
// minting (ca), key sealing (seal), bearer-token auth, the HTTP API, the
// deployer that finishes pending transitions, and the long-poll hub. The
// admin CLI (controlplane/cli) and the HTTP handlers call the same Service
// methods, so a rule holds whichever door a change comes through.
package controlplane

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane/ca"
	"github.com/certagent/certagent/controlplane/longpoll"
	"github.com/certagent/certagent/controlplane/seal"
	"github.com/certagent/certagent/controlplane/storage"
)

// ErrInvalidName is returned for an empty or unprintable account name.
var ErrInvalidName = errors.New("controlplane: invalid name")

// ErrNoSealer means the Service was built without a key sealer.
var ErrNoSealer = errors.New("controlplane: no key sealer configured")

// DefaultDeployDelay is how long pending_deployment and pending_deletion
// last unless configured otherwise.
const DefaultDeployDelay = 2 * time.Second

// Options configure a Service.
type Options struct {
	// Sealer seals private keys. Only generation and upload need it; nil
	// makes them fail, which read-only tools (the CLI's list) accept.
	Sealer *seal.Sealer
	// Logger receives request logs and errors; nil discards.
	Logger hclog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// DeployDelay is the pending-state duration; zero means
	// DefaultDeployDelay, negative means complete at the next deployer pass.
	DeployDelay time.Duration
	// KeyType is the default key of generated roots ("" means ECDSA P-256).
	KeyType string
	// PollInterval is how often the deployer and the long-poll hub look at
	// the database for changes made by other processes; zero means 1s.
	PollInterval time.Duration
}

// Service is one certplane instance over a backend.
type Service struct {
	store   *storage.Rules
	sealer  *seal.Sealer
	log     hclog.Logger
	keyType string
	hub     *longpoll.Hub
	// changes wakes on every committed change (ChangeHub).
	changes  *longpoll.Hub
	deployer *Deployer
	// checkins rate-limits each device's check-ins, registrations each
	// token's new devices.
	checkins      *rateLimiter
	registrations *rateLimiter
	memo          *memo
	// parked are the list requests parked without a goroutine (park).
	parked parkSet
}

// New returns a Service over b. It does not start background work; call Run.
func New(b storage.Backend, opts Options) (*Service, error) {
	if !ca.ValidKeyType(opts.KeyType) {
		return nil, fmt.Errorf("controlplane: %w %q", ca.ErrKeyType, opts.KeyType)
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.DeployDelay == 0 {
		opts.DeployDelay = DefaultDeployDelay
	}
	if opts.DeployDelay < 0 {
		opts.DeployDelay = 0
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	s := &Service{sealer: opts.Sealer, log: opts.Logger, keyType: opts.KeyType, checkins: newRateLimiter(CheckInBurst, CheckInRefill),
		registrations: newRateLimiter(RegistrationBurst, RegistrationRefill), memo: newMemo(b)}
	s.store = storage.New(b, storage.Options{
		Now:         opts.Now,
		DeployDelay: opts.DeployDelay,
		OnChange:    s.changed,
	})
	s.hub = longpoll.New(s.visibleNow, opts.PollInterval)
	s.changes = longpoll.New(s.store.Revision, opts.PollInterval)
	s.deployer = NewDeployer(s.store, opts.Logger.Named("deployer"), opts.PollInterval)
	return s, nil
}

// changed runs after every committed change, this process's
// (storage.Options.OnChange) or another replica's (the feed). It must not
// block: the list is rebuilt in the background, and held long-polls are
// woken only if what agents act on changed (Service.view).
func (s *Service) changed(accountID string, rev int64) {
	s.memo.putRevision(0, accountID, rev, false)
	s.deployer.Kick()
	s.changes.Notify(accountID)
	if s.hub.Waiting(accountID) > 0 {
		s.refresh(accountID)
	}
}

// refresh rebuilds the account's list in the background; Service.view
// wakes its held requests if what agents act on changed.
func (s *Service) refresh(accountID string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := s.view(ctx, accountID); err != nil {
			// Let the held requests look for themselves.
			s.log.Warn("cannot rebuild the certificate list after a change", "account", accountID, "error", err)
			s.hub.Notify(accountID)
		}
	}()
}

// visibleNow is the long-poll hub's periodic safety check: it reads the
// account's revision from the database (not memory, to catch a change
// notification that never came) and returns its view's vis, which moves
// only when what agents act on changes.
func (s *Service) visibleNow(ctx context.Context, accountID string) (int64, error) {
	gen := s.memo.generation()
	r, err := s.store.Revision(ctx, accountID)
	if err != nil {
		return 0, err
	}
	s.memo.putRevision(gen, accountID, r, true)
	v, err := s.view(ctx, accountID)
	if err != nil {
		return 0, err
	}
	return int64(v.vis), nil
}

// Rules returns the lifecycle-rules engine (storage.Rules) and, through
// it, the backend. Its writes run the service's change hook
// (storage.Options.OnChange), so callers may use it directly.
func (s *Service) Rules() *storage.Rules { return s.store }

// Hub returns the agents' long-poll hub: its waiters are woken only when
// what agents act on changes (Service.view), not at every revision.
func (s *Service) Hub() *longpoll.Hub { return s.hub }

// ChangeHub returns a hub woken at every committed change of an account,
// this replica's or (through the feed) another's, pending states
// included: for views of the whole lifecycle such as the dashboard.
func (s *Service) ChangeHub() *longpoll.Hub { return s.changes }

// Deployer returns the deployer.
func (s *Service) Deployer() *Deployer { return s.deployer }

// Run runs the deployer, the long-poll safety check and the backend's
// change feed (Follow) until ctx ends; then it answers and closes the
// list requests still parked (park) and returns when they are.
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { s.hub.Run(ctx) })
	wg.Go(func() { s.changes.Run(ctx) })
	wg.Go(func() { s.runPurger(ctx, time.Hour) })
	wg.Go(func() { _ = s.Follow(ctx) })
	s.deployer.Run(ctx)
	wg.Wait()
	// Answer and close whatever is still parked, and wait until it is.
	s.parked.stop(nil)
	s.parked.answering.Wait()
}

// NewAccountID returns a fresh 32-hex account id.
func NewAccountID() string {
	u := uuid.New()
	return fmt.Sprintf("%x", u[:])
}

func keyAAD(accountID, certID string) []byte { return []byte(accountID + "/" + certID) }

// newCert seals is's key for its row and describes the certificate.
func (s *Service) newCert(accountID, certID, typ, name string, is *ca.Issued) (storage.NewCertificate, error) {
	if s.sealer == nil {
		return storage.NewCertificate{}, ErrNoSealer
	}
	sealed, err := s.sealer.Seal(is.KeyDER, keyAAD(accountID, certID))
	if err != nil {
		return storage.NewCertificate{}, fmt.Errorf("controlplane: seal key: %w", err)
	}
	fp, org, raw := ca.Describe(is.Cert)
	return storage.NewCertificate{
		ID: certID, Type: typ, DER: is.Cert.Raw, Fingerprint: fp, IssuerOrg: org, IssuerRaw: raw,
		Name: name, ExpiresOn: is.Cert.NotAfter.UTC(), SealedKey: sealed,
	}, nil
}

// CreateAccount creates an account with a fresh id and its first root,
// available and in use.
func (s *Service) CreateAccount(ctx context.Context, name string) (storage.Account, error) {
	if strings.TrimSpace(name) == "" || len(name) > 255 || strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return storage.Account{}, fmt.Errorf("%w: account name must be 1..255 printable characters", ErrInvalidName)
	}
	id := NewAccountID()
	certID := uuid.NewString()
	is, err := ca.Generate(ca.Request{AccountID: id, KeyType: s.keyType, Now: s.store.Now()})
	if err != nil {
		return storage.Account{}, err
	}
	nc, err := s.newCert(id, certID, api.TypeGatewayManaged, "", is)
	if err != nil {
		return storage.Account{}, err
	}
	return s.store.CreateAccount(ctx, id, name, nc)
}

// GenerateRequest is a generation: validity in days (0 = default) and key
// type ("" = the service default).
type GenerateRequest struct {
	ValidityDays int
	KeyType      string
}

// Generate mints a root for the account and stores it inactive. The key is
// minted before the account's lock is taken, so a refused generation costs
// one key pair and never holds other writers up.
func (s *Service) Generate(ctx context.Context, accountID string, r GenerateRequest) (storage.Certificate, error) {
	kt := r.KeyType
	if kt == "" {
		kt = s.keyType
	}
	certID := uuid.NewString()
	is, err := ca.Generate(ca.Request{AccountID: accountID, ValidityDays: r.ValidityDays, KeyType: kt, Now: s.store.Now()})
	if err != nil {
		return storage.Certificate{}, err
	}
	nc, err := s.newCert(accountID, certID, api.TypeGatewayManaged, "", is)
	if err != nil {
		return storage.Certificate{}, err
	}
	return s.store.Generate(ctx, accountID, nc)
}

// Upload checks and stores a custom root and its key.
func (s *Service) Upload(ctx context.Context, accountID, name, certPEM, keyPEM string) (storage.Certificate, error) {
	is, err := ca.CheckUpload(certPEM, keyPEM, s.store.Now())
	if err != nil {
		return storage.Certificate{}, err
	}
	nc, err := s.newCert(accountID, uuid.NewString(), api.TypeCustom, name, is)
	if err != nil {
		return storage.Certificate{}, err
	}
	return s.store.Upload(ctx, accountID, nc)
}

// Use turns a certificate on for inspection ("" or api.NilUUID: none). It
// is refused with a *storage.NotReadyError when too few active devices
// trust the certificate; UseForce skips that guard.
func (s *Service) Use(ctx context.Context, accountID, certID string) (storage.Account, error) {
	return s.store.Configure(ctx, accountID, storage.ConfigChange{CertificateID: &certID})
}

// UseForce is Use without the readiness guard.
func (s *Service) UseForce(ctx context.Context, accountID, certID string) (storage.Account, error) {
	return s.store.Configure(ctx, accountID, storage.ConfigChange{CertificateID: &certID, Force: true})
}

// Download formats.
const (
	FormatPEM = "pem"
	FormatCRT = "crt"
)

// ErrFormat is returned by Download for an unknown format.
var ErrFormat = errors.New("controlplane: format must be pem or crt")

// Download returns a certificate as PEM or DER ("crt").
func (s *Service) Download(ctx context.Context, accountID, certID, format string) ([]byte, error) {
	if format != FormatPEM && format != FormatCRT {
		return nil, fmt.Errorf("%w, got %q", ErrFormat, format)
	}
	c, err := s.store.Get(ctx, accountID, certID)
	if err != nil {
		return nil, err
	}
	if format == FormatCRT {
		return c.DER, nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER}), nil
}

// ErrWrongSealKey means the seal key does not open the keys in the database.
var ErrWrongSealKey = errors.New("controlplane: the seal key does not open the private keys in this database (wrong --data-dir or CERTPLANE_SEAL_KEY?)")

// CheckSealKey proves the seal key opens a stored key, when the backend can
// sample one (storage.KeySampler); an empty database passes.
func (s *Service) CheckSealKey(ctx context.Context) error {
	ks, ok := s.store.Backend().(storage.KeySampler)
	if !ok || s.sealer == nil {
		return nil
	}
	a, c, sealed, ok, err := ks.SampleSealedKey(ctx)
	if err != nil || !ok {
		return err
	}
	if _, err := s.sealer.Open(sealed, keyAAD(a, c)); err != nil {
		return ErrWrongSealKey
	}
	return nil
}

// PrivateKey opens a certificate's sealed key. Nothing in the API calls it;
// it exists for operators who need the key to configure their own
// inspection proxy, and for tests that prove the seal round-trips.
func (s *Service) PrivateKey(ctx context.Context, accountID, certID string) (any, error) {
	if s.sealer == nil {
		return nil, ErrNoSealer
	}
	sealed, err := s.store.Backend().SealedKey(ctx, accountID, certID)
	if err != nil {
		return nil, err
	}
	der, err := s.sealer.Open(sealed, keyAAD(accountID, certID))
	if err != nil {
		return nil, fmt.Errorf("controlplane: key of %s: %w", certID, err)
	}
	return x509.ParsePKCS8PrivateKey(der)
}

// APICertificate converts a stored certificate to its wire form.
func APICertificate(c storage.Certificate) api.Certificate {
	return api.Certificate{
		ID:            c.ID,
		BindingStatus: c.Status,
		Certificate:   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER})),
		Fingerprint:   c.Fingerprint,
		InUse:         c.InUse,
		IssuerOrg:     c.IssuerOrg,
		IssuerRaw:     c.IssuerRaw,
		Type:          c.Type,
		CreatedAt:     api.Time{Time: c.CreatedAt},
		UpdatedAt:     api.Time{Time: c.UpdatedAt},
		UploadedOn:    api.Time{Time: c.UploadedOn},
		ExpiresOn:     api.Time{Time: c.ExpiresOn},
	}
}

// APIConfiguration converts an account's configuration to its wire form.
// With nothing in use the certificate id is the nil UUID.
func APIConfiguration(a storage.Account) (api.GatewayConfiguration, error) {
	id := a.InUseID
	if id == "" {
		id = api.NilUUID
	}
	out := api.GatewayConfiguration{
		CreatedAt: api.Time{Time: a.ConfigCreatedAt},
		UpdatedAt: api.Time{Time: a.ConfigUpdatedAt},
		Settings:  api.GatewaySettings{Certificate: &api.CertificateSetting{ID: id}},
	}
	if len(a.Settings) > 0 {
		if err := out.Settings.UnmarshalJSON(a.Settings); err != nil {
			return out, fmt.Errorf("controlplane: stored settings: %w", err)
		}
		// The schema's settings.certificate is {id} only.
		out.Settings.Certificate = &api.CertificateSetting{ID: id}
	}
	return out, nil
}
