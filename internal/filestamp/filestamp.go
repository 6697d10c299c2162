// Package filestamp identifies one version of a file cheaply, so stores can
// cache what they parsed or listed (certutil -L, keytool -list, a distro
// bundle) and a pass with nothing to change runs no tool and reads nothing
// twice.
package filestamp

import (
	"os"
	"time"
)

// Stamp identifies one version of a file: a rewrite (rename over it)
// changes the inode, an in-place write (SQLite, keytool) changes the size or
// the modification time.
type Stamp struct {
	Size    int64
	ModTime time.Time
	// Inode is 0 where the OS has none; size and time still tell versions
	// apart.
	Inode uint64
}

// Of returns path's stamp.
func Of(path string) (Stamp, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Stamp{}, err
	}
	return Stamp{Size: st.Size(), ModTime: st.ModTime(), Inode: inode(st)}, nil
}
