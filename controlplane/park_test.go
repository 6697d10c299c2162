package controlplane_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/controlplane"
)

// serveReal serves f.handler on loopback as `certplane serve` does
// (Listener, ConnContext) when parking, else on a bare listener, where
// held requests keep their goroutines. It returns the address and a dial
// function (TLS when tlsConfig is set).
func (f *fixture) serveReal(t *testing.T, parking bool, tlsConfig *tls.Config, state ...func(net.Conn, http.ConnState)) (*http.Server, func() net.Conn) {
	return f.serveWith(t, parking, tlsConfig, 10*time.Second, state...)
}

// serveWith is serveReal with the server's ReadHeaderTimeout.
func (f *fixture) serveWith(t *testing.T, parking bool, tlsConfig *tls.Config, headerTimeout time.Duration, state ...func(net.Conn, http.ConnState)) (*http.Server, func() net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: f.handler, ConnContext: controlplane.ConnContext, ReadHeaderTimeout: headerTimeout}
	if len(state) > 0 {
		srv.ConnState = state[0]
	}
	served := ln
	if parking {
		served = controlplane.Listener(ln, tlsConfig)
	}
	go srv.Serve(served)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()
	return srv, func() net.Conn {
		var c net.Conn
		var err error
		if tlsConfig != nil {
			c, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		} else {
			c, err = net.Dial("tcp", addr)
		}
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}
}

func (f *fixture) etag(t *testing.T) string {
	t.Helper()
	r := f.do(t, http.MethodGet, f.gw("/certificates"), f.read, "")
	require.Equal(t, http.StatusOK, r.status)
	return r.header.Get("ETag")
}

// holdRequest is a raw long-poll request.
func (f *fixture) holdRequest(etag, wait string, extra ...string) string {
	return fmt.Sprintf("GET %s?wait=%s HTTP/1.1\r\nHost: certplane\r\nAuthorization: Bearer %s\r\nIf-None-Match: %s\r\n%s\r\n",
		f.gw("/certificates"), wait, f.read, etag, strings.Join(extra, ""))
}

// waitHeld waits until n requests wait on the account's hub.
func (f *fixture) waitHeld(t *testing.T, n int) {
	t.Helper()
	for i := 0; f.svc.Hub().Waiting(f.account) != n; i++ {
		require.Less(t, i, 2000, "want %d held requests, have %d", n, f.svc.Hub().Waiting(f.account))
		time.Sleep(5 * time.Millisecond)
	}
}

// waitParked waits until n requests are parked.
func (f *fixture) waitParked(t *testing.T, n int) {
	t.Helper()
	for i := 0; controlplane.ParkedRequests(f.svc) != n; i++ {
		require.Less(t, i, 2000, "want %d parked requests, have %d", n, controlplane.ParkedRequests(f.svc))
		time.Sleep(5 * time.Millisecond)
	}
}

// readRaw reads one HTTP/1.1 answer byte for byte.
func readRaw(t *testing.T, br *bufio.Reader) []byte {
	t.Helper()
	var raw []byte
	length := 0
	chunked := false
	for {
		line, err := br.ReadString('\n')
		require.NoError(t, err, "read so far: %q", raw)
		raw = append(raw, line...)
		if line == "\r\n" {
			break
		}
		if line == "Transfer-Encoding: chunked\r\n" {
			chunked = true
		}
		if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
			length, err = strconv.Atoi(strings.TrimSpace(v))
			require.NoError(t, err)
		}
	}
	for chunked {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		raw = append(raw, line...)
		n, err := strconv.ParseInt(strings.TrimSpace(line), 16, 32)
		require.NoError(t, err)
		chunk := make([]byte, n+2)
		_, err = io.ReadFull(br, chunk)
		require.NoError(t, err)
		raw = append(raw, chunk...)
		chunked = n > 0
	}
	body := make([]byte, length)
	_, err := io.ReadFull(br, body)
	require.NoError(t, err)
	return append(raw, body...)
}

var dateLine = regexp.MustCompile(`\r\nDate: [^\r]*\r\n`)

func withoutDate(b []byte) string {
	return dateLine.ReplaceAllString(string(b), "\r\nDate: (date)\r\n")
}

