package gateway_test

import (
	"bufio"
	"context"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/gateway"
)

func TestInterceptsWithTheInUseRoot(t *testing.T) {
	p := newPlane(t)
	o := startOrigin(t, []byte("hello from the origin"))
	f := startGateway(t, p, gateway.Config{UpstreamRoots: o.ca.Pool()})
	root := p.inUseRoot(t)

	for _, tt := range []struct {
		name, host string
		h2         bool
		wantProto  string
	}{
		{"http1 by name", "localhost", false, "HTTP/1.1"},
		{"http2 by name", "localhost", true, "HTTP/2.0"},
		{"http1 by IP", "127.0.0.1", false, "HTTP/1.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := f.client(pool(root), tt.h2)
			resp, body := get(t, c, "https://"+tt.host+":"+o.port+"/page")
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			assert.Equal(t, "hello from the origin", body)
			assert.Equal(t, tt.wantProto, resp.Proto)
			leaf := resp.TLS.PeerCertificates[0]
			require.NoError(t, leaf.CheckSignatureFrom(root), "the leaf is signed by the in-use root")
			assert.NoError(t, leaf.VerifyHostname(tt.host))
			assert.LessOrEqual(t, leaf.NotAfter.Sub(leaf.NotBefore), gateway.DefaultLeafValidity+5*time.Minute, "short validity")
		})
	}

	// Keep-alive: the second request reuses the client's connection.
	c := f.client(pool(root), false)
	get(t, c, "https://localhost:"+o.port+"/a")
	var reused bool
	req, _ := http.NewRequest("GET", "https://localhost:"+o.port+"/b", nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}))
	resp, err := c.Do(req)
	require.NoError(t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	assert.True(t, reused, "the second request rode the kept-alive connection")

	// A client that trusts only the origin's CA sees the gateway's leaf and
	// refuses it: interception is real.
	_, err = f.client(o.ca.Pool(), false).Get("https://localhost:" + o.port + "/")
	var uerr x509.UnknownAuthorityError
	assert.ErrorAs(t, err, &uerr)
}

func TestRefusesToInspectAnOriginItCannotVerify(t *testing.T) {
	p := newPlane(t)
	o := startOrigin(t, []byte("secret"))
	f := startGateway(t, p, gateway.Config{UpstreamRoots: x509.NewCertPool()})
	c := f.client(pool(p.inUseRoot(t)), false)
	resp, body := get(t, c, "https://localhost:"+o.port+"/")
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	assert.Equal(t, gateway.ErrKindOriginUnverified, resp.Header.Get(gateway.HeaderError))
	assert.Contains(t, body, "could not verify the certificate of localhost")
	assert.NotContains(t, body, "secret")
	assert.Zero(t, o.hits.Load(), "no request reached an origin the gateway could not verify")
}

func TestNoInspectHostsAreTunnelledUntouched(t *testing.T) {
	p := newPlane(t)
	o := startOrigin(t, []byte("direct"))
	f := startGateway(t, p, gateway.Config{UpstreamRoots: x509.NewCertPool(), NoInspect: []string{"localhost"}})
	c := f.client(o.ca.Pool(), false)
	resp, body := get(t, c, "https://localhost:"+o.port+"/")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "direct", body)
	assert.Equal(t, "origin test CA", resp.TLS.PeerCertificates[0].Issuer.CommonName, "the origin's own leaf")
	// 127.0.0.1 is not on the list: inspected (and refused, the gateway
	// trusts nothing here).
	resp, _ = get(t, f.client(pool(p.inUseRoot(t)), false), "https://127.0.0.1:"+o.port+"/")
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
}

func TestPlainHTTPRequests(t *testing.T) {
	p := newPlane(t)
	var got string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("Proxy-Authorization") + "|" + r.Host
		io.WriteString(w, "plain ok")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	f := startGateway(t, p, gateway.Config{})
	req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/x", nil)
	req.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
	resp, err := f.client(nil, false).Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "plain ok", string(b))
	assert.Equal(t, "|"+ln.Addr().String(), got, "hop-by-hop proxy headers are not forwarded")
}

