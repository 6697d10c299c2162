package agent

import (
	"runtime/debug"
	"runtime/metrics"

	"github.com/hashicorp/go-hclog"
)

// releaseThreshold is how much a pass must allocate before its end returns
// the freed memory to the OS. A quiet pass allocates a few KiB and a full
// read of unchanged stores a few hundred; an install or a store parsed
// afresh (the distro bundle: ~150 certificates) allocates MiBs, which the
// Go runtime would otherwise keep resident for minutes.
const releaseThreshold = 1 << 20

// heapAllocated returns the bytes allocated on the heap so far (cumulative).
func heapAllocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// releaseAfterHeavy returns freed memory to the OS (one GC) when more than
// releaseThreshold was allocated since before.
func releaseAfterHeavy(log hclog.Logger, before uint64) {
	n := heapAllocated() - before
	if before == 0 || n < releaseThreshold {
		return
	}
	debug.FreeOSMemory()
	log.Debug("returned memory to the OS after a heavy pass", "allocated", n)
}
