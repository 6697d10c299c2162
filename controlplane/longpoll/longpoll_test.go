package longpoll

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const acct = "0123456789abcdef0123456789abcdef"

func TestParseWait(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"", 0, false},
		{"0", 0, false},
		{"30", 30 * time.Second, false},
		{"30s", 30 * time.Second, false},
		{" 2m ", MaxWait, false},
		{"1500ms", 1500 * time.Millisecond, false},
		{"99999999999", 0, true},
		{"-5s", 0, true},
		{"soon", 0, true},
		{"30x", 0, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseWait(tc.in)
			if tc.wantErr {
				require.ErrorIs(t, err, ErrBadWait)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// fakeAccount is an account whose revision the test moves.
type fakeAccount struct{ rev atomic.Int64 }

func (f *fakeAccount) check(have int64) CheckFunc {
	return func(context.Context) (int64, bool, error) {
		r := f.rev.Load()
		return r, r == have, nil
	}
}

func (f *fakeAccount) revision(context.Context, string) (int64, error) { return f.rev.Load(), nil }

func TestWaitReturnsAtOnceWhenStale(t *testing.T) {
	h := New(nil, 0)
	var f fakeAccount
	f.rev.Store(2)
	changed, err := h.Wait(context.Background(), nil, acct, time.Hour, f.check(1))
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, 0, h.Waiting(acct))
}

func TestWaitWokenByNotify(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := New(nil, 0)
		var f fakeAccount
		f.rev.Store(1)
		done := make(chan bool)
		go func() {
			changed, err := h.Wait(context.Background(), nil, acct, 30*time.Second, f.check(1))
			assert.NoError(t, err)
			done <- changed
		}()
		synctest.Wait()
		require.Equal(t, 1, h.Waiting(acct))
		f.rev.Store(2)
		h.Notify(acct)
		assert.True(t, <-done)
		assert.Equal(t, 0, h.Waiting(acct))
	})
}

func TestWaitIgnoresSpuriousWakeups(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := New(nil, 0)
		var f fakeAccount
		f.rev.Store(1)
		start := time.Now()
		done := make(chan bool)
		go func() {
			changed, err := h.Wait(context.Background(), nil, acct, 30*time.Second, f.check(1))
			assert.NoError(t, err)
			done <- changed
		}()
		synctest.Wait()
		h.Notify(acct) // nothing changed
		h.NotifyAll()  // nor here
		synctest.Wait()
		require.Equal(t, 1, h.Waiting(acct), "waiter should wait again after a false alarm")
		assert.False(t, <-done)
		if got := time.Since(start); got != 30*time.Second {
			t.Errorf("waited %v, want the full 30s", got)
		}
	})
}

func TestWaitTimesOutAndHonoursContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := New(nil, 0)
		var f fakeAccount
		changed, err := h.Wait(context.Background(), nil, acct, 10*time.Second, f.check(0))
		require.NoError(t, err)
		assert.False(t, changed)

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		changed, err = h.Wait(ctx, nil, acct, time.Minute, f.check(0))
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.False(t, changed)
		assert.Equal(t, 0, h.Waiting(acct))
	})
}

func TestWaitPassesCheckErrors(t *testing.T) {
	h := New(nil, 0)
	boom := errors.New("db down")
	changed, err := h.Wait(context.Background(), nil, acct, time.Minute, func(context.Context) (int64, bool, error) {
		return 0, false, boom
	})
	require.ErrorIs(t, err, boom)
	assert.False(t, changed)
	assert.Equal(t, 0, h.Waiting(acct))
}

// A change made by another process that sent no notification is found by
// the periodic revision check.
func TestSafetyCheckWakesOnMissedNotification(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var f fakeAccount
		f.rev.Store(7)
		h := New(f.revision, 5*time.Second)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go h.Run(ctx)

		start := time.Now()
		done := make(chan bool)
		go func() {
			changed, err := h.Wait(context.Background(), nil, acct, 50*time.Second, f.check(7))
			assert.NoError(t, err)
			done <- changed
		}()
		synctest.Wait()
		f.rev.Store(8) // no Notify
		assert.True(t, <-done)
		if got := time.Since(start); got > 5*time.Second {
			t.Errorf("woken after %v, want within one check interval (5s)", got)
		}
	})
}

func TestOtherAccountsAreNotWoken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := New(nil, 0)
		var f fakeAccount
		done := make(chan bool)
		go func() {
			changed, _ := h.Wait(context.Background(), nil, acct, 20*time.Second, f.check(0))
			done <- changed
		}()
		synctest.Wait()
		h.Notify("ffffffffffffffffffffffffffffffff")
		synctest.Wait()
		assert.Equal(t, 1, h.Waiting(acct))
		assert.False(t, <-done)
	})
}

func TestManyWaitersOneNotify(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := New(nil, 0)
		var f fakeAccount
		const n = 1000
		var woken atomic.Int64
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				if changed, _ := h.Wait(context.Background(), nil, acct, time.Minute, f.check(0)); changed {
					woken.Add(1)
				}
			})
		}
		synctest.Wait()
		require.Equal(t, n, h.Waiting(acct))
		f.rev.Store(1)
		h.Notify(acct)
		wg.Wait()
		assert.Equal(t, int64(n), woken.Load())
		assert.Equal(t, 0, h.Waiting(acct))
	})
}

func BenchmarkSubscribeRelease(b *testing.B) {
	h := New(nil, 0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, seen, release := h.Subscribe(acct)
			seen(1)
			release()
		}
	})
}
