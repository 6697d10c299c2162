// Package atomicfile writes files so that readers see either the old content
// or the new, never a mix, and a crash leaves one of the two on disk: write a
// temporary file in the same directory, fsync it, rename it over the target,
// fsync the directory.
package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Write replaces path with data, created with perm. The temporary file lives
// next to path so the rename never crosses a filesystem.
func Write(path string, data []byte, perm fs.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("atomicfile: chmod %s: %w", tmp, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("atomicfile: fsync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("atomicfile: close %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("atomicfile: rename %s: %w", path, err)
	}
	return syncDir(dir)
}

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
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("atomicfile: %w", err)
	}
	return syncDir(filepath.Dir(path))
}
