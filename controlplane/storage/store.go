package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/certagent/certagent/api"
)

// Options configure Rules.
type Options struct {
	// Now is the clock; nil means time.Now. Tests move it to cross the
	// 24-hour generation window or a deploy delay without sleeping.
	Now func() time.Time
	// DeployDelay is how long pending_deployment and pending_deletion last.
	DeployDelay time.Duration
	// OnChange, if set, is called after every committed change with the
	// account and its new revision (long-poll wake-ups, deployer kicks).
	// It must not block.
	OnChange func(accountID string, revision int64)
	// GatewayLive is how recently a gateway must have reported to count
	// as live; zero means DefaultGatewayLive. While an account has live
	// gateways their reports, not the deploy delay, complete its pending
	// transitions.
	GatewayLive time.Duration
}

// Rules enforces the certificate lifecycle rules on top of a Backend.
type Rules struct {
	b    Backend
	opts Options
}

// New returns the Rules over b.
func New(b Backend, opts Options) *Rules {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.GatewayLive <= 0 {
		opts.GatewayLive = DefaultGatewayLive
	}
	return &Rules{b: b, opts: opts}
}

// Backend returns the underlying backend.
func (s *Rules) Backend() Backend { return s.b }

// Now returns the store's clock reading, in UTC.
func (s *Rules) Now() time.Time { return s.opts.Now().UTC() }

// DeployDelay returns the configured deploy delay.
func (s *Rules) DeployDelay() time.Duration { return s.opts.DeployDelay }

func (s *Rules) changed(accountID string, rev int64) {
	if s.opts.OnChange != nil {
		s.opts.OnChange(accountID, rev)
	}
}

// NewCertificate is a certificate about to be stored, with its sealed key.
type NewCertificate struct {
	ID          string
	Type        string
	DER         []byte
	Fingerprint string
	IssuerOrg   string
	IssuerRaw   string
	Name        string
	ExpiresOn   time.Time
	SealedKey   []byte
}

func (n NewCertificate) cert(accountID string, status api.BindingStatus, now time.Time) Certificate {
	c := Certificate{
		ID: n.ID, AccountID: accountID, Type: n.Type, Status: status, DER: n.DER,
		Fingerprint: n.Fingerprint, IssuerOrg: n.IssuerOrg, IssuerRaw: n.IssuerRaw,
		Name: n.Name, CreatedAt: now, UpdatedAt: now, ExpiresOn: n.ExpiresOn,
	}
	if n.Type == api.TypeCustom {
		c.UploadedOn = now
	}
	return c
}

// CreateAccount creates an account whose first certificate, initial, is
// available and in use from the start, as on Cloudflare.
func (s *Rules) CreateAccount(ctx context.Context, id, name string, initial NewCertificate) (Account, error) {
	now := s.Now()
	a := Account{ID: id, Name: name, CreatedAt: now, ConfigCreatedAt: now, ConfigUpdatedAt: now}
	err := s.b.CreateAccount(ctx, a, func(tx Tx) error {
		if err := tx.InsertCertificate(initial.cert(id, api.StatusAvailable, now), initial.SealedKey); err != nil {
			return err
		}
		return tx.SetConfiguration(initial.ID, nil, now)
	})
	if err != nil {
		return Account{}, fmt.Errorf("storage: create account %s: %w", id, err)
	}
	return s.b.Account(ctx, id)
}

// Generate stores a newly generated certificate as inactive, unless the
// account already generated GenerationsPerDay in the last GenerationWindow.
func (s *Rules) Generate(ctx context.Context, accountID string, n NewCertificate) (Certificate, error) {
	now := s.Now()
	var out Certificate
	rev, err := s.b.Update(ctx, accountID, func(tx Tx) error {
		recent, err := tx.Generations(now.Add(-GenerationWindow))
		if err != nil {
			return err
		}
		if len(recent) >= GenerationsPerDay {
			// The next one is allowed when enough of these leave the window.
			// A generation counts while it is at most GenerationWindow old.
			return &DailyLimitError{Next: recent[len(recent)-GenerationsPerDay].Add(GenerationWindow + time.Nanosecond)}
		}
		out = n.cert(accountID, api.StatusInactive, now)
		if err := tx.InsertCertificate(out, n.SealedKey); err != nil {
			return err
		}
		return tx.RecordGeneration(now)
	})
	if err != nil {
		return Certificate{}, err
	}
	s.changed(accountID, rev)
	return out, nil
}

