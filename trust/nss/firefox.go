package nss

import (
	"context"
	"errors"
	"fmt"

	"github.com/certagent/certagent/trust"
)

// RemoveFromFirefox deletes every copy of fps from every Firefox profile's
// database of every user, whatever its trust flags, and reports how many it
// deleted.
//
// It exists for the firefox-policy store: Firefox imports each
// Certificates.Install root into the profile's cert9.db when it starts and
// keeps trusting it after the policy is gone. Those copies carry a nickname
// Firefox chose ("<CN> - <O>") and trust that Firefox's newer NSS wrote,
// which Debian's older certutil reads as ",,", so List never reports them;
// here every nickname is looked at and matched by exact fingerprint. Only
// roots being withdrawn are named, and a copy of one in a profile came from
// the policy that installed it.
func (s *Store) RemoveFromFirefox(ctx context.Context, fps []trust.Fingerprint) (int, error) {
	if len(fps) == 0 {
		return 0, nil
	}
	if err := s.Check(ctx); err != nil {
		return 0, err
	}
	dbs, _, err := s.discover()
	if err != nil {
		return 0, fmt.Errorf("nss: %w", err)
	}
	want := make(map[trust.Fingerprint]bool, len(fps))
	for _, fp := range fps {
		want[fp] = true
	}
	removed := 0
	var errs []error
	for _, d := range dbs {
		if !d.firefox {
			continue
		}
		n, err := s.removeAnyTrust(ctx, d, want)
		removed += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

// removeAnyTrust deletes the nicknames of d that hold only wanted
// certificates.
func (s *Store) removeAnyTrust(ctx context.Context, d db, want map[trust.Fingerprint]bool) (int, error) {
	unlock := s.lockDB(d.dir)
	defer unlock()
	out, err := s.runCertutil(ctx, s.certutilCmd(d, "-L"))
	if err != nil {
		return 0, fmt.Errorf("nss: certutil -L (%s): %w", d.target, err)
	}
	seen := make(map[string]bool)
	removed := 0
	for _, l := range parseList(out) {
		if seen[l.nick] {
			continue
		}
		seen[l.nick] = true
		pemOut, err := s.runCertutil(ctx, s.certutilCmd(d, "-L", "-n", l.nick, "-a"))
		if err != nil {
			return removed, fmt.Errorf("nss: certutil -L -n %q (%s): %w", l.nick, d.target, err)
		}
		certs, err := trust.ParsePEM(pemOut)
		if err != nil || len(certs) == 0 {
			continue
		}
		all := true
		for _, c := range certs {
			all = all && want[c.FP]
		}
		if !all {
			// A nickname shared with a certificate we were not asked to
			// remove: certutil -D would take both.
			continue
		}
		// -D removes one certificate of the nickname per run.
		for range certs {
			if _, err := s.runCertutil(ctx, s.certutilCmd(d, "-D", "-n", l.nick)); err != nil {
				return removed, fmt.Errorf("nss: certutil -D -n %q (%s): %w", l.nick, d.target, err)
			}
		}
		removed++
		s.log.Info("removed firefox's copy of a withdrawn root", "target", d.target.String(), "nickname", l.nick)
	}
	if removed > 0 {
		s.invalidate(d.dir)
	}
	return removed, nil
}
