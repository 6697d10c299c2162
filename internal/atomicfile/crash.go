package atomicfile

import (
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// CrashEnv names the crash-injection seam of the kill-at-every-write tests:
// in a test binary (never in certagent itself: testing.Testing), when the
// variable holds N > 0, the process exits with CrashExitCode at the Nth
// step of the writes and removals of this package, as a kill -9 would
// (no deferred cleanup runs). The steps are: temporary file created,
// written, synced, renamed into place; file removed, directory synced.
const CrashEnv = "CERTAGENT_TEST_CRASH_AT_STEP"

// CrashExitCode is the exit status of an injected crash.
const CrashExitCode = 86

var (
	crashOnce  sync.Once
	crashAt    int64
	crashSteps atomic.Int64
)

func crashPoint() {
	crashOnce.Do(func() {
		if !testing.Testing() {
			return
		}
		if n, err := strconv.ParseInt(os.Getenv(CrashEnv), 10, 64); err == nil && n > 0 {
			crashAt = n
		}
	})
	if crashAt > 0 && crashSteps.Add(1) == crashAt {
		os.Exit(CrashExitCode)
	}
}