// Upload stores a custom certificate as inactive, unless the account has
// MaxCustom already or already holds the same certificate.
func (s *Rules) Upload(ctx context.Context, accountID string, n NewCertificate) (Certificate, error) {
	now := s.Now()
	n.Type = api.TypeCustom
	var out Certificate
	rev, err := s.b.Update(ctx, accountID, func(tx Tx) error {
		certs, err := tx.Certificates()
		if err != nil {
			return err
		}
		custom := 0
		for _, c := range certs {
			if c.Fingerprint == n.Fingerprint {
				return fmt.Errorf("%w (id %s)", ErrDuplicate, c.ID)
			}
			if c.Type == api.TypeCustom {
				custom++
			}
		}
		if custom >= MaxCustom {
			return ErrCustomLimit
		}
		out = n.cert(accountID, api.StatusInactive, now)
		return tx.InsertCertificate(out, n.SealedKey)
	})
	if err != nil {
		return Certificate{}, err
	}
	s.changed(accountID, rev)
	return out, nil
}

// find returns the certificate with id among certs.
func find(certs []Certificate, id string) (Certificate, bool) {
	for _, c := range certs {
		if c.ID == id {
			return c, true
		}
	}
	return Certificate{}, false
}

// transition is the shared body of Activate and Deactivate.
func (s *Rules) transition(ctx context.Context, accountID, certID string, decide func(certs []Certificate, c Certificate) (api.BindingStatus, error)) (Certificate, error) {
	now := s.Now()
	var out Certificate
	wrote := false
	rev, err := s.b.Update(ctx, accountID, func(tx Tx) error {
		certs, err := tx.Certificates()
		if err != nil {
			return err
		}
		c, ok := find(certs, certID)
		if !ok {
			return ErrNotFound
		}
		to, err := decide(certs, c)
		if err != nil {
			return err
		}
		out = c
		if to == c.Status {
			return nil // already done or under way: harmless, nothing written
		}
		due := now.Add(s.opts.DeployDelay)
		if err := tx.SetStatus(certID, to, due, now); err != nil {
			return err
		}
		out.Status, out.DueAt, out.UpdatedAt = to, due, now
		wrote = true
		return nil
	})
	if err != nil {
		return Certificate{}, err
	}
	if wrote {
		s.changed(accountID, rev)
	}
	return out, nil
}

// Activate starts deploying a certificate (→ pending_deployment, then
// available after the deploy delay). Activating one that is available or
// pending_deployment returns it unchanged. Refused when MaxAvailable
// certificates are available or pending deployment.
func (s *Rules) Activate(ctx context.Context, accountID, certID string) (Certificate, error) {
	return s.transition(ctx, accountID, certID, func(certs []Certificate, c Certificate) (api.BindingStatus, error) {
		switch c.Status {
		case api.StatusAvailable, api.StatusPendingDeployment:
			return c.Status, nil
		}
		n := 0
		for _, o := range certs {
			if o.Status == api.StatusAvailable || o.Status == api.StatusPendingDeployment {
				n++
			}
		}
		if n >= MaxAvailable {
			return "", ErrAvailableLimit
		}
		return api.StatusPendingDeployment, nil
	})
}

// Deactivate starts withdrawing a certificate (→ pending_deletion, then
// inactive). Deactivating one that is inactive or pending_deletion returns
// it unchanged; the certificate in use is refused.
func (s *Rules) Deactivate(ctx context.Context, accountID, certID string) (Certificate, error) {
	return s.transition(ctx, accountID, certID, func(_ []Certificate, c Certificate) (api.BindingStatus, error) {
		switch c.Status {
		case api.StatusInactive, api.StatusPendingDeletion:
			return c.Status, nil
		}
		if c.InUse {
			return "", ErrDeactivateInUse
		}
		return api.StatusPendingDeletion, nil
	})
}

