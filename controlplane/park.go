package controlplane

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// A held long-poll is parked without a goroutine when it can be: once the
// list endpoint has authorized the request and found the client's copy
// current, it takes the connection out of net/http (Hijack), so that the
// request's two goroutines (the handler's, and net/http's background
// reader) end and their stacks and buffers go; the hub keeps a
// longpoll.Parked and a parkedList, and whoever ends the wait (a wake-up,
// the hold's timer, shutdown) writes the answer, the same bytes net/http
// would have written, and hands the connection back to the server through
// Listener for its next request. docs/performance.md §4 measures what that
// saves.
//
// What parks: HTTP/1.1 GETs without a body, on a connection Listener
// accepted (`certplane serve`). Everything else
// (HTTP/1.0, a recorder in tests, a server without Listener) holds its
// goroutine as before (longpoll.Hub.Wait), with the same answers.
//
// While parked, nobody reads the connection: a client that goes away is
// noticed when its answer is written (at the latest when the hold ends),
// and a pipelined next request waits in the socket and is served after
// the answer, as HTTP/1.1 wants.

// parkedWriteTimeout bounds writing a parked request's answer (a client
// that does not read is dropped).
const parkedWriteTimeout = 10 * time.Second

// listWait is a held list request's check and what it found.
type listWait struct {
	s       *Service
	account string
	tags    []clientTag
	// authorization is the request's Authorization header: a list that
	// changed during the wait goes only to a token still valid then.
	authorization string
	// cur is the view the last check read; held the client's tag that
	// matched it. Written by check, which the hub runs one at a time,
	// read after the wait.
	cur  *listView
	held clientTag
}

// check is the hub's CheckFunc: current while one of the client's tags
// names what an agent acts on now.
func (lw *listWait) check(ctx context.Context) (int64, bool, error) {
	v, err := lw.s.view(ctx, lw.account)
	if err != nil {
		return 0, false, err
	}
	lw.cur = v
	for _, t := range lw.tags {
		if t.any || t.rev == v.rev || (t.hasVis && t.vis == v.vis) {
			lw.held = t
			return int64(v.vis), true, nil
		}
	}
	return int64(v.vis), false, nil
}

// result is the answer after the wait: the list when it changed, else a
// 304 with the client's tag (the current tag for "*"); cur is nil when
// the wait ended before the first check.
func (lw *listWait) result(changed bool) (res any, ok bool) {
	if changed {
		return listBody{lw.cur}, true
	}
	if lw.held.tag == "" || lw.held.any {
		if lw.cur == nil {
			return nil, false
		}
		return notModified{lw.cur.etag}, true
	}
	return notModified{lw.held.tag}, true
}

// reauthorize checks, before a held request is answered with a changed
// list, that its token was not revoked during the wait; the answer is
// then the one the next request would get.
func (lw *listWait) reauthorize(ctx context.Context) (*apiError, string) {
	_, e, challenge := lw.s.bearer(ctx, lw.authorization)
	return e, challenge
}

// parkedAnswer is what a handler returns when it parked the request: its
// answer is written later, by the parked request itself.
type parkedAnswer struct{}

// parkedList is a parked list request.
type parkedList struct {
	lw       *listWait
	stopping context.Context
	conn     *envelopeConn
	// buffered is what net/http had read past the request.
	buffered []byte
	// closing says to answer with Connection: close and close (the
	// request asked for it, or parkSet.stop).
	closing atomic.Bool
	hold    interface{ Stop() }
	// path is the request's, for errors and the request log; log and
	// start are set when the request log is on.
	path  string
	log   hclog.Logger
	start time.Time

	// mu is held by the handler until the connection is taken, so an
	// early wake-up waits for it; abandoned says the handler kept the
	// request after all (done does nothing). Guarded by mu.
	mu        sync.Mutex
	abandoned bool
}

// parkSet is a Service's parked requests, for shutdown.
type parkSet struct {
	mu sync.Mutex
	// m holds the parked requests; stopped says no more may park (Run
	// ended). Guarded by mu.
	m       map[*parkedList]struct{}
	stopped bool
	// answering counts parked requests not yet answered and closed or
	// handed back.
	answering sync.WaitGroup
}

