package linuxca

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/certagent/certagent/internal/atomicfile"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
)

// Apply implements trust.Store: it writes and removes files, then runs the
// refresh tool once if anything changed (or the bundle disagrees with the
// anchors after an interrupted pass), then checks every change against the
// rebuilt bundle.
func (s *Store) Apply(ctx context.Context, changes []trust.Change) []trust.Result {
	if len(changes) == 0 {
		return nil
	}
	b := trust.NewBatch(changes)
	fail := func(err error) []trust.Result {
		b.FailRemaining(err)
		return b.Results
	}
	tool, err := s.resolve()
	if err != nil {
		return fail(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	for i, c := range changes {
		if err := validate(c); err != nil {
			b.Results[i] = trust.Failed(c, err)
		}
	}
	anchors, err := s.scanAnchors()
	if err != nil {
		return fail(err)
	}
	bundleBefore, err := s.readBundle()
	if err != nil {
		return fail(err)
	}
	dirNewer := s.anchorDirNewerThanBundle()

	var changed, removed bool
	// javaAliases are the Debian Java aliases of anchors we removed.
	var javaAliases []string
	for i, c := range changes {
		if b.Decided(i) || c.Op != trust.OpInstall {
			continue
		}
		if err := os.MkdirAll(s.fam.AnchorDir, 0o755); err != nil {
			b.Results[i] = trust.Failed(c, fmt.Errorf("linuxca: install %s: %w", c.FP.Short(), err))
			continue
		}
		wrote, err := atomicfile.WriteIfChanged(filepath.Join(s.fam.AnchorDir, s.ourName(c.FP)), c.Cert.PEM(), 0o644)
		if err != nil {
			b.Results[i] = trust.Failed(c, fmt.Errorf("linuxca: install %s: %w", c.FP.Short(), err))
			continue
		}
		changed = changed || wrote
	}
	for i, c := range changes {
		if b.Decided(i) || c.Op != trust.OpRemove {
			continue
		}
		// When we have our own file for the root, only that goes: someone
		// else's copy of the same root is theirs. Without ours, a Foreign
		// change names a retired root: each file holding exactly that
		// certificate goes; a file with others in it stays. Any other
		// change leaves their files alone (ours vanished after the plan).
		var targets []anchorFile
		ours := false
		for _, a := range anchors {
			if a.ours && a.certs[0].FP == c.FP {
				targets, ours = []anchorFile{a}, true
				break
			}
			if len(a.certs) == 1 && a.certs[0].FP == c.FP {
				targets = append(targets, a)
			}
		}
		if !ours && !c.Foreign {
			if len(holders(anchors, c.FP)) > 0 {
				b.Results[i] = trust.LeftAlone(c)
			}
			continue
		}
		for _, a := range targets {
			if err := atomicfile.Remove(a.path); err != nil {
				b.Results[i] = trust.Failed(c, fmt.Errorf("linuxca: remove %s: %w", a.path, err))
				break
			}
			s.log.Info("removed anchor", "fingerprint", c.FP.Short(), "file", a.path, "ours", a.ours)
			changed, removed = true, true
			javaAliases = append(javaAliases, "debian:"+strings.TrimSuffix(filepath.Base(a.path), ".crt")+".pem")
		}
	}

	// An interrupted pass may have left files and bundle out of step.
	after, err := s.scanAnchors()
	if err != nil {
		return fail(err)
	}
	inAnchors := make(map[trust.Fingerprint]bool)
	for _, a := range after {
		for _, c := range a.certs {
			inAnchors[c.FP] = true
		}
	}
	stale := false
	for i, c := range changes {
		if b.Decided(i) {
			continue
		}
		switch c.Op {
		case trust.OpInstall:
			stale = stale || !bundleBefore.holds(c.FP)
		case trust.OpRemove:
			if bundleBefore.holds(c.FP) && !inAnchors[c.FP] && dirNewer {
				stale, removed = true, true
			}
		}
	}
	if changed || stale {
		args := s.fam.Args
		if removed && s.fam.RemoveArgs != nil {
			if !s.fam.LinksBesideBundle {
				args = s.fam.RemoveArgs
			} else if err := s.unlinkDangling(); err != nil {
				s.log.Warn("cannot remove the links of removed anchors; rebuilding all", "error", err)
				args = s.fam.RemoveArgs
			}
		}
		s.refreshes.Add(1)
		s.log.Info("refreshing system trust", "tool", tool, "args", strings.Join(args, " "))
		if _, err := s.run.Run(ctx, platform.Cmd{Path: tool, Args: args}); err != nil {
			return fail(fmt.Errorf("linuxca: refresh: %w", err))
		}
	}
	bundle, err := s.readBundle()
	if err != nil {
		return fail(err)
	}
	var javaNote string
	if removed && len(javaAliases) > 0 {
		javaNote = s.javaCleanup(ctx, javaAliases)
	}
	for i, c := range changes {
		if b.Decided(i) {
			continue
		}
		switch c.Op {
		case trust.OpInstall:
			if !bundle.holds(c.FP) {
				b.Results[i] = trust.Failed(c, fmt.Errorf("linuxca: %s written to %s, but %s does not hold it after the refresh", c.FP.Short(), s.fam.AnchorDir, s.fam.Bundle))
				continue
			}
			b.Results[i] = trust.OK(c)
		case trust.OpRemove:
			switch {
			case !bundle.holds(c.FP):
				b.Results[i] = trust.OK(c)
				b.Results[i].Reason = javaNote
			case inAnchors[c.FP]:
				b.Results[i] = trust.Skipped(c, "still trusted through "+strings.Join(holders(after, c.FP), ", ")+", which we did not write; not removed")
			default:
				b.Results[i] = trust.Skipped(c, fmt.Sprintf("trusted through the distribution's roots in %s, not an anchor file in %s; not ours to remove", s.fam.Bundle, s.fam.AnchorDir))
			}
		}
	}
	return b.Results
}

func validate(c trust.Change) error { return trust.ValidateSingle(c, ErrUnknownTarget) }

// holders returns the files that hold fp.
func holders(as []anchorFile, fp trust.Fingerprint) []string {
	var out []string
	for _, a := range as {
		for _, c := range a.certs {
			if c.FP == fp {
				out = append(out, a.path)
				break
			}
		}
	}
	return out
}

// anchorDirNewerThanBundle reports whether the anchor directory changed
// after the bundle was last written: a removal whose refresh never ran.
func (s *Store) anchorDirNewerThanBundle() bool {
	d, err := os.Stat(s.fam.AnchorDir)
	if err != nil {
		return false
	}
	b, err := os.Stat(s.fam.Bundle)
	if err != nil {
		return true
	}
	return d.ModTime().After(b.ModTime())
}

// javaCleanup closes Debian's Java gap: the jks-keystore hook imports every
// new anchor into the system Java keystore but never drops a removed one. It
// returns a note for the results when the cleanup failed; the system store
// itself is fine either way.
func (s *Store) javaCleanup(ctx context.Context, aliases []string) string {
	if s.fam.Name != "debian" {
		return ""
	}
	for _, p := range []string{s.java.hook, s.java.keystore, s.java.keytool} {
		if _, err := os.Stat(p); err != nil {
			return ""
		}
	}
	var failed []string
	for _, alias := range aliases {
		out, err := s.run.Run(ctx, platform.Cmd{
			Path: s.java.keytool,
			Args: []string{"-delete", "-noprompt", "-alias", alias, "-keystore", s.java.keystore, "-storepass:env", "CERTAGENT_STOREPASS"},
			Env:  []string{"PATH=" + platform.DefaultPath, "LANG=C", "CERTAGENT_STOREPASS=" + s.java.pass},
		})
		if err != nil && !bytes.Contains(out, []byte("does not exist")) {
			s.log.Warn("java keystore cleanup failed", "alias", alias, "error", err)
			failed = append(failed, alias)
		}
	}
	if len(failed) > 0 {
		return fmt.Sprintf("removed; deleting %s from %s failed (see the log)", strings.Join(failed, ", "), s.java.keystore)
	}
	return ""
}

// unlinkDangling deletes, in the bundle's directory, the links that point
// into AnchorDir at a file that no longer exists (the ones a plain refresh
// leaves behind after a removal), then the hash links (<hash>.N) that name
// one of them, and closes the gaps that leaves in a run of hash links (see
// closeHashGaps). Only symbolic links are touched: an administrator's link
// to an anchor that still exists stays.
func (s *Store) unlinkDangling() error {
	dir := filepath.Dir(s.fam.Bundle)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("linuxca: read %s: %w", dir, err)
	}
	anchorDir := filepath.Clean(s.fam.AnchorDir) + string(filepath.Separator)
	gone := make(map[string]bool)
	for _, e := range ents {
		if e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		p := filepath.Join(dir, e.Name())
		t, err := os.Readlink(p)
		if err != nil || !filepath.IsAbs(t) || !strings.HasPrefix(filepath.Clean(t), anchorDir) {
			continue
		}
		if _, err := os.Lstat(t); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("linuxca: remove %s: %w", p, err)
		}
		gone[e.Name()] = true
	}
	if len(gone) == 0 {
		return nil
	}
	holes := make(map[string]bool) // hash link prefixes ("5e82b473.") we took a link from
	for _, e := range ents {
		if e.Type()&fs.ModeSymlink == 0 || gone[e.Name()] {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if t, err := os.Readlink(p); err == nil && !filepath.IsAbs(t) && gone[t] {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("linuxca: remove %s: %w", p, err)
			}
			if prefix, _, ok := hashLinkName(e.Name()); ok {
				holes[prefix] = true
			}
		}
	}
	return closeHashGaps(dir, holes)
}

