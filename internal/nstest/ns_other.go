//go:build !linux

package nstest

import (
	"errors"
	"testing"
)

// run is Main where mount namespaces do not exist: the tests run as they
// are and every test that calls Require skips.
func run(m *testing.M, _ Config) int { return m.Run() }

// Mount is one mount point (Linux only).
type Mount struct {
	Point  string
	FSType string
	Source string
	Shared bool
}

// Mounts is Linux only.
func Mounts() ([]Mount, error) { return nil, errors.New("nstest: mount namespaces are Linux only") }

// IsPrivate is always false outside Linux.
func IsPrivate(string) bool { return false }