// add registers pl, unless its server is stopping.
func (ps *parkSet) add(pl *parkedList) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.stopped || pl.stopping.Err() != nil {
		return false
	}
	if ps.m == nil {
		ps.m = map[*parkedList]struct{}{}
	}
	ps.m[pl] = struct{}{}
	ps.answering.Add(1)
	return true
}

// remove takes pl out; it reports whether pl was there.
func (ps *parkSet) remove(pl *parkedList) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if _, ok := ps.m[pl]; !ok {
		return false
	}
	delete(ps.m, pl)
	return true
}

// stop ends the wait of every request parked by a handler whose stopping
// is stopping (nil: every request, and none parks from now on): each is
// answered as at the end of its wait, with Connection: close.
func (ps *parkSet) stop(stopping context.Context) {
	ps.mu.Lock()
	if stopping == nil {
		ps.stopped = true
	}
	var stop []*parkedList
	for pl := range ps.m {
		if stopping == nil || pl.stopping == stopping {
			pl.closing.Store(true)
			stop = append(stop, pl)
		}
	}
	ps.mu.Unlock()
	for _, pl := range stop {
		go pl.hold.Stop()
	}
}

// park tries to park a held list request; ok false means it could not
// (the caller holds it on its goroutine). Otherwise res and err are the
// answer when the first check already ended the wait, and res is
// parkedAnswer when the request was parked.
func (c *call) park(lw *listWait, wait time.Duration) (res any, err error, ok bool) {
	r := c.r
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 || r.Body != http.NoBody {
		return nil, nil, false
	}
	conn, _ := r.Context().Value(connKey{}).(*envelopeConn)
	if conn == nil || conn.l == nil {
		return nil, nil, false
	}
	pl := &parkedList{lw: lw, stopping: c.stopping, conn: conn, path: r.URL.Path}
	// Connection: close is answered with it, as net/http does, and closed.
	pl.closing.Store(r.Close)
	pl.mu.Lock()
	defer pl.mu.Unlock()
	hold, changed, err := c.s.hub.Park(c.stopping, c.account, wait, lw.check, pl.done)
	if hold == nil {
		if err != nil && c.stopping.Err() == nil {
			return nil, err, true
		}
		if res, ok := lw.result(changed); ok {
			return res, nil, true
		}
		res, err := listAnswer(c)
		return res, err, true
	}
	pl.hold = hold
	if !c.s.parked.add(pl) {
		pl.abandoned = true
		go hold.Stop()
		return nil, nil, false
	}
	_, brw, err := http.NewResponseController(c.w).Hijack()
	if err != nil {
		c.s.parked.remove(pl)
		c.s.parked.answering.Done()
		pl.abandoned = true
		go hold.Stop()
		return nil, nil, false
	}
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		pl.buffered = slices.Clone(b)
	}
	if info, ok := r.Context().Value(ctxKey{}).(*reqInfo); ok {
		info.parked = true
		pl.log, pl.start = info.log, info.start
	}
	return parkedAnswer{}, nil, true
}

// done is the parked request's longpoll.Parked callback: it writes the
// answer and hands the connection back (or closes it).
func (pl *parkedList) done(changed bool, err error) {
	pl.mu.Lock()
	abandoned := pl.abandoned
	pl.mu.Unlock()
	if abandoned {
		return
	}
	ps := &pl.lw.s.parked
	defer ps.answering.Done()
	ps.remove(pl)
	var a answer
	if err != nil && pl.stopping.Err() == nil {
		e := toAPIError(err, pl.path)
		if e.cause != nil {
			pl.lw.s.log.Error("request failed", "method", http.MethodGet, "path", pl.path, "error", e.cause)
		}
		writeJSON(&a, e.status, apiEnvelope(e))
	} else {
		// Park's first check ran, so there is a result.
		res, _ := pl.lw.result(changed)
		switch v := res.(type) {
		case listBody:
			if e, challenge := pl.reauthorize(); e != nil {
				if challenge != "" {
					a.Header().Set("WWW-Authenticate", challenge)
				}
				writeJSON(&a, e.status, apiEnvelope(e))
				break
			}
			writeList(&a, v)
		case notModified:
			writeNotModified(&a, v)
		default:
			writeJSON(&a, http.StatusInternalServerError, apiEnvelope(newError(http.StatusInternalServerError, CodeInternal, "internal error")))
		}
	}
	closing := pl.closing.Load() || pl.stopping.Err() != nil
	werr := a.writeTo(pl.conn.Conn, closing)
	switch {
	case werr != nil || closing:
		pl.conn.Close()
	case !pl.conn.l.handBack(pl.conn, pl.buffered):
		pl.conn.Close()
	}
	if pl.log != nil {
		args := []any{"method", http.MethodGet, "path", pl.path, "status", a.status, "duration", time.Since(pl.start).String(), "account", pl.lw.account}
		if werr != nil {
			args = append(args, "error", werr)
		}
		pl.log.Info("request", args...)
	}
}