func TestBadInputGetsAClearErrorAndHarmsNoOne(t *testing.T) {
	p := newPlane(t)
	o := startOrigin(t, []byte("still fine"))
	f := startGateway(t, p, gateway.Config{UpstreamRoots: o.ca.Pool(), HeaderTimeout: 300 * time.Millisecond})
	c := f.client(pool(p.inUseRoot(t)), false)

	// A kept-alive inspected connection, open across all the bad input.
	resp, body := get(t, c, "https://localhost:"+o.port+"/before")
	require.Equal(t, "still fine", body, resp.Status)

	huge := "CONNECT localhost:" + o.port + " HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 200<<10) + "\r\n\r\n"
	for _, tt := range []struct {
		name, req, want string
	}{
		{"connect without port", "CONNECT localhost HTTP/1.1\r\nHost: localhost\r\n\r\n", "400"},
		{"connect bad port", "CONNECT localhost:99999 HTTP/1.1\r\nHost: localhost\r\n\r\n", "400"},
		{"connect path", "CONNECT /etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
		{"connect bad host", "CONNECT bad_host!:443 HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
		{"not a proxy request", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "400"},
		{"https absolute URI", "GET https://localhost/ HTTP/1.1\r\nHost: localhost\r\n\r\n", "400"},
		{"garbage", "\x16\x03\x01\x00\x05hello\r\n\r\n", "400"},
		{"oversized headers", huge, "431"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := rawProxy(t, f.addr, tt.req)
			assert.Contains(t, statusLine(got), tt.want, "answer: %.300q", got)
		})
	}

	t.Run("slow client is cut off", func(t *testing.T) {
		conn, err := net.Dial("tcp", f.addr)
		require.NoError(t, err)
		defer conn.Close()
		io.WriteString(conn, "CONNECT localhost:"+o.port+" HTTP/1.1\r\n") // and never finishes
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))            // safety net only
		_, err = io.ReadAll(conn)
		assert.NoError(t, err, "the gateway closed the connection (EOF), not our safety deadline")
	})

	t.Run("slow TLS handshake after CONNECT is cut off", func(t *testing.T) {
		conn, err := net.Dial("tcp", f.addr)
		require.NoError(t, err)
		defer conn.Close()
		io.WriteString(conn, "CONNECT localhost:"+o.port+" HTTP/1.1\r\nHost: localhost\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err = io.ReadAll(br)
		assert.NoError(t, err, "closed by the gateway")
	})

	t.Run("unreachable origin", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		resp, body := get(t, c, "https://127.0.0.1:"+strconv.Itoa(port)+"/")
		assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
		assert.Equal(t, gateway.ErrKindOriginUnreachable, resp.Header.Get(gateway.HeaderError), body)
	})

	t.Run("misdirected Host", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "https://localhost:"+o.port+"/echo-host", nil)
		req.Host = "evil.example"
		resp, err := c.Do(req)
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusMisdirectedRequest, resp.StatusCode)
	})

	resp, body = get(t, c, "https://localhost:"+o.port+"/after")
	assert.Equal(t, "still fine", body, resp.Status)
}

func TestNoRootInUseRefusesRatherThanTunnels(t *testing.T) {
	p := newPlane(t)
	o := startOrigin(t, []byte("x"))
	_, err := p.svc.Use(context.Background(), p.account, "")
	require.NoError(t, err)
	f := startGateway(t, p, gateway.Config{UpstreamRoots: o.ca.Pool()})
	assert.Equal(t, "", f.gw.Signing())
	got := rawProxy(t, f.addr, "CONNECT localhost:"+o.port+" HTTP/1.1\r\nHost: localhost\r\n\r\n")
	assert.Contains(t, statusLine(got), "503")
	assert.Contains(t, got, gateway.ErrKindNotInspecting)
}

