package javaks

import (
	"os"
	"time"
)

// fileKey identifies one version of a file: a rewrite (rename over it)
// changes the inode, an in-place write (SQLite) changes size or mtime.
type fileKey struct {
	size  int64
	mtime time.Time
	ino   uint64
}

func statKey(path string) (fileKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileKey{}, err
	}
	return fileKey{size: st.Size(), mtime: st.ModTime(), ino: inode(st)}, nil
}
