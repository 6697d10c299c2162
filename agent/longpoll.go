package agent

import (
	"context"
	"errors"
	"time"

	"github.com/certagent/certagent/api"
)

// LongPollWait is how long the agent asks the control plane to hold a list
// request (certplane's `?wait=` extension). It stays below the HTTP
// client's 30 s timeout so a held request is never cut by our own client.
const LongPollWait = 25 * time.Second

// LongPoller is a Source that can ask the server to hold a list request
// until the list differs from etag or wait passes. Servers without the
// extension answer at once; WatchChanges notices and stops.
type LongPoller interface {
	ListWait(ctx context.Context, etag string, wait time.Duration) (*api.ListResult, error)
}

// ListWait calls ListIfChanged with a long-poll wait.
func (s ClientSource) ListWait(ctx context.Context, etag string, wait time.Duration) (*api.ListResult, error) {
	return s.Client.ListIfChanged(ctx, etag, wait)
}

// ErrNoLongPoll is returned by WatchChanges when the source or the server
// does not support long-polls; the interval loop (Run) keeps polling.
var ErrNoLongPoll = errors.New("agent: control plane does not hold list requests")

// WatchChanges holds a long-poll on the certificate list next to Run, so an
// activation reaches this device within seconds instead of a poll
// interval. While its answers keep coming, Run's timer passes do not fetch
// as well (one connection and one request stream per device, not two).
// When the server answers with a changed list it runs a pass at once on
// that list (one request per change) and watches again with the new ETag. It returns ErrNoLongPoll when the server answers a held request
// immediately (it lacks the extension: plain polling goes on in Run), and
// nil when ctx ends. Run must be running too: it makes the first fetch
// whose ETag this watches.
func (a *Agent) WatchChanges(ctx context.Context, wait time.Duration) error {
	if wait <= 0 {
		wait = LongPollWait
	}
	failures := 0
	quick := 0
	for ctx.Err() == nil {
		a.mu.Lock()
		src, cfg := a.source, a.cfg
		etag := ""
		if a.last != nil && a.lastFetchOK && !a.authBlocked {
			etag = a.last.etag
		}
		a.mu.Unlock()
		lp, ok := src.(LongPoller)
		if !ok {
			return ErrNoLongPoll
		}
		if etag == "" {
			// No current answer (not fetched yet, failing, refused): the
			// interval loop owns the control plane until it has one.
			if !sleepCtx(ctx, min(cfg.PollInterval, 5*time.Second)) {
				return nil
			}
			continue
		}
		start := time.Now()
		res, err := lp.ListWait(ctx, etag, wait)
		held := time.Since(start)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, api.ErrNotModified):
			failures = 0
			a.markLongPollLive(wait)
			if held < wait/2 {
				// Answered at once although nothing changed: the server
				// ignores ?wait. Two in a row (not one early wake-up) and
				// we leave polling to Run.
				if quick++; quick >= 2 {
					a.watchLiveUntil.Store(0)
					a.log.Info("control plane does not support long-poll; plain polling", "interval", cfg.PollInterval)
					return ErrNoLongPoll
				}
			} else {
				quick = 0
			}
		case err == nil:
			failures, quick = 0, 0
			a.markLongPollLive(wait)
			if res.ETag == etag {
				continue
			}
			// Changed: one pass now, on the list the server answered
			// with (it holds a long-poll until what we act on changes:
			// the available roots or the one in use, not a pending
			// state), through the same validation as a fetch.
			if _, err := a.pass(ctx, passOptions{fetch: true, answered: res, reason: "changed"}); err != nil && ctx.Err() == nil {
				a.log.Error("pass failed", "error", err)
			}
		default:
			failures++
			d := NextDelay(cfg.PollInterval, failures, a.deps.Rand())
			a.log.Debug("long-poll failed", "error", err, "retry_in", d)
			if !sleepCtx(ctx, d) {
				return nil
			}
		}
	}
	return nil
}

// markLongPollLive records an answer to a held request: for two waits
// from now, Run's timer passes leave the control plane to the watcher.
// If the long-poll then stalls or fails, timer polling resumes by itself.
func (a *Agent) markLongPollLive(wait time.Duration) {
	a.watchLiveUntil.Store(time.Now().Add(2 * wait).UnixNano())
	// An answer to a held request is a successful poll: status shows it,
	// since timer passes no longer fetch while the long-poll is live.
	now := a.deps.Now().UTC()
	a.mu.Lock()
	a.snap.LastPoll, a.snap.LastSuccess = now, now
	a.mu.Unlock()
}

// longPollLive reports whether WatchChanges got an answer recently.
func (a *Agent) longPollLive() bool {
	return time.Now().UnixNano() < a.watchLiveUntil.Load()
}

// sleepCtx waits d or until ctx ends; it reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