func testTLSConfig(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// TestParkedAnswersAreNetHTTPs: a parked request's answers (woken with the
// list, and the 304 at the end of the wait) are byte for byte what
// net/http writes for a request that held its goroutine (the same service
// served without Listener), on plain HTTP and TLS; the connection then
// serves its next request (keep-alive), and the held requests really were
// parked.
func TestParkedAnswersAreNetHTTPs(t *testing.T) {
	f := newFixture(t)
	_, dialHeld := f.serveReal(t, false, nil)
	_, dialParked := f.serveReal(t, true, nil)
	_, dialTLS := f.serveReal(t, true, testTLSConfig(t))
	conns := []net.Conn{dialHeld(), dialParked(), dialTLS()}
	brs := make([]*bufio.Reader, len(conns))
	for i, c := range conns {
		brs[i] = bufio.NewReader(c)
	}
	// exchange sends req on every connection, waits until held requests
	// are held (parked: those but the first), runs change, and returns
	// the answers without their Date.
	exchange := func(req string, held int, change func()) []string {
		for _, c := range conns {
			_, err := io.WriteString(c, req)
			require.NoError(t, err)
		}
		f.waitHeld(t, held)
		f.waitParked(t, max(held-1, 0))
		change()
		got := make([]string, len(conns))
		for i, br := range brs {
			got[i] = withoutDate(readRaw(t, br))
		}
		return got
	}
	etag := f.etag(t)
	woken := exchange(f.holdRequest(etag, "30s"), 3, func() { f.available(t) })
	require.Contains(t, woken[0], "HTTP/1.1 200 OK\r\n")
	assert.NotContains(t, woken[0], etag)
	etag = f.etag(t)
	timedOut := exchange(f.holdRequest(etag, "1"), 3, func() {})
	require.Contains(t, timedOut[0], "HTTP/1.1 304 Not Modified\r\n")
	next := exchange(f.holdRequest("*", "0"), 0, func() {})
	require.Contains(t, next[0], "HTTP/1.1 304 Not Modified\r\n")
	for i, name := range []string{"parked", "parked over TLS"} {
		assert.Equal(t, woken[0], woken[i+1], "woken answer, %s", name)
		assert.Equal(t, timedOut[0], timedOut[i+1], "timed-out answer, %s", name)
		assert.Equal(t, next[0], next[i+1], "next answer on the connection, %s", name)
	}
	assert.Equal(t, 0, controlplane.ParkedRequests(f.svc))
	assert.Equal(t, 0, f.svc.Hub().Waiting(f.account))
}

// TestHandedBackConnectionWaitsLikeAnIdleOne: a connection handed back
// after its parked request waits for the next request as a keep-alive
// connection does (idle timeout), not only the header timeout net/http
// gives a new connection's first request; once that request begins, the
// header timeout applies to it. (The pauses make the timeouts' difference
// observable; nothing is asserted about durations.)
func TestHandedBackConnectionWaitsLikeAnIdleOne(t *testing.T) {
	const headerTimeout = 100 * time.Millisecond
	f := newFixture(t)
	_, dial := f.serveWith(t, true, nil, headerTimeout)
	etag := f.etag(t)
	exchange := func(c net.Conn, br *bufio.Reader) string {
		_, err := io.WriteString(c, f.holdRequest(etag, "1"))
		require.NoError(t, err)
		return string(readRaw(t, br))
	}

	c := dial()
	br := bufio.NewReader(c)
	assert.Contains(t, exchange(c, br), "HTTP/1.1 304 Not Modified\r\n")
	time.Sleep(3 * headerTimeout)
	assert.Contains(t, exchange(c, br), "HTTP/1.1 304 Not Modified\r\n", "served after a pause longer than the header timeout")

	// A request that begins and then stalls is cut by the header timeout.
	_, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\n")
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = br.ReadByte()
	require.Error(t, err, "the stalled request's connection is closed")
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "closed by the server, not our deadline: %v", err)
}

