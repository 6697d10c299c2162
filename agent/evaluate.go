package agent

import (
	"errors"
	"fmt"
	"time"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust"
)

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
	return evaluate(certs, policy, retired, &pemParses{})
}

// pemParses parses each certificate PEM once: within one evaluation (the
// shape check, the integrity check and the policy each look at every
// certificate), and across evaluations of answers that repeat a
// certificate (an agent's passes). Keyed by the exact PEM text, so a
// parse stands only for the bytes it came from; keep ends an evaluation
// and forgets the certificates its answer no longer lists. Not safe for
// concurrent use (an agent's passes are serialised).
type pemParses struct {
	prev, cur map[string]pemParse
}

type pemParse struct {
	cert *trust.Cert
	err  error
}

// parse returns trust.ParseOnePEM(pem), from the cache when it has it. The
// caller must not modify the certificate.
func (p *pemParses) parse(pem string) (*trust.Cert, error) {
	if r, ok := p.cur[pem]; ok {
		return r.cert, r.err
	}
	r, ok := p.prev[pem]
	if !ok {
		r.cert, r.err = trust.ParseOnePEM([]byte(pem))
	}
	if p.cur == nil {
		p.cur = make(map[string]pemParse)
	}
	p.cur[pem] = r
	return r.cert, r.err
}

// keep makes the parses of the evaluation that just ended the ones the
// next one may reuse.
func (p *pemParses) keep() {
	p.prev, p.cur = p.cur, nil
}

// evaluate is Evaluate with parses from p.
func evaluate(certs []api.Certificate, policy trust.Policy, retired map[trust.Fingerprint]bool, p *pemParses) (*Evaluation, error) {
	defer p.keep()
	if err := checkShape(certs, p); err != nil {
		return nil, err
	}
	ev := &Evaluation{}
	var cands []trust.Candidate
	byID := map[string]api.Certificate{}
	for _, c := range certs {
		if !c.BindingStatus.Deployed() {
			info := CertInfo{ID: c.ID, BindingStatus: string(c.BindingStatus.Normalize()), InUse: c.InUse, Type: c.Type}
			if tc, err := p.parse(c.Certificate); err == nil {
				info.FP, info.Subject, info.NotAfter = tc.FP, tc.Subject(), tc.X509.NotAfter.UTC()
			}
			ev.Withheld = append(ev.Withheld, info)
			continue
		}
		tc, err := p.parse(c.Certificate)
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
		cands = append(cands, trust.Candidate{ID: c.ID, PEM: []byte(c.Certificate), ClaimedFingerprint: c.Fingerprint, Parsed: tc})
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
func checkShape(certs []api.Certificate, p *pemParses) error {
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
			if tc, err := p.parse(c.Certificate); err == nil {
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