// Delete removes an inactive certificate and returns it as it was.
func (s *Rules) Delete(ctx context.Context, accountID, certID string) (Certificate, error) {
	var out Certificate
	rev, err := s.b.Update(ctx, accountID, func(tx Tx) error {
		certs, err := tx.Certificates()
		if err != nil {
			return err
		}
		c, ok := find(certs, certID)
		if !ok {
			return ErrNotFound
		}
		if c.Status != api.StatusInactive || c.InUse {
			return ErrDeleteNotInactive
		}
		out = c
		return tx.DeleteCertificate(certID)
	})
	if err != nil {
		return Certificate{}, err
	}
	s.changed(accountID, rev)
	return out, nil
}

// ConfigChange is a configuration update. CertificateID nil leaves the in-use
// certificate alone; a pointer to "" or api.NilUUID turns it off.
type ConfigChange struct {
	CertificateID *string
	// Settings replaces the other settings collections when Replace is
	// true; otherwise its top-level keys are merged into them.
	Settings map[string]json.RawMessage
	Replace  bool
	// Force turns a certificate on even when it is not ready on enough
	// active devices (see CheckReady); false lets the guard refuse.
	Force bool
}

// Configure applies a configuration change. Turning on a certificate that
// is not available is refused with ErrUseNotAvailable; an unknown one with
// ErrNotFound. Turning one on demotes the previous one.
//
// Turning on a certificate that is not already in use is guarded: unless
// ch.Force, a *NotReadyError when too few active devices trust it. The
// guard reads before the transaction (a readiness count must not hold the
// account's write lock); a device checking in meanwhile only makes it
// more ready.
func (s *Rules) Configure(ctx context.Context, accountID string, ch ConfigChange) (Account, error) {
	if ch.CertificateID != nil && !ch.Force {
		id := *ch.CertificateID
		if id != "" && id != api.NilUUID {
			a, err := s.b.Account(ctx, accountID)
			if err != nil {
				return Account{}, err
			}
			if a.InUseID != id {
				if err := s.CheckReady(ctx, accountID, id); err != nil && !errors.Is(err, ErrNotFound) {
					return Account{}, err
				}
			}
		}
	}
	now := s.Now()
	var out Account
	rev, err := s.b.Update(ctx, accountID, func(tx Tx) error {
		a := tx.Account()
		inUse := a.InUseID
		if ch.CertificateID != nil {
			id := *ch.CertificateID
			if id == api.NilUUID {
				id = ""
			}
			if id != "" {
				certs, err := tx.Certificates()
				if err != nil {
					return err
				}
				c, ok := find(certs, id)
				if !ok {
					return ErrNotFound
				}
				if c.Status != api.StatusAvailable {
					return ErrUseNotAvailable
				}
			}
			inUse = id
		}
		settings, err := mergeSettings(a.Settings, ch.Settings, ch.Replace)
		if err != nil {
			return err
		}
		if err := tx.SetConfiguration(inUse, settings, now); err != nil {
			return err
		}
		out = a
		out.InUseID, out.Settings, out.ConfigUpdatedAt = inUse, settings, now
		return nil
	})
	if err != nil {
		return Account{}, err
	}
	out.Revision = rev
	s.changed(accountID, rev)
	return out, nil
}

func mergeSettings(old json.RawMessage, in map[string]json.RawMessage, replace bool) (json.RawMessage, error) {
	m := map[string]json.RawMessage{}
	if !replace && len(old) > 0 {
		if err := json.Unmarshal(old, &m); err != nil {
			return nil, fmt.Errorf("storage: stored settings: %w", err)
		}
	}
	for k, v := range in {
		if k == "certificate" {
			continue
		}
		m[k] = v
	}
	if len(m) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("storage: settings: %w", err)
	}
	return b, nil
}

// List returns the account's certificates and the revision they belong to.
func (s *Rules) List(ctx context.Context, accountID string) ([]Certificate, int64, error) {
	a, certs, err := s.b.Snapshot(ctx, accountID)
	if err != nil {
		return nil, 0, err
	}
	return certs, a.Revision, nil
}

