package longpoll

import (
	"context"
	"sync"
	"time"
)

// Parked is a wait that owns no goroutine while it waits (Hub.Park): a
// held request whose connection its caller has taken out of the HTTP
// server costs this struct, a timer and the caller's callback.
type Parked struct {
	h         *Hub
	ctx       context.Context
	accountID string
	check     CheckFunc
	done      func(changed bool, err error)
	timer     *time.Timer

	// gen is the generation joined, idx the index in its parked
	// slice; gen is nil while out of every generation. Guarded by h.mu.
	gen *account
	idx int

	mu sync.Mutex
	// state says who owns the wait; again that a wake-up came while
	// checking, ended that the timer or Stop did. Guarded by mu.
	state parkState
	again bool
	ended bool
}

type parkState uint8

const (
	// parkChecking: a goroutine runs check (Park's caller, a wake-up's).
	parkChecking parkState = iota
	// parkWaiting: nothing runs; a wake-up, the timer or Stop moves on.
	parkWaiting
	// parkDone: done was called, or Park returned the outcome itself.
	parkDone
)

// Park is Wait without a goroutine. It runs check once on the caller's
// goroutine: when that ends the wait (the copy is stale, or check fails,
// or wait is already over), Park returns a nil *Parked with the outcome,
// as Wait would, and never calls done. Otherwise the wait goes on with no
// goroutine of its own, check runs again at every wake-up (on a goroutine
// the wake-up starts, with ctx), and done is called exactly once with
// Wait's outcome: from a wake-up's goroutine, the timer's when wait
// elapses (changed false), or Stop's caller's. done may block (it
// writes to the network); it holds nothing of the hub's.
func (h *Hub) Park(ctx context.Context, accountID string, wait time.Duration, check CheckFunc, done func(changed bool, err error)) (p *Parked, changed bool, err error) {
	p = &Parked{h: h, ctx: ctx, accountID: accountID, check: check, done: done}
	p.timer = time.AfterFunc(wait, p.end)
	finished, changed, err := p.run()
	if finished {
		p.timer.Stop()
		return nil, changed, err
	}
	return p, false, nil
}

// Stop ends the wait now, as its timer would: done is called with
// changed false, on the caller's goroutine unless a check is running
// (then on the checker's, when it returns). Stopping a finished wait does
// nothing.
func (p *Parked) Stop() { p.end() }

// end is the timer's and Stop's.
func (p *Parked) end() {
	p.mu.Lock()
	switch p.state {
	case parkChecking:
		p.ended = true
		p.mu.Unlock()
		return
	case parkDone:
		p.mu.Unlock()
		return
	}
	p.state = parkDone
	p.mu.Unlock()
	p.leave()
	p.timer.Stop()
	p.done(false, nil)
}

// woken runs on a goroutine of its own when the generation p waited in
// ends.
func (p *Parked) woken() {
	p.mu.Lock()
	switch p.state {
	case parkChecking:
		p.again = true
		p.mu.Unlock()
		return
	case parkDone:
		p.mu.Unlock()
		return
	}
	p.state = parkChecking
	p.mu.Unlock()
	if finished, changed, err := p.run(); finished {
		p.timer.Stop()
		p.done(changed, err)
	}
}

// run checks, in state parkChecking, until the wait ends (finished: the
// state is parkDone and the caller reports changed and err) or the copy
// is current in a generation that has not woken yet (the state is
// parkWaiting).
func (p *Parked) run() (finished, changed bool, err error) {
	for {
		p.join()
		rev, current, err := p.check(p.ctx)
		if err != nil || !current {
			p.leave()
			p.mu.Lock()
			p.state = parkDone
			p.mu.Unlock()
			return true, !current && err == nil, err
		}
		p.seen(rev)
		p.mu.Lock()
		if p.ended {
			p.state = parkDone
			p.mu.Unlock()
			p.leave()
			return true, false, nil
		}
		if p.again {
			// The generation joined above has woken (it let go of p):
			// join the next one and check again.
			p.again = false
			p.mu.Unlock()
			continue
		}
		p.state = parkWaiting
		p.mu.Unlock()
		return false, false, nil
	}
}

// join adds p to the account's current generation.
func (p *Parked) join() {
	h := p.h
	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.accounts[p.accountID]
	if a == nil {
		a = &account{ch: make(chan struct{})}
		h.accounts[p.accountID] = a
	}
	a.waiters++
	p.gen, p.idx = a, len(a.parked)
	a.parked = append(a.parked, p)
}

// leave takes p out of the generation it joined, if that has not woken.
func (p *Parked) leave() {
	h := p.h
	h.mu.Lock()
	defer h.mu.Unlock()
	a := p.gen
	if a == nil {
		return
	}
	last := len(a.parked) - 1
	moved := a.parked[last]
	a.parked[p.idx], moved.idx = moved, p.idx
	a.parked[last] = nil
	a.parked = a.parked[:last]
	p.gen = nil
	if h.accounts[p.accountID] == a {
		a.waiters--
		if a.waiters == 0 {
			delete(h.accounts, p.accountID)
		}
	}
}

// seen is Hub.seen for the generation p joined.
func (p *Parked) seen(rev int64) {
	h := p.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if a := p.gen; a != nil && h.accounts[p.accountID] == a && !a.haveRev {
		a.rev, a.haveRev = rev, true
	}
}
