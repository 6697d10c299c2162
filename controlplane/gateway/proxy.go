package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Error kinds, sent in the X-Certplane-Gateway-Error header of every error
// page so scripts and tests can tell them apart.
const (
	ErrKindBadRequest        = "bad-request"
	ErrKindNotInspecting     = "no-root-in-use"
	ErrKindOriginUnverified  = "origin-unverified"
	ErrKindOriginUnreachable = "origin-unreachable"
	ErrKindOriginTimeout     = "origin-timeout"
	ErrKindMisdirected       = "misdirected"
)

// HeaderError names the error kind of a gateway error page.
const HeaderError = "X-Certplane-Gateway-Error"

// clientConn is a client's connection after CONNECT: what it asked for,
// and any bytes it sent ahead (a pipelined ClientHello) still buffered.
type clientConn struct {
	net.Conn
	r io.Reader
	// host is the CONNECT host (no port, normalised); target is host:port.
	host, target string
}

func (c *clientConn) Read(p []byte) (int, error) { return c.r.Read(p) }

type ctxKey struct{}

// bufferPool lends copy buffers of one size, so a proxied response or a
// tunnel does not allocate its own (ReverseProxy otherwise does).
type bufferPool struct {
	size int
	p    sync.Pool
}

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, b.size)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// setupHTTP builds the proxy-side server, the intercepted-side server and
// the origin transport.
func (g *Gateway) setupHTTP() {
	errLog := g.log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	g.buffers = &bufferPool{size: 32 << 10}
	// A tunnel holds one buffer per direction for as long as it is open
	// (a blocked Read keeps it): small ones keep an idle tunnel cheap.
	g.tunnelBuffers = &bufferPool{size: 8 << 10}
	g.dialer = &net.Dialer{Timeout: g.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	g.upstream = &http.Transport{
		DialContext:     g.dialer.DialContext,
		TLSClientConfig: &tls.Config{RootCAs: g.cfg.UpstreamRoots, MinVersion: tls.VersionTLS12},
		// HTTP/1.1 to origins, over a pool of kept-alive connections: on
		// this machine it carried 1.2-1.8x the requests/s of one
		// multiplexed HTTP/2 connection per origin (docs/performance.md).
		ForceAttemptHTTP2:      false,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        g.cfg.IdleTimeout,
		TLSHandshakeTimeout:    g.cfg.DialTimeout,
		ResponseHeaderTimeout:  time.Minute,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			cc := pr.In.Context().Value(ctxKey{}).(*clientConn)
			pr.Out.URL.Scheme = "https"
			pr.Out.URL.Host = cc.target
			pr.Out.Host = pr.In.Host
		},
		Transport:    g.upstream,
		ErrorHandler: g.originError,
		ErrorLog:     errLog,
		BufferPool:   g.buffers,
	}
	g.plain = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.Host = pr.In.Host
		},
		Transport:    g.upstream,
		ErrorHandler: g.originError,
		ErrorLog:     errLog,
		BufferPool:   g.buffers,
	}
	g.outer = &http.Server{
		Handler:           http.HandlerFunc(g.serveProxy),
		ReadHeaderTimeout: g.cfg.HeaderTimeout,
		IdleTimeout:       g.cfg.IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          errLog,
	}
	g.innerLn = newChanListener()
	g.inner = &http.Server{
		Handler:           http.HandlerFunc(g.serveInspected),
		ReadHeaderTimeout: g.cfg.HeaderTimeout, // also bounds the TLS handshake
		IdleTimeout:       g.cfg.IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          errLog,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*tls.Conn); ok {
				if cc, ok := tc.NetConn().(*clientConn); ok {
					return context.WithValue(ctx, ctxKey{}, cc)
				}
			}
			return ctx
		},
	}
}

// tlsConfig is the intercepted side's TLS: leaves minted per handshake.
func (g *Gateway) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			name := hello.ServerName
			if name == "" {
				if cc, ok := hello.Conn.(*clientConn); ok {
					name = cc.host
				}
			}
			r := g.roots.Load().signing
			if r == nil {
				return nil, errors.New("gateway: no root in use")
			}
			return g.minter.leaf(r, name)
		},
	}
}

// Serve accepts proxy clients on ln until Shutdown. At most MaxConns client
// connections are open at once; more are answered 503 and closed.
func (g *Gateway) Serve(ln net.Listener) error {
	tc := g.tlsConfig()
	g.innerLn.tls = tc
	go func() { _ = g.inner.Serve(g.innerLn) }()
	return g.outer.Serve(newLimitListener(ln, g.cfg.MaxConns, g.log))
}

