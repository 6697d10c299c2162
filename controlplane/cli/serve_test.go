package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/cli"
)

// rawExchange sends req over a fresh connection (TLS when cfg is set) and
// reads the answer. The request is written while the answer is read: a
// server may answer before it has read all of a huge request.
func rawExchange(t *testing.T, addr string, cfg *tls.Config, req []byte) (*http.Response, []byte) {
	t.Helper()
	var conn net.Conn
	var err error
	if cfg != nil {
		conn, err = tls.Dial("tcp", addr, cfg)
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))
	go conn.Write(req) //nolint:errcheck // the server may hang up mid-request
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body
}

// requireEnvelope checks an answer is the API's failure envelope with code.
func requireEnvelope(t *testing.T, resp *http.Response, body []byte, status, code int) {
	t.Helper()
	require.Equal(t, status, resp.StatusCode, "body: %s", body)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"), "body: %s", body)
	var env api.Envelope
	require.NoError(t, json.Unmarshal(body, &env), "body: %s", body)
	assert.False(t, env.Success)
	assert.Equal(t, "null", string(env.Result))
	require.NotEmpty(t, env.Errors, "body: %s", body)
	assert.Equal(t, code, env.Errors[0].Code, "body: %s", body)
	assert.NotEmpty(t, env.Errors[0].Message)
}

// errorRequests are requests net/http answers by itself, before any
// handler, and the envelope each must get.
func errorRequests(host string) []struct {
	name         string
	req          []byte
	status, code int
} {
	big := strings.Repeat("a", 2<<20)
	return []struct {
		name         string
		req          []byte
		status, code int
	}{
		{"2 MB header", []byte("GET /client/v4/accounts HTTP/1.1\r\nHost: " + host + "\r\nX-Big: " + big + "\r\n\r\n"), 431, controlplane.CodeHeaderTooLarge},
		{"header just over the limit", []byte("GET / HTTP/1.1\r\nHost: " + host + "\r\nX-Big: " + strings.Repeat("b", controlplane.MaxHeaderBytes+8192) + "\r\n\r\n"), 431, controlplane.CodeHeaderTooLarge},
		{"many small headers", []byte("GET / HTTP/1.1\r\nHost: " + host + "\r\n" + strings.Repeat("X-A: b\r\n", 20000) + "\r\n"), 431, controlplane.CodeHeaderTooLarge},
		{"garbage request line", []byte("GARBAGE\r\n\r\n"), 400, controlplane.CodeBadRequest},
		{"no Host on HTTP/1.1", []byte("GET /healthz HTTP/1.1\r\n\r\n"), 400, controlplane.CodeBadRequest},
		{"two Host headers", []byte("GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400, controlplane.CodeBadRequest},
		{"bad header line", []byte("GET /healthz HTTP/1.1\r\nHost: " + host + "\r\nno colon here\r\n\r\n"), 400, controlplane.CodeBadRequest},
		{"unknown transfer coding", []byte("POST /client/v4/x HTTP/1.1\r\nHost: " + host + "\r\nTransfer-Encoding: zstd\r\n\r\n"), 501, controlplane.CodeBadRequest},
		{"HTTP/2 preface on HTTP/1.1", []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 400, controlplane.CodeBadRequest},
		{"unknown expectation", []byte("GET /healthz HTTP/1.1\r\nHost: " + host + "\r\nExpect: teapot\r\n\r\n"), 417, controlplane.CodeBadRequest},
	}
}

// TestServeAnswersEveryErrorWithTheEnvelope talks raw TCP to a real
// `certplane serve`: what net/http would answer in plain text (431, 400,
// 501) is the JSON envelope, and so are the handlers' own refusals.
func TestServeAnswersEveryErrorWithTheEnvelope(t *testing.T) {
	s := startServer(t, t.TempDir(), &offsetClock{}, "1s")
	addr := strings.TrimSuffix(strings.TrimPrefix(s.url, "http://"), "/client/v4")
	for _, tc := range errorRequests(addr) {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawExchange(t, addr, nil, tc.req)
			requireEnvelope(t, resp, body, tc.status, tc.code)
		})
	}
	t.Run("a large header under the limit is served", func(t *testing.T) {
		resp, body := rawExchange(t, addr, nil, []byte("GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\nX-Big: "+strings.Repeat("c", 40<<10)+"\r\nConnection: close\r\n\r\n"))
		require.Equal(t, 200, resp.StatusCode, "%s", body)
	})
	handlerErrors := []struct {
		name, method, path, body string
		status, code             int
	}{
		{"unknown route", "GET", "/client/v4/nope", "", 404, controlplane.CodeNotFound},
		{"outside the API", "GET", "/", "", 404, controlplane.CodeNotFound},
		{"method not allowed", "PUT", "/client/v4/accounts/0123456789abcdef0123456789abcdef/gateway/certificates", "{}", 405, controlplane.CodeMethodNotAllowed},
		{"no token", "POST", "/client/v4/accounts/0123456789abcdef0123456789abcdef/gateway/certificates", "{", 401, controlplane.CodeAuth},
	}
	for _, tc := range handlerErrors {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.method + " " + tc.path + " HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\nContent-Length: " +
				strconv.Itoa(len(tc.body)) + "\r\n\r\n" + tc.body
			resp, body := rawExchange(t, addr, nil, []byte(req))
			requireEnvelope(t, resp, body, tc.status, tc.code)
		})
	}
}

