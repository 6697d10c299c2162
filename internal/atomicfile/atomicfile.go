// Package atomicfile writes files so that readers see either the old content
// or the new, never a mix, and a crash leaves one of the two on disk: write a
// temporary file, fsync it, rename it over the target, fsync the directory.
//
// The temporary file never sits where a trust loader reads. Go's
// SSL_CERT_DIR loader reads every file of a directory, dot-files included;
// OpenSSL's CApath, p11-kit and update-ca-certificates read the files of
// theirs. So a temporary file lives in TempDirName, a private (0700)
// subdirectory of the target's directory: the same filesystem and mount
// (rename never crosses one, even under systemd's ReadWritePaths bind
// mounts), and no loader descends into it for certificates (Go, OpenSSL and
// p11-kit read only a directory's own files, p11-kit's tested in
// trust/linuxca's TestP11KitSkipsOurTempDir; update-ca-certificates, which
// does descend, takes only *.crt names, and ours end in .tmp-N). A process
// killed mid-write leaves its temporary file there; Sweep removes such
// leftovers, and only ours.
package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// TempDirName is the private directory, next to a target, that holds the
// temporary files of writes in progress. It is removed again when empty.
const TempDirName = ".certagent-tmp"

// tempSuffix separates a target's name from the random part of its
// temporary file's name: TempDirName/BASE.tmp-N.
const tempSuffix = ".tmp-"

// Write replaces path with data, created with perm.
func Write(path string, data []byte, perm fs.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	dir = filepath.Clean(dir)
	tmpDir := filepath.Join(dir, TempDirName)
	var f *os.File
	// Another writer in the same directory may remove the (empty) private
	// directory between our mkdir and our create: try again.
	for attempt := 0; ; attempt++ {
		if err := makeTempDir(tmpDir); err != nil {
			return err
		}
		f, err = os.CreateTemp(tmpDir, base+tempSuffix+"*")
		if err == nil || !errors.Is(err, fs.ErrNotExist) || attempt == 2 {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
		removeTempDir(tmpDir)
	}()
	// The lock tells Sweep (in this or another process) that the file is
	// a write in progress, not a leftover; it dies with the process.
	if err = lockTemp(f); err != nil {
		return fmt.Errorf("atomicfile: lock %s: %w", tmp, err)
	}
	crashPoint()
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("atomicfile: chmod %s: %w", tmp, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", tmp, err)
	}
	crashPoint()
	if err = f.Sync(); err != nil {
		return fmt.Errorf("atomicfile: fsync %s: %w", tmp, err)
	}
	crashPoint()
	if closeBeforeRename {
		if err = f.Close(); err != nil {
			return fmt.Errorf("atomicfile: close %s: %w", tmp, err)
		}
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("atomicfile: rename %s: %w", path, err)
	}
	crashPoint()
	if !closeBeforeRename {
		// Closed only now, so the lock covers the file until it is renamed.
		if err = f.Close(); err != nil {
			return fmt.Errorf("atomicfile: close %s: %w", tmp, err)
		}
	}
	return syncDir(dir)
}

// makeTempDir creates the private directory, or checks the one there: a
// directory, not a link (which would move our temporary files elsewhere).
func makeTempDir(dir string) error {
	err := os.Mkdir(dir, 0o700)
	if err == nil || !errors.Is(err, fs.ErrExist) {
		if err != nil {
			return fmt.Errorf("atomicfile: %w", err)
		}
		return nil
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("atomicfile: %s is not a directory", dir)
	}
	return nil
}

// removeTempDir removes the private directory when nothing else is in it
// (another writer's file keeps it; that writer removes it after).
func removeTempDir(dir string) { _ = os.Remove(dir) }

// WriteIfChanged writes data only when path does not already hold exactly
// data with mode perm. It reports whether it wrote.
func WriteIfChanged(path string, data []byte, perm fs.FileMode) (bool, error) {
	if st, err := os.Stat(path); err == nil && st.Mode().Perm() == perm.Perm() {
		old, err := os.ReadFile(path)
		if err == nil && bytes.Equal(old, data) {
			return false, nil
		}
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("atomicfile: %w", err)
	}
	return true, Write(path, data, perm)
}

// Remove deletes path and syncs its directory. A missing file is not an
// error.
func Remove(path string) error {
	crashPoint()
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("atomicfile: %w", err)
	}
	crashPoint()
	return syncDir(filepath.Dir(path))
}

// legacyTemp matches the temporary files earlier versions wrote next to
// their target: .BASE.tmp-DIGITS.
var legacyTemp = regexp.MustCompile(`^\.(.+)\.tmp-[0-9]+$`)

// Sweep removes the leftovers of writes into dir that a killed process
// never finished: the temporary files in dir's private directory, and the
// .BASE.tmp-N files earlier versions left in dir itself (a loader reads
// those). Only files whose target name BASE satisfies ours are touched, so
// another program's temporary files stay; a write still in progress (its
// file locked by a live process) is left alone. It returns the paths
// removed. A missing dir is not an error.
func Sweep(dir string, ours func(base string) bool) ([]string, error) {
	var removed []string
	var errs []error
	tmpDir := filepath.Join(dir, TempDirName)
	if ents, err := os.ReadDir(tmpDir); err == nil {
		for _, e := range ents {
			base, _, ok := strings.Cut(e.Name(), tempSuffix)
			if !ok || !e.Type().IsRegular() || !ours(base) {
				continue
			}
			p := filepath.Join(tmpDir, e.Name())
			if ok, err := removeUnlocked(p); err != nil {
				errs = append(errs, err)
			} else if ok {
				removed = append(removed, p)
			}
		}
		removeTempDir(tmpDir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("atomicfile: sweep %s: %w", tmpDir, err))
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("atomicfile: sweep %s: %w", dir, err))
		}
		return removed, errors.Join(errs...)
	}
	for _, e := range ents {
		m := legacyTemp.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() || !ours(m[1]) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if ok, err := removeUnlocked(p); err != nil {
			errs = append(errs, err)
		} else if ok {
			removed = append(removed, p)
		}
	}
	if len(removed) > 0 {
		if err := syncDir(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

// removeUnlocked removes p unless a live writer holds its lock. It reports
// whether it removed it.
func removeUnlocked(p string) (bool, error) {
	busy, err := writeInProgress(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("atomicfile: sweep %s: %w", p, err)
	}
	if busy {
		return false, nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("atomicfile: sweep %s: %w", p, err)
	}
	return true, nil
}
