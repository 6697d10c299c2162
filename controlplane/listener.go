package controlplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/certagent/certagent/api"
)

// MaxHeaderBytes bounds a request's header block (the server's
// http.Server.MaxHeaderBytes). A larger one is answered 431 with the
// envelope, code CodeHeaderTooLarge.
const MaxHeaderBytes = 64 << 10

// Listener wraps ln for serving the API with an http.Server whose
// ConnContext is ConnContext: with tlsConfig it terminates TLS (HTTP/1.1),
// and every answer net/http writes by itself, before any handler runs (431
// for a header over MaxHeaderBytes, 400 for a malformed request, 501 for an
// unknown transfer coding, and 400 for plain HTTP sent to the TLS port), is
// the API's JSON envelope instead of net/http's plain text.
//
// net/http writes those answers straight to the connection it serves, so
// the connection is where they can be replaced; TLS is terminated here
// rather than by http.Server for the same reason (the server would write
// them into its own *tls.Conn). Handlers still see r.TLS: Handler fills it
// from the connection.
func Listener(ln net.Listener, tlsConfig *tls.Config) net.Listener {
	if tlsConfig != nil {
		cfg := tlsConfig.Clone()
		if len(cfg.NextProtos) == 0 {
			cfg.NextProtos = []string{"http/1.1"}
		}
		ln = tls.NewListener(ln, cfg)
	}
	return &envelopeListener{
		Listener: ln, idle: IdleTimeout,
		accepted: make(chan acceptResult), handedBack: make(chan *envelopeConn),
		closed: make(chan struct{}), pumpDone: make(chan struct{}),
	}
}

// IdleTimeout is how long a keep-alive connection may wait for its next
// request: `certplane serve`'s http.Server.IdleTimeout, and what a
// connection handed back after a parked long-poll gets (Listener).
const IdleTimeout = 2 * time.Minute

// envelopeListener is Listener's. Besides new connections, Accept yields
// connections handed back after a parked long-poll (handBack): the list
// endpoint takes a held request's connection out of net/http so that
// neither of its goroutines waits with it, answers it when it wakes, and
// hands it back here for its next request.
type envelopeListener struct {
	net.Listener
	// idle bounds a handed-back connection's wait for its next request.
	idle time.Duration

	pumpOnce   sync.Once
	accepted   chan acceptResult
	handedBack chan *envelopeConn
	closeOnce  sync.Once
	closed     chan struct{}
	// pumpDone closes when pump stops for good; pumpErr is why (written
	// before).
	pumpDone chan struct{}
	pumpErr  error
}

type acceptResult struct {
	c   net.Conn
	err error
}

func (l *envelopeListener) Accept() (net.Conn, error) {
	l.pumpOnce.Do(func() { go l.pump() })
	select {
	case a := <-l.accepted:
		if a.err != nil {
			return nil, a.err
		}
		return &envelopeConn{Conn: a.c, l: l}, nil
	case c := <-l.handedBack:
		return c, nil
	case <-l.pumpDone:
		return nil, l.pumpErr
	}
}

// pump accepts new connections for Accept, which also waits for
// handed-back ones, until the listener is closed.
func (l *envelopeListener) pump() {
	defer close(l.pumpDone)
	for {
		c, err := l.Listener.Accept()
		select {
		case l.accepted <- acceptResult{c, err}:
		case <-l.closed:
			if c != nil {
				c.Close()
			}
			l.pumpErr = net.ErrClosed
			return
		}
		if errors.Is(err, net.ErrClosed) {
			l.pumpErr = err
			return
		}
	}
}

func (l *envelopeListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// handBack queues c, whose parked request was answered, for the server's
// next Accept, and reports whether it was taken (false: the listener is
// closed, the caller closes c). What net/http had read past the request
// (a pipelined next request) is read first.
func (l *envelopeListener) handBack(c *envelopeConn, buffered []byte) bool {
	c.pending = buffered
	c.waiting = true
	select {
	case l.handedBack <- c:
		return true
	case <-l.closed:
		return false
	case <-l.pumpDone:
		return false
	}
}

// envelopeConn replaces net/http's own plain-text error answers with
// envelopes. Only the goroutine serving the connection reads and writes it
// (while its request is parked, nobody reads it and the parked answer
// writes it).
type envelopeConn struct {
	net.Conn
	l *envelopeListener

	// pending is what net/http had read past a parked request, read
	// before the connection. waiting says the connection was handed back
	// and its next request has not begun: the read deadline net/http sets
	// for a new connection's first request (ReadHeaderTimeout) waits
	// until the request's first byte, and until then the listener's idle
	// timeout applies, as for any keep-alive connection; readDeadline and
	// deadlineSet are that deadline and when it was set.
	pending      []byte
	waiting      bool
	readDeadline time.Time
	deadlineSet  time.Time
}

type connKey struct{}

// ConnContext is the http.Server.ConnContext that goes with Listener: it
// lets Handler find the TLS state of a connection Listener terminated.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// WithConnTLS fills r.TLS, for handlers outside Handler (the dashboard),
// from a connection whose TLS Listener terminated.
func WithConnTLS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			r.TLS = tlsState(r)
		}
		next.ServeHTTP(w, r)
	})
}