// Shutdown stops accepting and closes idle connections, waiting for
// active ones until ctx ends.
func (g *Gateway) Shutdown(ctx context.Context) error {
	err := g.outer.Shutdown(ctx)
	err = errors.Join(err, g.inner.Shutdown(ctx))
	g.upstream.CloseIdleConnections()
	return err
}

// noInspect reports whether host is on the do-not-inspect list.
func (g *Gateway) noInspect(host string) bool {
	for _, h := range g.cfg.NoInspect {
		if strings.HasPrefix(h, ".") {
			if strings.HasSuffix(host, h) {
				return true
			}
		} else if host == h {
			return true
		}
	}
	return false
}

// parseTarget checks a CONNECT authority and returns its normalised host
// and host:port.
func parseTarget(authority string) (host, target string, err error) {
	h, port, err := net.SplitHostPort(authority)
	if err != nil {
		return "", "", fmt.Errorf("CONNECT %q: want host:port", authority)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("CONNECT %q: bad port", authority)
	}
	h, err = normalizeName(h)
	if err != nil {
		return "", "", fmt.Errorf("CONNECT %q: bad host", authority)
	}
	return h, net.JoinHostPort(h, port), nil
}

// serveProxy is the proxy side: CONNECT, or an absolute http:// URL.
func (g *Gateway) serveProxy(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodConnect:
		g.connect(w, r)
	case r.URL.IsAbs() && r.URL.Scheme == "http" && r.URL.Host != "":
		g.plain.ServeHTTP(w, r)
	default:
		errorPage(w, http.StatusBadRequest, ErrKindBadRequest, "Not a proxy request",
			"This is the certplane inspection gateway, an HTTP forward proxy: send CONNECT host:port, or a request for an absolute http:// URL.")
	}
}

func (g *Gateway) connect(w http.ResponseWriter, r *http.Request) {
	host, target, err := parseTarget(r.Host)
	if err != nil {
		errorPage(w, http.StatusBadRequest, ErrKindBadRequest, "Bad CONNECT request", err.Error())
		return
	}
	if g.noInspect(host) {
		g.tunnel(w, r, target)
		return
	}
	if g.roots.Load().signing == nil {
		errorPage(w, http.StatusServiceUnavailable, ErrKindNotInspecting, "No inspection root in use",
			"The gateway has no root certificate in use for this account, so it cannot inspect "+host+" and does not let it through uninspected.")
		return
	}
	conn, brw, err := hijack(w)
	if err != nil {
		g.log.Error("hijack", "error", err)
		return
	}
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		conn.Close()
		return
	}
	cc := &clientConn{Conn: conn, r: conn, host: host, target: target}
	if n := brw.Reader.Buffered(); n > 0 {
		cc.r = io.MultiReader(io.LimitReader(brw.Reader, int64(n)), conn)
	}
	if !g.innerLn.deliver(cc) {
		conn.Close()
	}
}

// hijack takes the client connection over, with its deadlines cleared
// (the intercepted side sets its own).
func hijack(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("gateway: connection cannot be hijacked")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, brw, nil
}

// tunnel connects the client to target untouched (a do-not-inspect host).
func (g *Gateway) tunnel(w http.ResponseWriter, r *http.Request, target string) {
	up, err := g.dialer.DialContext(r.Context(), "tcp", target)
	if err != nil {
		errorPage(w, http.StatusBadGateway, ErrKindOriginUnreachable, "Cannot reach "+target, err.Error())
		return
	}
	conn, brw, err := hijack(w)
	if err != nil {
		up.Close()
		return
	}
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		conn.Close()
		up.Close()
		return
	}
	if n := brw.Reader.Buffered(); n > 0 {
		if _, err := io.CopyN(up, brw.Reader, int64(n)); err != nil {
			conn.Close()
			up.Close()
			return
		}
	}
	idle := g.cfg.IdleTimeout
	var wg sync.WaitGroup
	// pipe copies until src ends; an idle direction times out after idle.
	// A clean end (EOF) is passed on as a half close, so a client that
	// finished sending still receives the answer; anything else ends both.
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		buf := g.tunnelBuffers.Get()
		defer g.tunnelBuffers.Put(buf)
		for {
			_ = src.SetReadDeadline(time.Now().Add(idle))
			n, err := src.Read(buf)
			if n > 0 {
				_ = dst.SetWriteDeadline(time.Now().Add(idle))
				if _, werr := dst.Write(buf[:n]); werr != nil {
					src.Close()
					dst.Close()
					return
				}
			}
			if errors.Is(err, io.EOF) {
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
					return
				}
			}
			if err != nil {
				src.Close()
				dst.Close()
				return
			}
		}
	}
	wg.Add(2)
	go pipe(up, conn)
	go pipe(conn, up)
	go func() {
		wg.Wait()
		conn.Close()
		up.Close()
	}()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// serveInspected is the intercepted side: a decrypted request, forwarded
