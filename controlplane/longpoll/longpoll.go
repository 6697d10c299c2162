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
	ch chan struct{}
	// parked are the Park waiters of this generation, woken by calling
	// them rather than by ch; each knows its index here (Parked.idx).
	parked  []*Parked
	waiters int
	rev     int64
	haveRev bool
}

// wake ends generation a, which the caller has already taken out of
// Hub.accounts under Hub.mu (and detached its parked waiters from, with
// detachLocked): channel waiters return, parked ones check again.
func (a *account) wake(parked []*Parked) {
	close(a.ch)
	for _, p := range parked {
		go p.woken()
	}
}

// detachLocked takes generation a's parked waiters out of it; call with
// Hub.mu held, after removing a from Hub.accounts.
func (a *account) detachLocked() []*Parked {
	ps := a.parked
	a.parked = nil
	for _, p := range ps {
		p.gen = nil
	}
	return ps
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
	a := h.subscribe(accountID)
	var once sync.Once
	return a.ch, func(rev int64) { h.seen(accountID, a, rev) }, func() { once.Do(func() { h.release(accountID, a) }) }
}

// subscribe joins the account's current generation of waiters.
func (h *Hub) subscribe(accountID string) *account {
	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.accounts[accountID]
	if a == nil {
		a = &account{ch: make(chan struct{})}
		h.accounts[accountID] = a
	}
	a.waiters++
	return a
}

// seen records the revision a waiter of generation a compared against.
func (h *Hub) seen(accountID string, a *account, rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	// Keep the oldest revision any waiter compared against: if the
	// account moved past it, the safety check wakes everyone and waiters
	// that are already current simply wait again.
	if h.accounts[accountID] == a && !a.haveRev {
		a.rev, a.haveRev = rev, true
	}
}

// release leaves generation a; call it once per subscribe.
func (h *Hub) release(accountID string, a *account) {
	h.mu.Lock()
	defer h.mu.Unlock()
	// The account entry may have been replaced by a wake-up; only count
	// down the generation we joined.
	if h.accounts[accountID] == a {
		a.waiters--
		if a.waiters == 0 {
			delete(h.accounts, accountID)
		}
	}
}

// CheckFunc reports the account's current revision and whether the
// caller's copy (its If-None-Match) is still current.
type CheckFunc func(ctx context.Context) (rev int64, current bool, err error)

// Wait holds the caller until check reports that its copy is no longer
// current, or wait elapses, or ctx ends, or stop is closed (nil: never).
// It returns whether the copy changed; wake-ups that find the copy still
// current (another account's change on a shared notification, a
// safety-check false alarm) wait again. A held request costs its
// goroutine, one timer and a few words here: no goroutine or context of
// its own.
func (h *Hub) Wait(ctx context.Context, stop <-chan struct{}, accountID string, wait time.Duration, check CheckFunc) (changed bool, err error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		a := h.subscribe(accountID)
		rev, current, err := check(ctx)
		if err != nil || !current {
			h.release(accountID, a)
			return !current && err == nil, err
		}
		h.seen(accountID, a, rev)
		select {
		case <-a.ch:
			h.release(accountID, a)
		case <-timer.C:
			h.release(accountID, a)
			return false, nil
		case <-stop:
			h.release(accountID, a)
			return false, nil
		case <-ctx.Done():
			h.release(accountID, a)
			return false, ctx.Err()
		}
	}
}

// Notify wakes every current waiter of accountID. It never blocks.
func (h *Hub) Notify(accountID string) {
	h.mu.Lock()
	a := h.accounts[accountID]
	var ps []*Parked
	if a != nil {
		delete(h.accounts, accountID)
		ps = a.detachLocked()
	}
	h.mu.Unlock()
	if a != nil {
		a.wake(ps)
	}
}

// NotifyAll wakes every waiter, for when changes may have been missed (a
// notification listener reconnected).
func (h *Hub) NotifyAll() {
	h.mu.Lock()
	old := h.accounts
	h.accounts = map[string]*account{}
	parked := make(map[*account][]*Parked, len(old))
	for _, a := range old {
		parked[a] = a.detachLocked()
	}
	h.mu.Unlock()
	for _, a := range old {
		a.wake(parked[a])
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
		var ps []*Parked
		if a != nil {
			if a.haveRev && a.rev != rev {
				wake = true
				delete(h.accounts, id)
				ps = a.detachLocked()
			} else {
				a.rev, a.haveRev = rev, true
			}
		}
		h.mu.Unlock()
		if wake {
			a.wake(ps)
		}
	}
}
