package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder is a listener that answers every request with a valid, empty
// certificate list and records the Authorization header of each: any
// request it sees is one the client should not have made.
type recorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []string
}

func newRecorder(t *testing.T, addr string) *recorder {
	t.Helper()
	r := &recorder{}
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.seen = append(r.seen, req.Method+" "+req.URL.Path+" auth="+req.Header.Get("Authorization"))
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, ok(`[]`))
	}))
	r.srv.Listener.Close()
	r.srv.Listener = ln
	r.srv.Start()
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// TestRedirectsAreNeverFollowed: a 3xx to any request is a failed call
// with an error naming the Location, the client sends no second request,
// and the token reaches no other origin (Go resends Authorization to the
// same host on another port when it follows a redirect).
func TestRedirectsAreNeverFollowed(t *testing.T) {
	elsewhere := newRecorder(t, "127.0.0.1:0")
	otherHost := newRecorder(t, "127.0.0.2:0")
	var mu sync.Mutex
	originSeen := 0
	var location string
	var code int
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		originSeen++
		loc, status := location, code
		mu.Unlock()
		w.Header().Set("Location", loc)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, ok(`[]`)) // a body that would decode, were 3xx accepted
	}))
	t.Cleanup(origin.Close)
	_, originPort, err := net.SplitHostPort(strings.TrimPrefix(origin.URL, "http://"))
	require.NoError(t, err)
	_, elsewherePort, err := net.SplitHostPort(strings.TrimPrefix(elsewhere.srv.URL, "http://"))
	require.NoError(t, err)

	targets := map[string]string{
		"same origin":                 origin.URL + "/client/v4/accounts/" + testAccount + "/gateway/certificates?x=1",
		"same origin, relative":       "/client/v4/accounts/" + testAccount + "/gateway/certificates?x=1",
		"same host, other port":       elsewhere.srv.URL + "/client/v4/accounts/" + testAccount + "/gateway/certificates",
		"localhost, origin port":      "http://localhost:" + originPort + "/client/v4/accounts/" + testAccount + "/gateway/certificates",
		"localhost, other port":       "http://localhost:" + elsewherePort + "/client/v4/accounts/" + testAccount + "/gateway/certificates",
		"other host":                  otherHost.srv.URL + "/client/v4/accounts/" + testAccount + "/gateway/certificates",
		"https, same host other port": "https://127.0.0.1:" + elsewherePort + "/",
		"empty Location":              "",
	}
	ops := map[string]func(c *Client) error{
		"list": func(c *Client) error { _, err := c.List(context.Background()); return err },
		"long-poll": func(c *Client) error {
			_, err := c.ListIfChanged(context.Background(), `"etag"`, 5*time.Second)
			return err
		},
		"get":      func(c *Client) error { _, err := c.Get(context.Background(), "abc"); return err },
		"download": func(c *Client) error { _, err := c.Download(context.Background(), "abc", "pem"); return err },
		"activate": func(c *Client) error { _, err := c.Activate(context.Background(), "abc"); return err },
		"check-in": func(c *Client) error {
			_, err := c.CheckIn(context.Background(), "0123456789abcdef0123456789abcdef", "secret", CheckIn{Hostname: "h", OS: "linux"})
			return err
		},
		"readiness": func(c *Client) error { _, err := c.Readiness(context.Background(), "abc"); return err },
	}
	// The caller's client follows redirects by default; NewClient must not
	// inherit that.
	caller := &http.Client{Timeout: 10 * time.Second}
	c, err := NewClient(origin.URL+"/client/v4", testAccount, testToken, WithHTTPClient(caller))
	require.NoError(t, err)
	assert.Nil(t, caller.CheckRedirect, "the caller's client is left alone")

	for _, status := range []int{301, 302, 303, 307, 308} {
		for tname, target := range targets {
			for oname, op := range ops {
				t.Run(fmt.Sprintf("%d %s %s", status, tname, oname), func(t *testing.T) {
					mu.Lock()
					location, code, originSeen = target, status, 0
					mu.Unlock()
					err := op(c)
					require.Error(t, err)
					assert.True(t, errors.Is(err, ErrRedirect), "got %v, want ErrRedirect", err)
					assert.Equal(t, status, StatusCode(err))
					if target != "" {
						assert.Contains(t, err.Error(), target, "the error names the Location")
					}
					assert.Contains(t, err.Error(), "refused")
					assert.NotContains(t, err.Error(), testToken)
					mu.Lock()
					assert.Equal(t, 1, originSeen, "exactly one request: the redirect was not followed")
					mu.Unlock()
				})
			}
		}
	}
	assert.Empty(t, elsewhere.requests(), "no request (and no token) reached the other port")
	assert.Empty(t, otherHost.requests(), "no request (and no token) reached the other host")
}

// TestRedirectLocationIsRedacted: a Location that echoes the token does not
// carry it into the error (which reaches status.json and logs).
func TestRedirectLocationIsRedacted(t *testing.T) {
	r := newReplay(t, map[string]reply{
		"GET " + certsPath: {status: 302, header: map[string]string{"Location": "http://127.0.0.1:1/?t=" + testToken + "\u009b2J"}},
	})
	_, err := r.client(t).List(context.Background())
	require.ErrorIs(t, err, ErrRedirect)
	assert.NotContains(t, err.Error(), testToken)
	assert.NotContains(t, err.Error(), "\u009b")
	assert.Contains(t, err.Error(), "http://127.0.0.1:1/?t=REDACTED?2J")
}

// TestTransportErrorsNeverCarryTheToken: Go's client quotes a malformed
// header line it received; a server that echoes the token there must not
// get it into the error (status.json is world-readable, logs are kept).
func TestTransportErrorsNeverCarryTheToken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				buf := make([]byte, 4096)
				_, _ = conn.Read(buf)
				io.WriteString(conn, "HTTP/1.1 200 OK\r\nX-Echo: Bearer "+testToken+"\x1b\r\n\r\n")
			}()
		}
	}()
	c, err := NewClient("http://"+ln.Addr().String()+"/client/v4", testAccount, testToken)
	require.NoError(t, err)
	for name, call := range map[string]func() error{
		"list":     func() error { _, err := c.List(context.Background()); return err },
		"download": func() error { _, err := c.Download(context.Background(), "abc", "pem"); return err },
	} {
		err := call()
		require.Error(t, err, name)
		assert.NotContains(t, err.Error(), testToken, name)
		assert.Contains(t, err.Error(), "REDACTED", "%s: the error still says what was wrong", name)
	}
}