// TestServeChecksBeforeItCreates: a refused flag, a missing TLS file, a
// taken port or a bad --db leaves no seal key behind and never logs
// "listening"; a flag error prints the command's usage once.
func TestServeChecksBeforeItCreates(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	tests := []struct {
		name      string
		args      []string
		code      int
		wantInErr string
	}{
		{"missing TLS files", []string{"--tls-cert", "/nonexistent/tls.crt", "--tls-key", "/nonexistent/tls.key"}, 1, "/nonexistent/tls.crt"},
		{"port taken", []string{"--listen", taken.Addr().String()}, 1, "listen " + taken.Addr().String()},
		{"bad db", []string{"--db", "mysql://x"}, 2, "want sqlite:PATH or postgres://"},
		{"bad log level", []string{"--log-level", "loud"}, 2, "--log-level"},
		{"unknown flag", []string{"--bogus"}, 2, "flag provided but not defined: -bogus"},
		{"tls cert without key", []string{"--tls-cert", "x"}, 2, "go together"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var stdout, stderr bytes.Buffer
			args := append([]string{"serve", "--data-dir", dir}, tc.args...)
			if !strings.Contains(strings.Join(tc.args, " "), "--listen") {
				args = append(args, "--listen", "127.0.0.1:0")
			}
			code := cli.Main(context.Background(), args, cli.Env{Stdout: &stdout, Stderr: &stderr})
			assert.Equal(t, tc.code, code, "stderr: %s", stderr.String())
			assert.Contains(t, stderr.String(), tc.wantInErr)
			assert.NotContains(t, stderr.String(), "listening")
			_, err := os.Stat(filepath.Join(dir, "seal.key"))
			assert.True(t, os.IsNotExist(err), "seal.key created before the flags were checked")
			if tc.code == 2 {
				assert.Equal(t, 1, strings.Count(stderr.String(), "Usage:"), "usage printed once:\n%s", stderr.String())
			}
			if tc.name == "unknown flag" {
				assert.NotContains(t, stderr.String(), "certplane: a self-hosted", "the whole help on a serve flag error")
			}
		})
	}
}

// TestServeWarnsOnPlainHTTPBeyondLoopback: listening on every interface
// without TLS says so in a warning; on loopback it does not.
func TestServeWarnsOnPlainHTTPBeyondLoopback(t *testing.T) {
	for _, tc := range []struct {
		listen string
		warn   bool
	}{{"127.0.0.1:0", false}, {"0.0.0.0:0", true}} {
		t.Run(tc.listen, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			logs := &lockedBuffer{}
			ready := make(chan net.Addr, 1)
			done := make(chan int, 1)
			go func() {
				done <- cli.Main(ctx, []string{"serve", "--listen", tc.listen, "--data-dir", t.TempDir()},
					cli.Env{Stdout: logs, Stderr: logs, Ready: func(a net.Addr) { ready <- a }})
			}()
			select {
			case <-ready:
			case code := <-done:
				t.Fatalf("serve exited %d: %s", code, logs.String())
			}
			cancel()
			require.Equal(t, 0, <-done, "%s", logs.String())
			assert.Equal(t, tc.warn, strings.Contains(logs.String(), "serving plain HTTP on a non-loopback address"), "logs:\n%s", logs.String())
		})
	}
}

// TestServeStopsWithParkedLongPolls: `certplane serve` holding long-polls
// (parked, without goroutines) stops cleanly: each held request is
// answered 304 with Connection: close and its connection closed, and
// serve returns 0 (startServer's stop checks the exit code).
func TestServeStopsWithParkedLongPolls(t *testing.T) {
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "certplane.db")
	srv := startServer(t, dir, &offsetClock{}, "1s")
	account := runCLI(t, "account", "create", "--db", db, "--data-dir", dir, "--name", "acme")
	tok := runCLI(t, "token", "create", "--db", db, "--data-dir", dir, "--account", account, "--scope", "read")
	first, err := newClient(t, srv.url, account, tok).ListIfChanged(context.Background(), "", 0)
	require.NoError(t, err)
	addr := strings.TrimSuffix(strings.TrimPrefix(srv.url, "http://"), "/client/v4")
	req := "GET /client/v4/accounts/" + account + "/gateway/certificates?wait=50s HTTP/1.1\r\nHost: " + addr +
		"\r\nAuthorization: Bearer " + tok + "\r\nIf-None-Match: " + first.ETag + "\r\n\r\n"
	const n = 50
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
		_, err = io.WriteString(c, req)
		require.NoError(t, err)
		conns[i] = c
	}
	// Not a timing assertion: a request read after the stop began is
	// answered the same way (304, Connection: close); the pause only makes
	// the requests parked ones, which is what this test is about.
	time.Sleep(200 * time.Millisecond)
	srv.stop()
	for _, c := range conns {
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusNotModified, resp.StatusCode)
		assert.True(t, resp.Close, "answered with Connection: close")
		_, err = br.ReadByte()
		assert.ErrorIs(t, err, io.EOF, "the connection is closed")
	}
	assert.Contains(t, srv.logs.String(), "stopped")
}