// closeHashGaps renumbers, for each prefix, the hash links left in dir so
// they run from <prefix>0 without a gap. OpenSSL's directory lookup tries
// <hash>.0, .1, ... and stops at the first that is missing, so a root that
// shares its subject (hence its hash) with one we removed would otherwise
// vanish from CApath lookups until the next rehash, and a refresh that adds
// nothing does not rehash. Renaming a link is atomic.
func closeHashGaps(dir string, holes map[string]bool) error {
	if len(holes) == 0 {
		return nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("linuxca: read %s: %w", dir, err)
	}
	type link struct {
		n    int
		name string
	}
	runs := make(map[string][]link)
	for _, e := range ents {
		if e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		if prefix, n, ok := hashLinkName(e.Name()); ok && holes[prefix] {
			runs[prefix] = append(runs[prefix], link{n, e.Name()})
		}
	}
	for prefix, ls := range runs {
		slices.SortFunc(ls, func(a, b link) int { return a.n - b.n })
		// Ascending, each link moves down to the lowest free number: the
		// slot it takes was never filled or was emptied by an earlier move.
		for i, l := range ls {
			if l.n == i {
				continue
			}
			to := filepath.Join(dir, prefix+strconv.Itoa(i))
			if _, err := os.Lstat(to); !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("linuxca: renumber %s: %s is taken", l.name, to)
			}
			if err := os.Rename(filepath.Join(dir, l.name), to); err != nil {
				return fmt.Errorf("linuxca: renumber %s: %w", l.name, err)
			}
		}
	}
	return nil
}

// hashLinkName splits an OpenSSL hash link name, <8 hex digits>.<N> for a
// certificate or <8 hex digits>.r<N> for a CRL, into its prefix (up to and
// including the dot or the r) and N.
func hashLinkName(name string) (prefix string, n int, ok bool) {
	if len(name) < 10 || name[8] != '.' {
		return "", 0, false
	}
	for _, c := range name[:8] {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return "", 0, false
		}
	}
	i := 9
	if name[i] == 'r' {
		i++
	}
	num := name[i:]
	if num == "" || len(num) > 6 || strings.TrimLeft(num, "0123456789") != "" || (len(num) > 1 && num[0] == '0') {
		return "", 0, false
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return "", 0, false
	}
	return name[:i], n, true
}
