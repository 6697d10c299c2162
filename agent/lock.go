package agent

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockState takes the state dir's exclusive lock (state_dir/lock), which
// serialises the passes of separate certagent processes; it blocks until
// the holder's pass ends. The lock is advisory and dies with its process,
// so a crash never leaves it held.
func lockState(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("agent: state dir: %w", err)
	}
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent: state lock: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("agent: state lock %s: %w", path, err)
	}
	return func() {
		_ = unlockFile(f)
		f.Close()
	}, nil
}
