//go:build !unix

package nss

import "testing"

// ownerOf is meaningless without uids; the tests that call it need root on
// Linux and skip elsewhere.
func ownerOf(t *testing.T, _ string) int {
	t.Helper()
	t.Skip("no file owners here")
	return -1
}
