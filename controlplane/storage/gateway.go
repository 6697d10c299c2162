package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/certagent/certagent/api"
)

// DefaultGatewayLive is how recently a gateway must have reported to count
// as live: a few of its report intervals (controlplane/gateway reports every
// 2 s), so one late report does not flip a deployment back to the timer.
const DefaultGatewayLive = 10 * time.Second

// ErrInvalidGateway is returned for a gateway report that cannot be stored
// (an empty or unprintable id, a field too long).
var ErrInvalidGateway = errors.New("storage: invalid gateway report")

// Gateway is one inspection gateway's registration: what it last reported.
// A gateway is keyed by (AccountID, ID); a restart with the same id
// replaces its row.
type Gateway struct {
	ID        string
	AccountID string
	// Hostname, Listen and Version describe the process, for `gateway list`.
	Hostname string
	Listen   string
	Version  string
	// StartedAt is when the process started; LastSeen is the time of its
	// latest report (set by Rules.ReportGateway from its clock).
	StartedAt time.Time
	LastSeen  time.Time
	// Loaded holds the fingerprints of the roots whose keys the gateway has
	// opened and can sign with, sorted; nil means none.
	Loaded []string
	// Signing is the fingerprint of the root it mints leaves from; "" means
	// it intercepts nothing.
	Signing string
	// Revision is the account revision the loaded set was read at.
	Revision int64
}

// Holds reports whether the gateway has loaded the root with fingerprint fp.
func (g Gateway) Holds(fp string) bool {
	_, ok := slices.BinarySearch(g.Loaded, fp)
	return ok
}

// Live reports whether the gateway reported within live before now.
func (g Gateway) Live(now time.Time, live time.Duration) bool {
	return !g.LastSeen.Before(now.Add(-live))
}

// GatewayRegistry is the part of a Backend that records gateways.
type GatewayRegistry interface {
	// ReportGateway inserts or replaces the gateway's row. ErrNotFound if
	// the account is unknown.
	ReportGateway(ctx context.Context, g Gateway) error
	// Gateways returns gateways seen at or after since (zero: all), of one
	// account or, with accountID "", of every account; ordered by account
	// then id, Loaded sorted.
	Gateways(ctx context.Context, accountID string, since time.Time) ([]Gateway, error)
	// RemoveGateway deletes one gateway's row (a clean shutdown).
	// ErrNotFound if there is none.
	RemoveGateway(ctx context.Context, accountID, id string) error
}

// EncodeFingerprints returns the stored form of a loaded set: sorted,
// space-separated (fingerprints hold no spaces).
func EncodeFingerprints(fps []string) string {
	s := slices.Clone(fps)
	slices.Sort(s)
	return strings.Join(slices.Compact(s), " ")
}

// DecodeFingerprints is the inverse of EncodeFingerprints.
func DecodeFingerprints(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Fields(s)
}

func checkField(name, v string, max int, required bool) error {
	if required && v == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalidGateway, name)
	}
	if len(v) > max || strings.IndexFunc(v, func(r rune) bool { return unicode.IsControl(r) || r == unicode.ReplacementChar }) >= 0 {
		return fmt.Errorf("%w: %s must be at most %d printable characters", ErrInvalidGateway, name, max)
	}
	return nil
}

// ReportGateway records a gateway's report, stamped with the store's clock.
// It changes no certificate and does not bump the account's revision
// (agents' long-polls have nothing to learn from it); the deployer reads
// reports on its own schedule.
func (s *Rules) ReportGateway(ctx context.Context, g Gateway) error {
	for _, f := range []struct {
		name, v  string
		max      int
		required bool
	}{
		{"id", g.ID, 128, true}, {"hostname", g.Hostname, 255, false}, {"listen", g.Listen, 255, false},
		{"version", g.Version, 64, false}, {"signing", g.Signing, 128, false},
	} {
		if err := checkField(f.name, f.v, f.max, f.required); err != nil {
			return err
		}
	}
	if len(g.Loaded) > 1000 {
		return fmt.Errorf("%w: %d loaded roots", ErrInvalidGateway, len(g.Loaded))
	}
	for _, fp := range g.Loaded {
		if fp == "" || strings.ContainsAny(fp, " \t\r\n") || len(fp) > 128 {
			return fmt.Errorf("%w: fingerprint %q", ErrInvalidGateway, fp)
		}
	}
	g.Loaded = DecodeFingerprints(EncodeFingerprints(g.Loaded))
	g.LastSeen = s.Now()
	if g.StartedAt.IsZero() {
		g.StartedAt = g.LastSeen
	}
	return s.b.ReportGateway(ctx, g)
}

// Gateways returns the account's gateways, live or not.
func (s *Rules) Gateways(ctx context.Context, accountID string) ([]Gateway, error) {
	if _, err := s.b.Revision(ctx, accountID); err != nil {
		return nil, err
	}
	return s.b.Gateways(ctx, accountID, time.Time{})
}

// RemoveGateway forgets a gateway (it stopped cleanly).
func (s *Rules) RemoveGateway(ctx context.Context, accountID, id string) error {
	return s.b.RemoveGateway(ctx, accountID, id)
}

// GatewayLive returns how recently a gateway must have reported to count.
func (s *Rules) GatewayLive() time.Duration { return s.opts.GatewayLive }

// liveGateways returns every account's live gateways, by account.
func (s *Rules) liveGateways(ctx context.Context, now time.Time) (map[string][]Gateway, error) {
	gws, err := s.b.Gateways(ctx, "", now.Add(-s.opts.GatewayLive))
	if err != nil {
		return nil, err
	}
	out := map[string][]Gateway{}
	for _, g := range gws {
		out[g.AccountID] = append(out[g.AccountID], g)
	}
	return out, nil
}

// Deployed reports whether a pending certificate's transition may complete
// by what the gateways report: a root being deployed is there once every
// gateway has loaded it; one being withdrawn is gone once none holds it.
func Deployed(c Certificate, gateways []Gateway) bool {
	switch c.Status {
	case api.StatusPendingDeployment:
		for _, g := range gateways {
			if !g.Holds(c.Fingerprint) {
				return false
			}
		}
		return true
	case api.StatusPendingDeletion:
		for _, g := range gateways {
			if g.Holds(c.Fingerprint) {
				return false
			}
		}
		return true
	}
	return false
}

// completeByGateways completes the pending transitions of accounts with
// live gateways as far as their reports allow, and returns how many it
// completed and how many pending certificates it left waiting.
func (s *Rules) completeByGateways(ctx context.Context, now time.Time, live map[string][]Gateway) (done, waiting int, err error) {
	for accountID, gws := range live {
		_, certs, err := s.b.Snapshot(ctx, accountID)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return done, waiting, err
		}
		for _, c := range certs {
			to, pending := Target(c.Status)
			if !pending {
				continue
			}
			if !Deployed(c, gws) {
				waiting++
				continue
			}
			ok, rev, err := s.b.CompleteTransition(ctx, Transition{AccountID: accountID, CertID: c.ID, From: c.Status, To: to, DueAt: c.DueAt}, now)
			if err != nil {
				return done, waiting, err
			}
			if ok {
				done++
				s.changed(accountID, rev)
			}
		}
	}
	return done, waiting, nil
}