// to the origin the client CONNECTed to.
func (g *Gateway) serveInspected(w http.ResponseWriter, r *http.Request) {
	cc, ok := r.Context().Value(ctxKey{}).(*clientConn)
	if !ok {
		errorPage(w, http.StatusInternalServerError, ErrKindBadRequest, "Internal error", "connection without a CONNECT target")
		return
	}
	// The request must be for the host the client CONNECTed to: the
	// origin is dialled and verified by that name, and a different Host
	// would make the gateway speak for a site it did not verify.
	host := r.Host
	if h, port, err := net.SplitHostPort(host); err == nil {
		_, tport, _ := net.SplitHostPort(cc.target)
		if port != tport {
			host = "" // mismatch
		} else {
			host = h
		}
	}
	if n, err := normalizeName(host); err != nil || n != cc.host {
		errorPage(w, http.StatusMisdirectedRequest, ErrKindMisdirected, "Misdirected request",
			fmt.Sprintf("This connection was opened for %s; a request for %q cannot be sent on it.", cc.target, r.Host))
		return
	}
	g.proxy.ServeHTTP(w, r)
}

// originError answers a failed origin exchange with an error page that
// says what failed. An origin whose certificate does not verify is never
// inspected: the request is not sent.
func (g *Gateway) originError(w http.ResponseWriter, r *http.Request, err error) {
	host := r.Host
	var verr *tls.CertificateVerificationError
	var uerr x509.UnknownAuthorityError
	var herr x509.HostnameError
	var ierr x509.CertificateInvalidError
	switch {
	case errors.As(err, &verr) || errors.As(err, &uerr) || errors.As(err, &herr) || errors.As(err, &ierr):
		g.log.Warn("origin certificate does not verify: refusing to inspect", "host", host, "error", err)
		errorPage(w, http.StatusBadGateway, ErrKindOriginUnverified, "Cannot verify "+host,
			"The certplane gateway could not verify the certificate of "+host+", so it refuses to inspect this connection: "+err.Error())
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		errorPage(w, http.StatusGatewayTimeout, ErrKindOriginTimeout, "Timed out talking to "+host, err.Error())
	case errors.Is(err, context.Canceled):
		// The client went away; there is nobody to answer.
	default:
		g.log.Warn("origin exchange failed", "host", host, "error", err)
		errorPage(w, http.StatusBadGateway, ErrKindOriginUnreachable, "Cannot reach "+host, err.Error())
	}
}

// errorPage writes a small HTML page naming the gateway and the failure.
func errorPage(w http.ResponseWriter, status int, kind, title, detail string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(HeaderError, kind)
	w.WriteHeader(status)
	fmt.Fprintf(w, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>%s</title></head>\n"+
		"<body><h1>%s</h1>\n<p>%s</p>\n<p><small>certplane inspection gateway (%d %s, %s)</small></p></body></html>\n",
		html.EscapeString(title), html.EscapeString(title), html.EscapeString(detail), status, http.StatusText(status), kind)
}

// chanListener hands intercepted connections to the inner server as TLS
// server connections.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	tls  *tls.Config
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

// deliver hands c over; false if the listener is closed.
func (l *chanListener) deliver(c *clientConn) bool {
	select {
	case l.ch <- tls.Server(c, l.tls):
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }

// limitListener bounds open client connections. A connection over the
// bound is answered 503 and closed at once, rather than left waiting in
// the backlog behind idle kept-alive connections.
type limitListener struct {
	net.Listener
	sem chan struct{}
	log hclog.Logger
}

func newLimitListener(ln net.Listener, n int, log hclog.Logger) *limitListener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, n), log: log}
}

// busy is the whole answer to a connection over the bound.
const busy = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	HeaderError + ": too-many-connections\r\nConnection: close\r\nContent-Length: 58\r\n\r\n" +
	"certplane gateway: too many open connections, retry later\n"

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
		default:
			l.log.Warn("connection limit reached: refusing a client", "limit", cap(l.sem), "client", c.RemoteAddr().String())
			go func() {
				_ = c.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = io.WriteString(c, busy)
				c.Close()
			}()
		}
	}
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite half-closes a TCP connection (tunnels pass a client's FIN on).
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