// tlsState is the TLS state of the connection r came on, when Listener
// terminated TLS for it.
func tlsState(r *http.Request) *tls.ConnectionState {
	ec, ok := r.Context().Value(connKey{}).(*envelopeConn)
	if !ok {
		return nil
	}
	tc, ok := ec.Conn.(*tls.Conn)
	if !ok {
		return nil
	}
	st := tc.ConnectionState()
	return &st
}

// netHTTPErrorHeaders is what net/http's server writes after the status
// line of an answer it makes up itself (net/http/server.go, conn.serve).
// Handler answers always carry a Date header, so they never match.
const netHTTPErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// parseNetHTTPError recognises one of net/http's own error answers: a
// single write of "HTTP/1.1 NNN reason[: detail]" + netHTTPErrorHeaders +
// body, with NNN a 4xx or 5xx.
func parseNetHTTPError(b []byte) (status int, text string, ok bool) {
	rest, found := bytes.CutPrefix(b, []byte("HTTP/1.1 "))
	if !found || len(rest) < 4 || rest[3] != ' ' {
		return 0, "", false
	}
	status, err := strconv.Atoi(string(rest[:3]))
	if err != nil || status < 400 || status > 599 {
		return 0, "", false
	}
	line, body, found := bytes.Cut(rest, []byte(netHTTPErrorHeaders))
	if !found || bytes.Contains(line, []byte("\r\n")) {
		return 0, "", false
	}
	return status, string(body), true
}

// expectationFailed starts the 417 net/http answers, through the response
// writer but before any handler, to an Expect header other than
// 100-continue.
const expectationFailed = "HTTP/1.1 417 Expectation Failed\r\n"

func (c *envelopeConn) Write(b []byte) (int, error) {
	status, text, ok := parseNetHTTPError(b)
	if !ok && bytes.HasPrefix(b, []byte(expectationFailed)) && bytes.Contains(b, []byte("\r\nContent-Length: 0\r\n")) && bytes.HasSuffix(b, []byte("\r\n\r\n")) {
		status, text, ok = http.StatusExpectationFailed, "only Expect: 100-continue is supported", true
	}
	if !ok {
		return c.Conn.Write(b)
	}
	if _, err := c.Conn.Write(envelopeAnswer(status, text)); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (c *envelopeConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		c.began()
		return n, nil
	}
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.began()
	}
	var re tls.RecordHeaderError
	if err != nil && errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
		// Plain HTTP on the TLS port: say so in the envelope, on the raw
		// connection (there is no TLS session to answer in).
		re.Conn.Write(envelopeAnswer(http.StatusBadRequest, "client sent an HTTP request to an HTTPS server; use https://"))
		re.Conn.Close()
	}
	return n, err
}

func (c *envelopeConn) SetReadDeadline(t time.Time) error {
	if !c.waiting {
		return c.Conn.SetReadDeadline(t)
	}
	c.readDeadline, c.deadlineSet = t, time.Now()
	if t.IsZero() {
		return c.Conn.SetReadDeadline(t)
	}
	return c.Conn.SetReadDeadline(c.deadlineSet.Add(c.l.idle))
}

// began ends a handed-back connection's wait for its next request: the
// deadline net/http set counts from now.
func (c *envelopeConn) began() {
	if !c.waiting {
		return
	}
	c.waiting = false
	if !c.readDeadline.IsZero() {
		c.Conn.SetReadDeadline(c.readDeadline.Add(time.Since(c.deadlineSet)))
	}
}

// looksLikeHTTP reports whether a TLS record header is the start of an
// HTTP/1 request line.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE":
		return true
	}
	return false
}

// envelopeAnswer is a complete HTTP/1.1 answer with the failure envelope,
// closing the connection as net/http's own answer does.
func envelopeAnswer(status int, text string) []byte {
	code := CodeBadRequest
	msg := "malformed HTTP request: " + text
	if status == http.StatusRequestHeaderFieldsTooLarge {
		code = CodeHeaderTooLarge
		msg = fmt.Sprintf("request header larger than %d bytes", MaxHeaderBytes)
	}
	body, err := json.Marshal(api.Envelope{Success: false, Errors: []api.Message{{Code: code, Message: msg}},
		Messages: []api.Message{}, Result: json.RawMessage("null")})
	if err != nil {
		body = []byte(`{"success":false,"errors":[{"code":1000,"message":"internal error"}],"messages":[],"result":null}`)
	}
	body = append(body, '\n')
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nConnection: close\r\nContent-Length: %d\r\n\r\n",
		status, http.StatusText(status), len(body))
	b.Write(body)
	return b.Bytes()
}
