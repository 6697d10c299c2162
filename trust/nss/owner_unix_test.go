//go:build unix

package nss

import (
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func ownerOf(t *testing.T, p string) int {
	t.Helper()
	st, err := os.Stat(p)
	require.NoError(t, err)
	return int(st.Sys().(*syscall.Stat_t).Uid)
}
