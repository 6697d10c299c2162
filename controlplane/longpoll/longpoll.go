// Package longpoll lets a list request wait until an account's certificates
// change, so that agents learn of an activation within seconds instead of a
// poll interval (certplane's `?wait=` extension of the list endpoint).
//
// A Hub hands out one channel per account that is closed at the next
// change. Changes arrive from three places: the replica's own writes
// (Notify, in process), other replicas' writes (the PostgreSQL backend's
// LISTEN/NOTIFY listener calls Notify), and a cheap periodic revision check
// for accounts that have waiters, which covers notifications lost while a
// listener reconnects and several processes sharing one SQLite file.
package longpoll

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxWait bounds how long one request may be held. It stays below common
// proxy and load-balancer idle timeouts (60 s) so a held request is not cut.
const MaxWait = 55 * time.Second

// ErrBadWait is returned by ParseWait for a value that is not a duration.
var ErrBadWait = errors.New("longpoll: bad wait")

// ParseWait parses the `wait` query parameter: a Go duration ("30s", "1m")
// or a whole number of seconds ("30"). It is clamped to MaxWait; "" and
// zero mean do not wait.
func ParseWait(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	var d time.Duration
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		d = time.Duration(n) * time.Second
	} else {
		d, err = time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("%w %q: want seconds (30) or a duration (30s)", ErrBadWait, s)
		}
	}
	if d < 0 {
		return 0, fmt.Errorf("%w %q: negative", ErrBadWait, s)
	}
	return min(d, MaxWait), nil
}

// RevisionFunc returns an account's current revision: a value that changes
// whenever the account's certificate list changes.
type RevisionFunc func(ctx context.Context, accountID string) (int64, error)

// Hub wakes waiters when an account changes. The zero value is not usable;
// call New.
type Hub struct {
	revision RevisionFunc
	interval time.Duration

	mu sync.Mutex
	// accounts holds, per account with at least one waiter since the last
	// wake-up, the channel to close on change and the revision last seen
	// by the safety check. Guarded by mu.
	accounts map[string]*account
}

type account struct {
	ch      chan struct{}
	waiters int
	rev     int64
	haveRev bool
}

// New returns a hub. When revision is non-nil, Run checks the revision of
// every account with waiters each interval and wakes them if it moved.
func New(revision RevisionFunc, interval time.Duration) *Hub {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	return &Hub{revision: revision, interval: interval, accounts: map[string]*account{}}
}

// Subscribe returns a channel that is closed at the next change of
// accountID, and a release function the caller must call when it stops
// waiting. Subscribe before reading the revision you compare against, so
// that a change between the read and the wait is not lost; then tell the
// hub that revision with seen, for the safety check. Most callers want Wait.
func (h *Hub) Subscribe(accountID string) (changed <-chan struct{}, seen func(rev int64), release func()) {
	h.mu.Lock()
	a := h.accounts[accountID]
	if a == nil {
		a = &account{ch: make(chan struct{})}
		h.accounts[accountID] = a
	}
	a.waiters++
	ch := a.ch
	h.mu.Unlock()
	seen = func(rev int64) {
		h.mu.Lock()
		defer h.mu.Unlock()
		// Keep the oldest revision any waiter compared against: if the
		// account moved past it, the safety check wakes everyone and
		// waiters that are already current simply wait again.
		if cur := h.accounts[accountID]; cur != nil && cur.ch == ch && !cur.haveRev {
			cur.rev, cur.haveRev = rev, true
		}
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			// The account entry may have been replaced by a wake-up; only
			// count down the generation we joined.
			if cur := h.accounts[accountID]; cur != nil && cur.ch == ch {
				cur.waiters--
				if cur.waiters == 0 {
					delete(h.accounts, accountID)
				}
			}
		})
	}
	return ch, seen, release
}

// CheckFunc reports the account's current revision and whether the
// caller's copy (its If-None-Match) is still current.
type CheckFunc func(ctx context.Context) (rev int64, current bool, err error)

// Wait holds the caller until check reports that its copy is no longer
// current, or wait elapses, or ctx ends. It returns whether the copy
// changed; wake-ups that find the copy still current (another account's
// change on a shared notification, a safety-check false alarm) wait again.
func (h *Hub) Wait(ctx context.Context, accountID string, wait time.Duration, check CheckFunc) (changed bool, err error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		ch, seen, release := h.Subscribe(accountID)
		rev, current, err := check(ctx)
		if err != nil || !current {
			release()
			return !current && err == nil, err
		}
		seen(rev)
		select {
		case <-ch:
			release()
		case <-timer.C:
			release()
			return false, nil
		case <-ctx.Done():
			release()
			return false, ctx.Err()
		}
	}
}

// Notify wakes every current waiter of accountID. It never blocks.
func (h *Hub) Notify(accountID string) {
	h.mu.Lock()
	a := h.accounts[accountID]
	if a != nil {
		delete(h.accounts, accountID)
	}
	h.mu.Unlock()
	if a != nil {
		close(a.ch)
	}
}

// NotifyAll wakes every waiter, for when changes may have been missed (a
// notification listener reconnected).
func (h *Hub) NotifyAll() {
	h.mu.Lock()
	old := h.accounts
	h.accounts = map[string]*account{}
	h.mu.Unlock()
	for _, a := range old {
		close(a.ch)
	}
}

// Accounts returns the accounts that have waiters.
func (h *Hub) Accounts() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := make([]string, 0, len(h.accounts))
	for id := range h.accounts {
		ids = append(ids, id)
	}
	return ids
}

// Waiting returns how many requests are waiting on accountID.
func (h *Hub) Waiting(accountID string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if a := h.accounts[accountID]; a != nil {
		return a.waiters
	}
	return 0
}

// Run performs the periodic safety check until ctx ends. It returns
// immediately when the hub has no RevisionFunc.
func (h *Hub) Run(ctx context.Context) {
	if h.revision == nil {
		return
	}
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.Check(ctx)
		}
	}
}

// Check reads the revision of every account with waiters once and wakes
// them if it differs from the oldest revision a waiter compared against
// (or, failing that, from the revision the previous Check read).
func (h *Hub) Check(ctx context.Context) {
	if h.revision == nil {
		return
	}
	h.mu.Lock()
	ids := make([]string, 0, len(h.accounts))
	for id := range h.accounts {
		ids = append(ids, id)
	}
	h.mu.Unlock()
	for _, id := range ids {
		rev, err := h.revision(ctx, id)
		if err != nil {
			// Leave the waiters be; their own timeout answers them.
			continue
		}
		h.mu.Lock()
		a := h.accounts[id]
		wake := false
		if a != nil {
			if a.haveRev && a.rev != rev {
				wake = true
				delete(h.accounts, id)
			} else {
				a.rev, a.haveRev = rev, true
			}
		}
		h.mu.Unlock()
		if wake {
			close(a.ch)
		}
	}
}
