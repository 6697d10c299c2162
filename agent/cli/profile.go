package cli

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/certagent/certagent/internal/atomicfile"
)

// startCPUProfile profiles the process into path (created 0600) until stop.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	// 1 kHz, not pprof's 100 Hz: a quiet pass takes a few milliseconds,
	// and a minute of them is otherwise a handful of samples. (The
	// runtime warns that the rate was set first; that is the point.)
	runtime.SetCPUProfileRate(1000)
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// memProfileEvery is how often startMemProfile rewrites its files.
const memProfileEvery = 30 * time.Second

// startMemProfile writes a heap profile of the running daemon to path, and
// the runtime's memory figures to path+".txt" (both 0600), every
// memProfileEvery until stop: the last write shows the daemon at rest,
// not torn down.
func startMemProfile(path string) (stop func(), err error) {
	// Every 4 KiB allocated, not every 512 KiB: the daemon's live heap is
	// a few MiB, which the default rate samples a handful of times.
	runtime.MemProfileRate = 4096
	write := func() error {
		// The figures first, right after a GC: writing the profile leaves
		// garbage of its own.
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		var b bytes.Buffer
		fmt.Fprintf(&b, "heap_inuse %d\nheap_alloc %d\nheap_idle %d\nheap_released %d\nstack_inuse %d\nsys %d\ngc_sys %d\nother_sys %d\nmspan_inuse %d\nnum_gc %d\ngoroutines %d\n",
			m.HeapInuse, m.HeapAlloc, m.HeapIdle, m.HeapReleased, m.StackInuse, m.Sys, m.GCSys, m.OtherSys, m.MSpanInuse, m.NumGC, runtime.NumGoroutine())
		if err := atomicfile.Write(path+".txt", b.Bytes(), 0o600); err != nil {
			return err
		}
		b.Reset()
		if err := pprof.Lookup("heap").WriteTo(&b, 0); err != nil {
			return err
		}
		return atomicfile.Write(path, b.Bytes(), 0o600)
	}
	if err := write(); err != nil {
		return nil, fmt.Errorf("memory profile: %w", err)
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(memProfileEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = write()
			}
		}
	}()
	return func() { close(done); <-finished }, nil
}