// TestParkedCheckError: when the list cannot be read after a wake-up, a
// parked request is answered with the same 500 envelope as a held one.
func TestParkedCheckError(t *testing.T) {
	f := newFixture(t)
	_, dialHeld := f.serveReal(t, false, nil)
	_, dialParked := f.serveReal(t, true, nil)
	conns := []net.Conn{dialHeld(), dialParked()}
	req := f.holdRequest(f.etag(t), "30s")
	for _, c := range conns {
		_, err := io.WriteString(c, req)
		require.NoError(t, err)
	}
	f.waitHeld(t, 2)
	f.waitParked(t, 1)
	f.backend.failSnapshots.Store(true)
	f.available(t)
	var got [2]string
	for i, c := range conns {
		got[i] = withoutDate(readRaw(t, bufio.NewReader(c)))
	}
	assert.Contains(t, got[0], "HTTP/1.1 500 Internal Server Error\r\n")
	assert.Equal(t, got[0], got[1])
	assert.Contains(t, f.logs.String(), errSnapshot.Error(), "the cause is logged")
}

// TestParkedConnectionClose: a request with Connection: close parks too;
// its answer says Connection: close as net/http's does, and the
// connection is closed after it.
func TestParkedConnectionClose(t *testing.T) {
	f := newFixture(t)
	_, dialHeld := f.serveReal(t, false, nil)
	_, dialParked := f.serveReal(t, true, nil)
	for _, tc := range []struct {
		name   string
		wait   string
		change func()
	}{{"woken", "30s", func() { f.available(t) }}, {"timed out", "1", func() {}}} {
		t.Run(tc.name, func(t *testing.T) {
			conns := []net.Conn{dialHeld(), dialParked()}
			req := f.holdRequest(f.etag(t), tc.wait, "Connection: close\r\n")
			for _, c := range conns {
				_, err := io.WriteString(c, req)
				require.NoError(t, err)
			}
			f.waitHeld(t, 2)
			f.waitParked(t, 1)
			tc.change()
			var got [2]string
			for i, c := range conns {
				br := bufio.NewReader(c)
				got[i] = withoutDate(readRaw(t, br))
				_, err := br.ReadByte()
				assert.ErrorIs(t, err, io.EOF, "the connection is closed")
			}
			assert.Contains(t, got[0], "\r\nConnection: close\r\n")
			assert.Equal(t, got[0], got[1])
		})
	}
}

// TestParkedAnswerIsTheSharedBody: the woken answer's body is the list
// every other request gets at that revision.
func TestParkedAnswerIsTheSharedBody(t *testing.T) {
	f := newFixture(t)
	_, dial := f.serveReal(t, true, nil)
	c := dial()
	_, err := io.WriteString(c, f.holdRequest(f.etag(t), "30s"))
	require.NoError(t, err)
	f.waitHeld(t, 1)
	f.available(t)
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	got, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	want := f.do(t, http.MethodGet, f.gw("/certificates"), f.read, "")
	assert.Equal(t, string(want.body), string(got))
	assert.Equal(t, want.header.Get("ETag"), res.Header.Get("ETag"))
}

// TestParkedPipelinedRequest: a request pipelined behind a parked one is
// answered after it, in order, on the same connection.
func TestParkedPipelinedRequest(t *testing.T) {
	f := newFixture(t)
	_, dial := f.serveReal(t, true, nil)
	c := dial()
	etag := f.etag(t)
	next := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: certplane\r\nAuthorization: Bearer %s\r\n\r\n", f.gw("/configuration"), f.read)
	_, err := io.WriteString(c, f.holdRequest(etag, "30s")+next)
	require.NoError(t, err)
	f.waitHeld(t, 1)
	f.waitParked(t, 1)
	f.available(t)
	br := bufio.NewReader(c)
	first := string(readRaw(t, br))
	assert.Contains(t, first, "HTTP/1.1 200 OK\r\n")
	assert.Contains(t, first, `"fingerprint"`, "the list comes first")
	second := string(readRaw(t, br))
	assert.Contains(t, second, "HTTP/1.1 200 OK\r\n")
	assert.Contains(t, second, `"settings"`, "then the configuration")
}