// Get returns one certificate.
func (s *Rules) Get(ctx context.Context, accountID, certID string) (Certificate, error) {
	return s.b.Certificate(ctx, accountID, certID)
}

// Account returns one account.
func (s *Rules) Account(ctx context.Context, accountID string) (Account, error) {
	return s.b.Account(ctx, accountID)
}

// Revision returns the account's revision; it reads nothing else.
func (s *Rules) Revision(ctx context.Context, accountID string) (int64, error) {
	return s.b.Revision(ctx, accountID)
}

// DeployPass is what one Deploy call did.
type DeployPass struct {
	// Done counts transitions this call completed.
	Done int
	// Waiting counts pending certificates of accounts with live gateways
	// that the gateways have not caught up with yet: their due time no
	// longer applies, so the deployer polls for them instead.
	Waiting int
}

// CompleteDue is Deploy's count of completed transitions.
func (s *Rules) CompleteDue(ctx context.Context) (int, error) {
	p, err := s.Deploy(ctx)
	return p.Done, err
}

// Deploy finishes every pending transition that may finish now. For an
// account with live gateways (reported within GatewayLive) that is when the
// gateways say so (Deployed): a root is available once every live gateway
// has loaded it, inactive once none holds it. For any other account the
// due time stands in. Safe to run on every replica at once: each
// transition is claimed by exactly one (Backend.CompleteTransition).
func (s *Rules) Deploy(ctx context.Context) (DeployPass, error) {
	now := s.Now()
	live, err := s.liveGateways(ctx, now)
	if err != nil {
		return DeployPass{}, err
	}
	var p DeployPass
	p.Done, p.Waiting, err = s.completeByGateways(ctx, now, live)
	if err != nil {
		return p, err
	}
	// Due transitions of gateway accounts are skipped below; a page large
	// enough to hold all of them and 100 others keeps them from starving
	// the rest.
	limit := 100 + p.Waiting
	for {
		due, err := s.b.DueTransitions(ctx, now, limit)
		if err != nil {
			return p, err
		}
		progress := false
		for _, t := range due {
			if _, gw := live[t.AccountID]; gw {
				continue
			}
			ok, rev, err := s.b.CompleteTransition(ctx, t, now)
			if err != nil {
				return p, err
			}
			if ok {
				p.Done++
				progress = true
				s.changed(t.AccountID, rev)
			}
		}
		if len(due) < limit || !progress {
			return p, nil
		}
	}
}

// Quota is where an account stands against the generation limit.
type Quota struct {
	// Used counts generations in the GenerationWindow ending now.
	Used int
	// Limit is GenerationsPerDay.
	Limit int
	// NextAt is when the next generation is allowed; zero when one is
	// allowed now.
	NextAt time.Time
}

// Remaining returns how many generations are allowed now.
func (q Quota) Remaining() int { return max(q.Limit-q.Used, 0) }

// GenerationQuota reports how many generations the account used in the
// rolling window and, at the limit, when the oldest of them leaves it.
func (s *Rules) GenerationQuota(ctx context.Context, accountID string) (Quota, error) {
	now := s.Now()
	times, err := s.b.GenerationTimes(ctx, accountID, now.Add(-GenerationWindow))
	if err != nil {
		return Quota{}, err
	}
	q := Quota{Used: len(times), Limit: GenerationsPerDay}
	if q.Used >= q.Limit {
		// The window admits a generation once fewer than Limit remain in
		// it: just after GenerationWindow from the (Used-Limit+1)-th
		// oldest (the window includes its start), as DailyLimitError says.
		q.NextAt = times[q.Used-q.Limit].Add(GenerationWindow + time.Nanosecond)
	}
	return q, nil
}

// NextDue returns the earliest pending due time.
func (s *Rules) NextDue(ctx context.Context) (time.Time, bool, error) { return s.b.NextDue(ctx) }

// Target returns the status a pending status completes to, and whether s
// is pending at all.
func Target(s api.BindingStatus) (api.BindingStatus, bool) {
	switch s {
	case api.StatusPendingDeployment:
		return api.StatusAvailable, true
	case api.StatusPendingDeletion:
		return api.StatusInactive, true
	}
	return "", false
}