// TestRotation walks a root through the lifecycle with a gateway
// reporting: pending until loaded, then in use, then withdrawn.
func TestRotation(t *testing.T) {
	ctx := context.Background()
	p := newPlane(t)
	o := startOrigin(t, []byte("rotating"))
	f := startGateway(t, p, gateway.Config{UpstreamRoots: o.ca.Pool()})
	store := p.svc.Rules()
	old := p.inUseRoot(t)
	require.NoError(t, f.gw.Report(ctx))

	next, err := p.svc.Generate(ctx, p.account, controlplane.GenerateRequest{})
	require.NoError(t, err)
	_, err = p.svc.Rules().Activate(ctx, p.account, next.ID)
	require.NoError(t, err)
	n, err := store.CompleteDue(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
	c, _ := store.Get(ctx, p.account, next.ID)
	assert.Equal(t, api.StatusPendingDeployment, c.Status, "the live gateway has not loaded it")

	changed, err := f.gw.Refresh(ctx)
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Contains(t, f.gw.Loaded(), next.Fingerprint)
	require.NoError(t, f.gw.Report(ctx))
	n, err = store.CompleteDue(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	c, _ = store.Get(ctx, p.account, next.ID)
	assert.Equal(t, api.StatusAvailable, c.Status)

	// Both roots trusted (as a synced device would): nothing fails across the switch.
	nextX, _ := x509.ParseCertificate(c.DER)
	cl := f.client(pool(old, nextX), false)
	resp, _ := get(t, cl, "https://localhost:"+o.port+"/")
	require.NoError(t, resp.TLS.PeerCertificates[0].CheckSignatureFrom(old))

	_, err = p.svc.Use(ctx, p.account, next.ID)
	require.NoError(t, err)
	_, err = f.gw.Refresh(ctx)
	require.NoError(t, err)
	assert.Equal(t, next.Fingerprint, f.gw.Signing())
	cl.CloseIdleConnections()
	resp, body := get(t, cl, "https://localhost:"+o.port+"/")
	assert.Equal(t, "rotating", body)
	require.NoError(t, resp.TLS.PeerCertificates[0].CheckSignatureFrom(nextX), "the next connection is signed by the new root")

	// Withdrawing the old root waits until the gateway dropped it.
	a, _ := store.Account(ctx, p.account)
	_ = a
	oldID := ""
	certs, _, _ := store.List(ctx, p.account)
	for _, c := range certs {
		if c.ID != next.ID {
			oldID = c.ID
		}
	}
	_, err = p.svc.Rules().Deactivate(ctx, p.account, oldID)
	require.NoError(t, err)
	require.NoError(t, f.gw.Report(ctx)) // still holding it
	store.CompleteDue(ctx)
	c, _ = store.Get(ctx, p.account, oldID)
	assert.Equal(t, api.StatusPendingDeletion, c.Status)
	_, err = f.gw.Refresh(ctx)
	require.NoError(t, err)
	require.NoError(t, f.gw.Report(ctx))
	store.CompleteDue(ctx)
	c, _ = store.Get(ctx, p.account, oldID)
	assert.Equal(t, api.StatusInactive, c.Status)

	gws, err := store.Gateways(ctx, p.account)
	require.NoError(t, err)
	require.Len(t, gws, 1)
	assert.Equal(t, []string{next.Fingerprint}, gws[0].Loaded)
	assert.Equal(t, next.Fingerprint, gws[0].Signing)
}

// TestRunRegistersAndLeaves: Run reports at once and removes its row when
// stopped.
func TestRunRegistersAndLeaves(t *testing.T) {
	p := newPlane(t)
	gw, err := gateway.New(p.svc, gateway.Config{AccountID: p.account, ID: "edge-1", Listen: "127.0.0.1:3128"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); gw.Run(ctx) }()
	require.Eventually(t, func() bool {
		gws, _ := p.svc.Rules().Gateways(context.Background(), p.account)
		return len(gws) == 1 && gws[0].Signing != ""
	}, 30*time.Second, 10*time.Millisecond)
	cancel()
	<-done
	gws, err := p.svc.Rules().Gateways(context.Background(), p.account)
	require.NoError(t, err)
	assert.Empty(t, gws)
}

func TestConcurrentClients(t *testing.T) {
	p := newPlane(t)
	o := startOrigin(t, []byte("many"))
	f := startGateway(t, p, gateway.Config{UpstreamRoots: o.ca.Pool()})
	c := f.client(pool(p.inUseRoot(t)), false)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			host := "localhost"
			if i%2 == 0 {
				host = "127.0.0.1"
			}
			resp, err := c.Get("https://" + host + ":" + o.port + "/")
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "many" {
				errs <- io.ErrUnexpectedEOF
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestConnectionLimit(t *testing.T) {
	p := newPlane(t)
	o := startOrigin(t, []byte("ok"))
	f := startGateway(t, p, gateway.Config{UpstreamRoots: o.ca.Pool(), MaxConns: 3})
	var held []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", f.addr)
		require.NoError(t, err)
		held = append(held, c)
	}
	// The held connections are accepted (their requests are answered).
	for _, c := range held {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	}
	got := rawProxy(t, f.addr, "CONNECT localhost:"+o.port+" HTTP/1.1\r\nHost: localhost\r\n\r\n")
	assert.Contains(t, statusLine(got), "503")
	assert.Contains(t, got, "too many open connections")
	for _, c := range held {
		c.Close()
	}
	require.Eventually(t, func() bool {
		resp, err := f.client(pool(p.inUseRoot(t)), false).Get("https://localhost:" + o.port + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "a slot frees when a client leaves")
}
