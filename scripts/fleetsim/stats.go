package main

import (
	"math"
	"slices"
	"time"
)

// procSample is one reading of a process from /proc.
type procSample struct {
	At      time.Time
	CPU     time.Duration // user + system
	RSS     int64         // bytes
	PeakRSS int64         // bytes (VmHWM)
	Threads int
	FDs     int
}

// quantileF returns the q-quantile of sorted values (nearest rank).
func quantileF(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// quantileD returns the q-quantile of durations (nearest rank); d is
// sorted in place.
func quantileD(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
