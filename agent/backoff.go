package agent

import (
	"math"
	"time"
)

// Poll timing.
const (
	// BackoffBase is the first retry delay after a failure.
	BackoffBase = 5 * time.Second
	// BackoffCap bounds the retry delay.
	BackoffCap = 10 * time.Minute
	// AuthRetry is how long an auth failure (401/403) stops polling when
	// neither the config nor the token file changes: a wrong token does not
	// get better by asking again, and a fleet of agents hammering with it
	// looks like an attack.
	AuthRetry = time.Hour
)

// NextDelay returns how long to wait before the next poll. rnd is uniform in
// [0,1). After a success the interval gets ±10% jitter so a fleet spreads
// out; after failures the delay doubles from BackoffBase up to BackoffCap
// with "equal jitter" (half fixed, half random) so retries neither
// synchronise nor collapse to zero.
func NextDelay(interval time.Duration, failures int, rnd float64) time.Duration {
	if failures <= 0 {
		return time.Duration(float64(interval) * (0.9 + 0.2*rnd))
	}
	d := BackoffCap
	if failures < 30 {
		if b := BackoffBase * time.Duration(math.Pow(2, float64(failures-1))); b < BackoffCap {
			d = b
		}
	}
	return d/2 + time.Duration(rnd*float64(d/2))
}
