package nss

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
)

// Apply implements trust.Store. Databases are changed in parallel (at most
// Options.Workers at once), each one's changes in order, and every change
// is checked against a fresh listing afterwards.
func (s *Store) Apply(ctx context.Context, changes []trust.Change) []trust.Result {
	if len(changes) == 0 {
		return nil
	}
	b := trust.NewBatch(changes)
	if err := s.Check(ctx); err != nil {
		b.FailRemaining(err)
		return b.Results
	}
	dbs, _, err := s.discover()
	if err != nil {
		b.FailRemaining(fmt.Errorf("nss: %w", err))
		return b.Results
	}
	byTarget := make(map[trust.Target]db, len(dbs))
	for _, d := range dbs {
		byTarget[d.target] = d
	}
	sem := make(chan struct{}, s.workers)
	var wg sync.WaitGroup
	for _, g := range b.ByTarget(func(t trust.Target) bool { _, ok := byTarget[t]; return ok }, ErrUnknownTarget) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.applyDB(ctx, byTarget[g.Target], b, g)
		})
	}
	wg.Wait()
	return b.Results
}

// applyDB performs group g's changes, all on database d; it decides only
// g's slots.
func (s *Store) applyDB(ctx context.Context, d db, b *trust.Batch, g trust.Group) {
	unlock := s.lockDB(d.dir)
	defer unlock()
	if d.create && dbState(d.dir) == dbNone {
		if !g.HasInstall() {
			// Nothing to remove from a database that does not exist.
			for _, i := range g.Slots {
				b.Results[i] = trust.OK(b.Changes[i])
			}
			return
		}
		if err := s.createDB(ctx, d); err != nil {
			g.FailRemaining(err)
			return
		}
	}
	entries, err := s.listDB(ctx, d)
	if err != nil {
		g.FailRemaining(err)
		return
	}
	changed := false
	var added []*trust.Cert
	// Several roots for one database go in with one certutil run (batch
	// mode); whatever the batch did not add is then added one by one,
	// which names the root that failed and why.
	var want []int
	for _, i := range g.Slots {
		if c := b.Changes[i]; c.Op == trust.OpInstall && !hasOurs(entries, c.FP) {
			want = append(want, i)
		}
	}
	if len(want) > 1 {
		if err := s.batchAdd(ctx, d, b.Changes, want); err != nil {
			s.log.Debug("batch add failed; adding one by one", "target", d.target.String(), "error", err)
		}
		before := s.invalidate(d.dir)
		for _, i := range want {
			added = append(added, b.Changes[i].Cert)
		}
		entries, err = s.relistDB(ctx, d, knownCerts(before, added))
		if err != nil {
			g.FailRemaining(err)
			return
		}
	}
	for _, i := range g.Slots {
		c := b.Changes[i]
		switch c.Op {
		case trust.OpInstall:
			if hasOurs(entries, c.FP) {
				continue
			}
			// certutil reads the certificate from stdin when -i is absent,
			// so no temporary file has to be readable by the user.
			add := s.certutilCmd(d, "-A", "-n", nickname(c.FP), "-t", "C,,")
			add.Stdin = c.Cert.PEM()
			if _, err := s.runCertutil(ctx, add); err != nil {
				b.Results[i] = trust.Failed(c, fmt.Errorf("nss: certutil -A (%s): %w", d.target, err))
				continue
			}
			changed = true
			added = append(added, c.Cert)
		case trust.OpRemove:
			nicks, why := removable(entries, c.FP)
			if why != "" {
				b.Results[i] = trust.Skipped(c, why)
				continue
			}
			for _, n := range nicks {
				if _, err := s.runCertutil(ctx, s.certutilCmd(d, "-D", "-n", n)); err != nil {
					b.Results[i] = trust.Failed(c, fmt.Errorf("nss: certutil -D -n %q (%s): %w", n, d.target, err))
					break
				}
				changed = true
				s.log.Info("removed root", "fingerprint", c.FP.Short(), "target", d.target.String(), "nickname", n)
			}
		}
	}
	if changed {
		// One listing confirms every change: the roots we just added are
		// listed under nicknames that name their fingerprints.
		before := s.invalidate(d.dir)
		entries, err = s.relistDB(ctx, d, knownCerts(before, added))
		if err != nil {
			g.FailRemaining(err)
			return
		}
	}
	held := func(fp trust.Fingerprint) bool { return holds(entries, fp) }
	g.Confirm(held, held, "nss: "+d.target.String())
}

func hasOurs(es []nssEntry, fp trust.Fingerprint) bool {
	for _, e := range es {
		if e.cert.FP == fp && e.ours {
			return true
		}
	}
	return false
}

func holds(es []nssEntry, fp trust.Fingerprint) bool {
	for _, e := range es {
		if e.cert.FP == fp {
			return true
		}
	}
	return false
}

// removable returns the nicknames to delete to remove fp, or why not. Our
// own nickname goes alone when present; otherwise (a foreign root, named by
// its exact fingerprint) every nickname that holds only fp goes, and a
// nickname shared with another certificate stays: certutil -D deletes by
// nickname, and two roots with one subject share one.
func removable(es []nssEntry, fp trust.Fingerprint) ([]string, string) {
	for _, e := range es {
		if e.cert.FP == fp && e.ours && !e.shared {
			return []string{e.nick}, ""
		}
	}
	var nicks []string
	for _, e := range es {
		if e.cert.FP != fp {
			continue
		}
		if e.shared {
			return nil, fmt.Sprintf("nickname %q is shared with other certificates; not removed", e.nick)
		}
		nicks = append(nicks, e.nick)
	}
	return nicks, ""
}

// createDB makes d's directory and an empty database, as d's user.
func (s *Store) createDB(ctx context.Context, d db) error {
	if _, err := s.run.Run(ctx, platform.Cmd{Path: "/bin/mkdir", Args: []string{"-p", "-m", "0700", d.dir}, As: d.user}); err != nil {
		return fmt.Errorf("nss: create %s: %w", d.target, err)
	}
	if _, err := s.runCertutil(ctx, s.certutilCmd(d, "-N", "--empty-password")); err != nil {
		return fmt.Errorf("nss: certutil -N (%s): %w", d.target, err)
	}
	s.log.Info("created nss database", "target", d.target.String())
	return nil
}

// batchAdd adds the roots changes[want] to d in one `certutil -B` run. The
// certificates (public) are written to a root-owned temporary directory
// the database's owner can read but not change.
func (s *Store) batchAdd(ctx context.Context, d db, changes []trust.Change, want []int) error {
	dir, err := os.MkdirTemp("", "certagent-nss-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	var batch strings.Builder
	for n, i := range want {
		c := changes[i]
		f := filepath.Join(dir, strconv.Itoa(n)+".pem")
		if err := os.WriteFile(f, c.Cert.PEM(), 0o644); err != nil {
			return err
		}
		// Our nicknames are "certagent <hex>" and the paths ours: nothing
		// to escape but the quotes around them.
		fmt.Fprintf(&batch, "-A -n \"%s\" -t C,, -i \"%s\"\n", nickname(c.FP), f)
	}
	bf := filepath.Join(dir, "batch")
	if err := os.WriteFile(bf, []byte(batch.String()), 0o644); err != nil {
		return err
	}
	if _, err := s.runCertutil(ctx, s.certutilCmd(d, "-B", "-i", bf)); err != nil {
		return fmt.Errorf("nss: certutil -B (%s): %w", d.target, err)
	}
	return nil
}
