package longpoll

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// outcome is what a Parked's done was called with, and how often.
type outcome struct {
	calls   atomic.Int32
	changed atomic.Bool
	err     atomic.Value
	at      atomic.Int64
}

func (o *outcome) done(changed bool, err error) {
	o.calls.Add(1)
	o.changed.Store(changed)
	if err != nil {
		o.err.Store(err)
	}
	o.at.Store(time.Now().UnixNano())
}

func TestParkReturnsAtOnceWhenStale(t *testing.T) {
	h := New(nil, 0)
	var f fakeAccount
	f.rev.Store(2)
	var o outcome
	p, changed, err := h.Park(context.Background(), acct, time.Hour, f.check(1), o.done)
	require.NoError(t, err)
	assert.Nil(t, p)
	assert.True(t, changed)
	assert.Equal(t, int32(0), o.calls.Load(), "done must not be called when Park returns the outcome")
	assert.Equal(t, 0, h.Waiting(acct))
}

func TestParkPassesCheckErrors(t *testing.T) {
	h := New(nil, 0)
	boom := errors.New("db down")
	var o outcome
	p, changed, err := h.Park(context.Background(), acct, time.Minute, func(context.Context) (int64, bool, error) {
		return 0, false, boom
	}, o.done)
	require.ErrorIs(t, err, boom)
	assert.Nil(t, p)
	assert.False(t, changed)
	assert.Equal(t, 0, h.Waiting(acct))
}

func TestParkWokenByNotify(t *testing.T) {
	for _, tc := range []struct {
		name string
		wake func(h *Hub)
	}{
		{"Notify", func(h *Hub) { h.Notify(acct) }},
		{"NotifyAll", func(h *Hub) { h.NotifyAll() }},
		{"Check", func(h *Hub) { h.Check(context.Background()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var f fakeAccount
				f.rev.Store(1)
				h := New(f.revision, time.Second)
				var o outcome
				p, _, err := h.Park(context.Background(), acct, 30*time.Second, f.check(1), o.done)
				require.NoError(t, err)
				require.NotNil(t, p)
				require.Equal(t, 1, h.Waiting(acct))
				tc.wake(h) // nothing changed yet: a false alarm
				synctest.Wait()
				require.Equal(t, int32(0), o.calls.Load(), "a false alarm must not end the wait")
				require.Equal(t, 1, h.Waiting(acct), "parked again after a false alarm")

				f.rev.Store(2)
				tc.wake(h)
				synctest.Wait()
				assert.Equal(t, int32(1), o.calls.Load())
				assert.True(t, o.changed.Load())
				assert.Equal(t, 0, h.Waiting(acct))
				p.Stop() // finished: nothing happens
				time.Sleep(time.Minute)
				assert.Equal(t, int32(1), o.calls.Load(), "done called once")
			})
		})
	}
}

func TestParkTimesOutAndStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := New(nil, 0)
		var f fakeAccount
		start := time.Now()
		var timedOut, stopped outcome
		p1, _, _ := h.Park(context.Background(), acct, 30*time.Second, f.check(0), timedOut.done)
		p2, _, _ := h.Park(context.Background(), acct, 30*time.Second, f.check(0), stopped.done)
		require.NotNil(t, p1)
		require.NotNil(t, p2)
		require.Equal(t, 2, h.Waiting(acct))
		time.Sleep(10 * time.Second)
		p2.Stop()
		assert.Equal(t, int32(1), stopped.calls.Load())
		assert.False(t, stopped.changed.Load())
		assert.Equal(t, 1, h.Waiting(acct))
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Equal(t, int32(1), timedOut.calls.Load())
		assert.False(t, timedOut.changed.Load())
		if got := time.Unix(0, timedOut.at.Load()).Sub(start); got != 30*time.Second {
			t.Errorf("timed out after %v, want 30s", got)
		}
		assert.Equal(t, 0, h.Waiting(acct))
		p1.Stop()
		p2.Stop()
		assert.Equal(t, int32(1), timedOut.calls.Load(), "done called once")
		assert.Equal(t, int32(1), stopped.calls.Load(), "done called once")
	})
}

// Waiters leave in any order (timeouts) and the rest are still woken:
// the index bookkeeping of a generation's parked slice.
func TestParkLeaveInAnyOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := New(nil, 0)
		var f fakeAccount
		const n = 200
		outs := make([]outcome, n)
		ps := make([]*Parked, n)
		for i := range n {
			p, _, err := h.Park(context.Background(), acct, time.Hour, f.check(0), outs[i].done)
			require.NoError(t, err)
			ps[i] = p
		}
		// Stop every third, from both ends.
		stopped := 0
		for i := n - 1; i >= 0; i -= 3 {
			ps[i].Stop()
			stopped++
		}
		require.Equal(t, n-stopped, h.Waiting(acct))
		f.rev.Store(1)
		h.Notify(acct)
		synctest.Wait()
		for i := range n {
			require.Equal(t, int32(1), outs[i].calls.Load(), "waiter %d", i)
			wantChanged := (n-1-i)%3 != 0
			assert.Equal(t, wantChanged, outs[i].changed.Load(), "waiter %d", i)
		}
		assert.Equal(t, 0, h.Waiting(acct))
	})
}

// A change that lands while a woken waiter checks is not lost: the
// waiter checks again in the next generation.
func TestParkWakeDuringCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := New(nil, 0)
		var rev atomic.Int64
		var calls atomic.Int32
		check := func(context.Context) (int64, bool, error) {
			n := calls.Add(1)
			if n == 2 {
				// The second check (after the first wake-up) sees the
				// copy current, but a change lands before it returns.
				h.Notify(acct)
				rev.Store(1)
				return 0, true, nil
			}
			r := rev.Load()
			return r, r == 0, nil
		}
		var o outcome
		p, _, err := h.Park(context.Background(), acct, time.Hour, check, o.done)
		require.NoError(t, err)
		require.NotNil(t, p)
		h.Notify(acct)
		synctest.Wait()
		assert.Equal(t, int32(3), calls.Load())
		assert.Equal(t, int32(1), o.calls.Load())
		assert.True(t, o.changed.Load())
		assert.Equal(t, 0, h.Waiting(acct))
	})
}

// Stop (or the timer) while a wake-up's check runs ends the wait once,
// when the check returns.
func TestParkStopDuringCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := New(nil, 0)
		var p *Parked
		var calls atomic.Int32
		check := func(context.Context) (int64, bool, error) {
			if calls.Add(1) == 2 {
				p.Stop()
				assert.Equal(t, 1, h.Waiting(acct))
			}
			return 0, true, nil
		}
		var o outcome
		var err error
		p, _, err = h.Park(context.Background(), acct, time.Hour, check, o.done)
		require.NoError(t, err)
		require.NotNil(t, p)
		h.Notify(acct)
		synctest.Wait()
		assert.Equal(t, int32(1), o.calls.Load())
		assert.False(t, o.changed.Load())
		assert.Equal(t, 0, h.Waiting(acct))
	})
}

func BenchmarkParkStop(b *testing.B) {
	h := New(nil, 0)
	check := func(context.Context) (int64, bool, error) { return 0, true, nil }
	done := func(bool, error) {}
	b.ReportAllocs()
	for b.Loop() {
		p, _, _ := h.Park(context.Background(), acct, time.Hour, check, done)
		p.Stop()
	}
}
