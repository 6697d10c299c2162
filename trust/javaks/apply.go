package javaks

import (
	"context"
	"fmt"

	"github.com/certagent/certagent/trust"
)

// Apply implements trust.Store. Keystores are changed one after the other
// (each keytool run is a JVM start), each change checked against a fresh
// listing afterwards.
func (s *Store) Apply(ctx context.Context, changes []trust.Change) []trust.Result {
	if len(changes) == 0 {
		return nil
	}
	b := trust.NewBatch(changes)
	kss, _ := s.discover()
	byTarget := make(map[trust.Target]keystore, len(kss))
	for _, k := range kss {
		byTarget[trust.Target{Path: k.path}] = k
	}
	for _, g := range b.ByTarget(func(t trust.Target) bool { _, ok := byTarget[t]; return ok }, ErrUnknownTarget) {
		s.applyKS(ctx, byTarget[g.Target], b, g)
	}
	return b.Results
}

// applyKS performs group g's changes, all on keystore k; it decides only
// g's slots.
func (s *Store) applyKS(ctx context.Context, k keystore, b *trust.Batch, g trust.Group) {
	unlock := s.lock(k.path)
	defer unlock()
	as, err := s.listKS(ctx, k)
	if err != nil {
		g.FailRemaining(err)
		return
	}
	changed := false
	for _, i := range g.Slots {
		c := b.Changes[i]
		switch c.Op {
		case trust.OpInstall:
			if isOurs(as, c.FP) {
				continue
			}
			// keytool reads the certificate from stdin without -file.
			if _, err := s.keytoolIn(ctx, k, c.Cert.PEM(), "-importcert", "-noprompt", "-alias", aliasFor(c.FP)); err != nil {
				b.Results[i] = trust.Failed(c, fmt.Errorf("javaks: keytool -importcert (%s): %w", k.path, err))
				continue
			}
			changed = true
		case trust.OpRemove:
			// Ours alone when present; otherwise, for a Foreign change
			// (a retired root, named by fingerprint), every alias holding
			// exactly this root. Any other change leaves others' aliases
			// alone: ours vanished after the plan was made.
			names := []string{}
			if isOurs(as, c.FP) {
				names = append(names, aliasFor(c.FP))
			} else if !c.Foreign {
				for _, a := range as {
					if a.fp == c.FP {
						b.Results[i] = trust.LeftAlone(c)
						break
					}
				}
			} else {
				for _, a := range as {
					if a.fp == c.FP {
						names = append(names, a.name)
					}
				}
			}
			for _, n := range names {
				if _, err := s.keytool(ctx, k, "-delete", "-alias", n); err != nil {
					b.Results[i] = trust.Failed(c, fmt.Errorf("javaks: keytool -delete -alias %q (%s): %w", n, k.path, err))
					break
				}
				changed = true
				s.log.Info("removed root", "fingerprint", c.FP.Short(), "keystore", k.path, "alias", n)
			}
		}
	}
	if changed {
		s.mu.Lock()
		delete(s.cache, k.path)
		s.mu.Unlock()
		if as, err = s.listKS(ctx, k); err != nil {
			g.FailRemaining(err)
			return
		}
	}
	held := func(fp trust.Fingerprint) bool {
		for _, a := range as {
			if a.fp == fp {
				return true
			}
		}
		return false
	}
	g.Confirm(func(fp trust.Fingerprint) bool { return isOurs(as, fp) }, held, "javaks: "+k.path)
}
