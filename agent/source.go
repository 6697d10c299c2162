package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust"
)

// Source is where the account's certificates come from. *api.Client
// satisfies it through ClientSource; tests use in-memory sources.
type Source interface {
	// List returns the certificates, or api.ErrNotModified when etag (if
	// non-empty) still matches.
	List(ctx context.Context, etag string) (*api.ListResult, error)
}

// ClientSource adapts *api.Client to Source.
type ClientSource struct{ Client *api.Client }

// List calls ListIfChanged without a long-poll wait.
func (s ClientSource) List(ctx context.Context, etag string) (*api.ListResult, error) {
	return s.Client.ListIfChanged(ctx, etag, 0)
}

// NewClientSource builds the Source for cfg: the API client with the pinned
// HTTP client.
func NewClientSource(cfg *Config, userAgent string) (Source, error) {
	hc, err := HTTPClient(cfg)
	if err != nil {
		return nil, err
	}
	c, err := api.NewClient(cfg.ControlPlaneURL, cfg.AccountID, cfg.APIToken, api.WithHTTPClient(hc), api.WithUserAgent(userAgent))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return ClientSource{Client: c}, nil
}

// ErrIntegrity marks an answer whose envelope was fine but whose deployed
// certificates do not hold together (a PEM that does not parse, a
// fingerprint that does not match): damage in transit or a broken server,
// not an admin's decision, so the agent fails static on it.
var ErrIntegrity = errors.New("agent: certificate list failed its integrity check")

// CertInfo describes one certificate of the answer for reports and status.
type CertInfo struct {
	ID            string            `json:"id"`
	FP            trust.Fingerprint `json:"fingerprint"`
	Subject       string            `json:"subject"`
	NotAfter      time.Time         `json:"not_after"`
	BindingStatus string            `json:"binding_status"`
	InUse         bool              `json:"in_use,omitempty"`
	Type          string            `json:"type,omitempty"`
}

// Evaluation is the answer judged: what to trust, what was refused and why,
// and what is not deployed (yet, or any more).
type Evaluation struct {
	Desired  []*trust.Cert
	Infos    []CertInfo
	Rejected []trust.Rejected
	// Withheld are certificates not deployed (inactive, pending): listed
	// for status, never installed.
	Withheld []CertInfo
}

// Evaluate turns a certificate list into the desired set. It returns
// ErrIntegrity when a deployed certificate's PEM does not parse as exactly
// one certificate or its claimed fingerprint is wrong; policy refusals
// (expired, not a CA, weak key, SHA-1) are reported in Rejected and are a
// legitimate part of the answer.
func Evaluate(certs []api.Certificate, policy trust.Policy, retired map[trust.Fingerprint]bool) (*Evaluation, error) {
	if err := checkShape(certs); err != nil {
		return nil, err
	}
	ev := &Evaluation{}
	var cands []trust.Candidate
	byID := map[string]api.Certificate{}
	for _, c := range certs {
		if !c.BindingStatus.Deployed() {
			info := CertInfo{ID: c.ID, BindingStatus: string(c.BindingStatus.Normalize()), InUse: c.InUse, Type: c.Type}
			if tc, err := trust.ParseOnePEM([]byte(c.Certificate)); err == nil {
				info.FP, info.Subject, info.NotAfter = tc.FP, tc.Subject(), tc.X509.NotAfter.UTC()
			}
			ev.Withheld = append(ev.Withheld, info)
			continue
		}
		tc, err := trust.ParseOnePEM([]byte(c.Certificate))
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %s: %v", ErrIntegrity, c.ID, err)
		}
		if c.Fingerprint != "" {
			claimed, err := trust.ParseFingerprint(c.Fingerprint)
			if err != nil {
				return nil, fmt.Errorf("%w: certificate %s: %v", ErrIntegrity, c.ID, err)
			}
			if claimed != tc.FP {
				return nil, fmt.Errorf("%w: certificate %s: claimed fingerprint %s, PEM has %s", ErrIntegrity, c.ID, claimed.Short(), tc.FP.Short())
			}
		}
		if retired[tc.FP] {
			ev.Rejected = append(ev.Rejected, trust.Rejected{ID: c.ID, FP: tc.FP, Reason: "retired fingerprint (built in or retired_fingerprints)"})
			continue
		}
		byID[c.ID] = c
		cands = append(cands, trust.Candidate{ID: c.ID, PEM: []byte(c.Certificate), ClaimedFingerprint: c.Fingerprint})
	}
	ok, bad := policy.Evaluate(cands)
	ev.Desired = ok
	ev.Rejected = append(ev.Rejected, bad...)
	for _, c := range ok {
		src := byID[c.ID]
		ev.Infos = append(ev.Infos, CertInfo{
			ID: c.ID, FP: c.FP, Subject: c.Subject(), NotAfter: c.X509.NotAfter.UTC(),
			BindingStatus: string(src.BindingStatus.Normalize()), InUse: src.InUse, Type: src.Type,
		})
	}
	return ev, nil
}

// checkShape refuses a list that no account can have: two entries under
// one id (which of them did the admin activate?), or more deployed roots
// than an account may hold (10 managed + 5 custom). Either is a broken or
// hostile server, not a decision, so nothing of it is believed; accepting
// the first 15 would let an answer choose which roots survive by order.
func checkShape(certs []api.Certificate) error {
	ids := make(map[string]bool, len(certs))
	deployed := map[string]bool{}
	for _, c := range certs {
		if c.ID != "" {
			if ids[c.ID] {
				return fmt.Errorf("%w: certificate id %q listed twice", ErrIntegrity, c.ID)
			}
			ids[c.ID] = true
		}
		if c.BindingStatus.Deployed() {
			key := c.ID
			if tc, err := trust.ParseOnePEM([]byte(c.Certificate)); err == nil {
				key = tc.FP.String()
			}
			deployed[key] = true
		}
	}
	if len(deployed) > trust.MaxAvailable {
		return fmt.Errorf("%w: %d deployed certificates, more than the %d an account can have", ErrIntegrity, len(deployed), trust.MaxAvailable)
	}
	return nil
}

// Poll timing.
const (
	// BackoffBase is the first retry delay after a failure.
	BackoffBase = 5 * time.Second
	// BackoffCap bounds the retry delay.
	BackoffCap = 10 * time.Minute
	// AuthRetry is how long an auth failure (401/403) stops polling when
	// neither the config nor the token file changes: a wrong token does not
	// get better by asking again, and a fleet of agents hammering with it
	// looks like an attack.
	AuthRetry = time.Hour
)

// NextDelay returns how long to wait before the next poll. rnd is uniform in
// [0,1). After a success the interval gets ±10% jitter so a fleet spreads
// out; after failures the delay doubles from BackoffBase up to BackoffCap
// with "equal jitter" (half fixed, half random) so retries neither
// synchronise nor collapse to zero.
func NextDelay(interval time.Duration, failures int, rnd float64) time.Duration {
	if failures <= 0 {
		return time.Duration(float64(interval) * (0.9 + 0.2*rnd))
	}
	d := BackoffCap
	if failures < 30 {
		if b := BackoffBase * time.Duration(math.Pow(2, float64(failures-1))); b < BackoffCap {
			d = b
		}
	}
	return d/2 + time.Duration(rnd*float64(d/2))
}