// reauthorize is listWait.reauthorize with a deadline of its own: the
// request's context is gone.
func (pl *parkedList) reauthorize() (*apiError, string) {
	ctx, cancel := context.WithTimeout(context.Background(), parkedWriteTimeout)
	defer cancel()
	e, challenge := pl.lw.reauthorize(ctx)
	if e != nil && e.cause != nil {
		pl.lw.s.log.Error("request failed", "method", http.MethodGet, "path", pl.path, "error", e.cause)
	}
	return e, challenge
}

// answer is a response written into memory by the same code that writes
// it through net/http (respond's cases), then onto a parked request's
// connection as net/http would have written it.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a *answer) Header() http.Header {
	if a.header == nil {
		a.header = http.Header{}
	}
	return a.header
}

func (a *answer) WriteHeader(code int) {
	if a.status == 0 {
		a.status = code
	}
}

// Write keeps b without copying it when it is the whole body: every
// caller here passes either the shared list body or a fresh encoding,
// neither changed afterwards.
func (a *answer) Write(b []byte) (int, error) {
	a.WriteHeader(http.StatusOK)
	if a.body == nil {
		a.body = b[:len(b):len(b)]
	} else {
		a.body = append(a.body, b...)
	}
	return len(b), nil
}

// chunkingSize is net/http's bufferBeforeChunkingSize: a handler's body
// larger than this, written in one call, goes out chunked.
const chunkingSize = 2048

// writeTo writes the answer in HTTP/1.1 as net/http's server does for a
// handler that set these headers and wrote its body in one call: the
// status line, the handler's headers sorted, Date, then Content-Length
// (not for a 304), Connection: close when closing, and for a body over
// chunkingSize Transfer-Encoding: chunked and the body as one chunk.
func (a *answer) writeTo(c net.Conn, closing bool) error {
	head := make([]byte, 0, 256)
	head = append(head, "HTTP/1.1 "...)
	head = strconv.AppendInt(head, int64(a.status), 10)
	head = append(head, ' ')
	head = append(head, http.StatusText(a.status)...)
	head = append(head, "\r\n"...)
	hw := headBuffer{head}
	a.header.Write(&hw)
	head = hw.b
	head = append(head, "Date: "...)
	head = time.Now().UTC().AppendFormat(head, http.TimeFormat)
	head = append(head, "\r\n"...)
	body := a.status != http.StatusNotModified
	chunked := body && len(a.body) > chunkingSize
	if body && !chunked {
		head = append(head, "Content-Length: "...)
		head = strconv.AppendInt(head, int64(len(a.body)), 10)
		head = append(head, "\r\n"...)
	}
	if closing {
		head = append(head, "Connection: close\r\n"...)
	}
	if chunked {
		head = append(head, "Transfer-Encoding: chunked\r\n"...)
	}
	head = append(head, "\r\n"...)
	bufs := net.Buffers{head}
	switch {
	case chunked:
		// One chunk, the whole body, as net/http sends a write larger
		// than its buffer, then the last chunk.
		head = strconv.AppendInt(head, int64(len(a.body)), 16)
		bufs[0] = append(head, "\r\n"...)
		bufs = append(bufs, a.body, []byte("\r\n0\r\n\r\n"))
	case body && len(a.body) > 0:
		bufs = append(bufs, a.body)
	}
	if err := c.SetWriteDeadline(time.Now().Add(parkedWriteTimeout)); err != nil {
		return err
	}
	if _, err := bufs.WriteTo(c); err != nil {
		return err
	}
	return c.SetWriteDeadline(time.Time{})
}

// headBuffer collects http.Header.Write's output.
type headBuffer struct{ b []byte }

func (h *headBuffer) Write(p []byte) (int, error) {
	h.b = append(h.b, p...)
	return len(p), nil
}

func (h *headBuffer) WriteString(s string) (int, error) {
	h.b = append(h.b, s...)
	return len(s), nil
}
