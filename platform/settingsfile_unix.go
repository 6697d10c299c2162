//go:build !windows

package platform

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

func checkSettingsFile(fi fs.FileInfo) error {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("owned by uid %d, not root", st.Uid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("writable by group or others (mode %04o): run chmod go-w", fi.Mode().Perm())
	}
	return nil
}