// TestParkedClientGone: a client that leaves while parked costs nothing
// after the hold's wait: the answer's write or the next read fails, the
// connection is closed, nothing stays registered.
func TestParkedClientGone(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	states := map[net.Conn]http.ConnState{}
	_, dial := f.serveReal(t, true, nil, func(c net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		states[c] = s
	})
	c := dial()
	_, err := io.WriteString(c, f.holdRequest(f.etag(t), "1"))
	require.NoError(t, err)
	f.waitHeld(t, 1)
	require.NoError(t, c.Close())
	for i := 0; ; i++ {
		mu.Lock()
		closed := 0
		for _, s := range states {
			if s == http.StateClosed {
				closed++
			}
		}
		mu.Unlock()
		if closed >= 1 && controlplane.ParkedRequests(f.svc) == 0 {
			break
		}
		require.Less(t, i, 1000, "the connection was not closed after the hold ended")
		time.Sleep(5 * time.Millisecond)
	}
	assert.Equal(t, 0, f.svc.Hub().Waiting(f.account))
}

// runService runs f's Service in the background; the function it returns
// stops it and waits until Run has returned.
func (f *fixture) runService() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		f.svc.Run(ctx)
	}()
	return func() {
		cancel()
		<-ran
	}
}

// TestParkedAtShutdown: stopping the handler answers every parked request
// with its 304 and Connection: close, and closes it; Service.Run returns.
func TestParkedAtShutdown(t *testing.T) {
	f := newFixture(t)
	stopRun := f.runService()
	_, dial := f.serveReal(t, true, nil)
	etag := f.etag(t)
	const n = 200
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = dial()
		_, err := io.WriteString(conns[i], f.holdRequest(etag, "50s"))
		require.NoError(t, err)
	}
	f.waitHeld(t, n)
	f.waitParked(t, n)
	f.stopping()
	for _, c := range conns {
		br := bufio.NewReader(c)
		got := string(readRaw(t, br))
		assert.Contains(t, got, "HTTP/1.1 304 Not Modified\r\n")
		assert.Contains(t, got, "\r\nConnection: close\r\n")
		_, err := br.ReadByte()
		assert.ErrorIs(t, err, io.EOF, "the connection is closed")
	}
	stopRun()
	assert.Equal(t, 0, controlplane.ParkedRequests(f.svc))
}

// TestParkedRunStops: requests still parked when Service.Run returns are
// answered and closed before it returns.
func TestParkedRunStops(t *testing.T) {
	f := newFixture(t)
	stopRun := f.runService()
	_, dial := f.serveReal(t, true, nil)
	c := dial()
	_, err := io.WriteString(c, f.holdRequest(f.etag(t), "50s"))
	require.NoError(t, err)
	f.waitHeld(t, 1)
	stopRun()
	assert.Equal(t, 0, controlplane.ParkedRequests(f.svc))
	got := string(readRaw(t, bufio.NewReader(c)))
	assert.Contains(t, got, "HTTP/1.1 304 Not Modified\r\n")
	assert.Contains(t, got, "\r\nConnection: close\r\n")
}

// TestParkedRevokedToken: a held request whose token is revoked during
// the wait gets no list when the list changes: it is answered as the next
// request is, 401, parked or holding its goroutine.
func TestParkedRevokedToken(t *testing.T) {
	for _, parking := range []bool{false, true} {
		t.Run(fmt.Sprintf("parking=%v", parking), func(t *testing.T) {
			f := newFixture(t)
			_, dial := f.serveReal(t, parking, nil)
			c := dial()
			etag := f.etag(t)
			_, err := io.WriteString(c, f.holdRequest(etag, "30s"))
			require.NoError(t, err)
			f.waitHeld(t, 1)
			id, err := controlplane.TokenID(f.read)
			require.NoError(t, err)
			_, err = f.svc.RevokeToken(context.Background(), f.account, id)
			require.NoError(t, err)
			f.available(t)
			br := bufio.NewReader(c)
			got := string(readRaw(t, br))
			assert.Contains(t, got, "HTTP/1.1 401 Unauthorized\r\n")
			assert.Contains(t, got, `Www-Authenticate: Bearer realm="certplane", error="invalid_token"`)
			assert.NotContains(t, got, "BEGIN CERTIFICATE", "no list for a revoked token")
			_, err = io.WriteString(c, f.holdRequest(etag, "30s"))
			require.NoError(t, err)
			assert.Contains(t, string(readRaw(t, br)), "HTTP/1.1 401 Unauthorized\r\n")
		})
	}
}

