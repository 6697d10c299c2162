//go:build unix

package nss

import (
	"os"
	"syscall"
)

// openNoFollow opens path for reading, failing on a symlink (ELOOP) and
// never blocking on a FIFO the user may have put there.
func openNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}
