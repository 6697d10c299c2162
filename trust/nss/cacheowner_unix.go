//go:build unix

package nss

import (
	"os"
	"syscall"
)

// ownedByUs reports whether st belongs to the user this process runs as.
func ownedByUs(st os.FileInfo) bool {
	s, ok := st.Sys().(*syscall.Stat_t)
	return ok && int(s.Uid) == os.Geteuid()
}