// TestNotParked: HTTP/1.0 and a request with a body hold their
// goroutine, and are answered as before.
func TestNotParked(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proto string
		extra string
	}{
		{"HTTP/1.0", "HTTP/1.0", ""},
		{"body", "HTTP/1.1", "Content-Length: 2\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			_, dial := f.serveReal(t, true, nil)
			c := dial()
			req := strings.Replace(f.holdRequest(f.etag(t), "30s", tc.extra), "HTTP/1.1", tc.proto, 1)
			if strings.Contains(tc.extra, "Content-Length") {
				req += "{}"
			}
			_, err := io.WriteString(c, req)
			require.NoError(t, err)
			f.waitHeld(t, 1)
			assert.Equal(t, 0, controlplane.ParkedRequests(f.svc))
			f.available(t)
			got := string(readRaw(t, bufio.NewReader(c)))
			assert.Contains(t, got, " 200 OK\r\n")
		})
	}
}

// TestParkedRequestLog: a parked request is logged once, when answered,
// with its status and account.
func TestParkedRequestLog(t *testing.T) {
	f := newFixture(t)
	_, dial := f.serveReal(t, true, nil)
	c := dial()
	_, err := io.WriteString(c, f.holdRequest(f.etag(t), "30s"))
	require.NoError(t, err)
	f.waitHeld(t, 1)
	f.waitParked(t, 1)
	f.available(t)
	readRaw(t, bufio.NewReader(c))
	var lines []map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(f.logs.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m))
		if m["@message"] == "request" && strings.Contains(fmt.Sprint(m["path"]), "/gateway/certificates") && m["status"] != nil {
			lines = append(lines, m)
		}
	}
	// The fixture's own GETs (f.etag, f.do) go through the recorder.
	var held []map[string]any
	for _, m := range lines {
		if m["status"] == float64(http.StatusOK) && m["duration"] != nil {
			held = append(held, m)
		}
	}
	require.NotEmpty(t, held)
	last := held[len(held)-1]
	assert.Equal(t, f.account, last["account"])
	assert.Equal(t, "GET", last["method"])
}

// TestNothingParksBeforeItIsAuthorized: a long-poll that fails a check
// (no or a wrong token, a bad wait, an unknown account, a stale copy) is
// answered at once, and nothing is held or parked for it: parking, which
// makes a held request cheap, is never offered to a client the endpoint
// refused.
func TestNothingParksBeforeItIsAuthorized(t *testing.T) {
	f := newFixture(t)
	_, dial := f.serveReal(t, true, nil)
	etag := f.etag(t)
	// The read token with its last character changed.
	last := "A"
	if strings.HasSuffix(f.read, last) {
		last = "B"
	}
	wrong := f.read[:len(f.read)-1] + last
	good := f.holdRequest(etag, "30s")
	for _, tc := range []struct {
		name, req, status string
	}{
		{"no token", strings.Replace(good, "Authorization: Bearer "+f.read+"\r\n", "", 1), "401"},
		{"not a bearer token", strings.Replace(good, "Bearer "+f.read, "Basic "+f.read, 1), "401"},
		{"wrong secret", strings.Replace(good, f.read, wrong, 1), "401"},
		{"a wait that is not a duration", f.holdRequest(etag, "soon"), "400"},
		{"another account", strings.Replace(good, f.account, strings.Repeat("0", len(f.account)), 1), "403"},
		{"a stale copy is answered with the list", f.holdRequest(`"stale"`, "30s"), "200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial()
			_, err := io.WriteString(c, tc.req)
			require.NoError(t, err)
			got := string(readRaw(t, bufio.NewReader(c)))
			assert.True(t, strings.HasPrefix(got, "HTTP/1.1 "+tc.status), "got %q, want status %s…", strings.SplitN(got, "\r\n", 2)[0], tc.status)
			assert.Equal(t, 0, controlplane.ParkedRequests(f.svc), "parked")
			assert.Equal(t, 0, f.svc.Hub().Waiting(f.account), "held")
		})
	}
}
