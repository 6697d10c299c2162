package controlplane

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A client that does not read its parked answer is given up after
// parkedWriteTimeout, and the error says so (done then closes it).
func TestParkedAnswerWriteDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		server, client := net.Pipe()
		defer client.Close()
		defer server.Close()
		a := answer{status: http.StatusOK, header: http.Header{"Etag": {`"x"`}}, body: []byte(strings.Repeat("x", 100))}
		err := a.writeTo(server, false)
		require.Error(t, err)
		assert.True(t, errors.Is(err, os.ErrDeadlineExceeded), "got %v, want a deadline error", err)
	})
}

// The answer's framing: Content-Length up to chunkingSize, one chunk
// above it, none for a 304; Connection: close before Transfer-Encoding.
func TestAnswerFraming(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		body    int
		closing bool
		want    string
	}{
		{"small", 200, 3, false, "HTTP/1.1 200 OK\r\nEtag: \"x\"\r\nDate: D\r\nContent-Length: 3\r\n\r\nxxx"},
		{"at the limit", 200, chunkingSize, false, "HTTP/1.1 200 OK\r\nEtag: \"x\"\r\nDate: D\r\nContent-Length: 2048\r\n\r\n" + strings.Repeat("x", chunkingSize)},
		{"chunked, closing", 200, chunkingSize + 1, true, "HTTP/1.1 200 OK\r\nEtag: \"x\"\r\nDate: D\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n801\r\n" + strings.Repeat("x", chunkingSize+1) + "\r\n0\r\n\r\n"},
		{"304", 304, 0, false, "HTTP/1.1 304 Not Modified\r\nEtag: \"x\"\r\nDate: D\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := net.Pipe()
			defer client.Close()
			a := answer{status: tc.status, header: http.Header{"Etag": {`"x"`}}, body: []byte(strings.Repeat("x", tc.body))}
			errc := make(chan error, 1)
			go func() { errc <- a.writeTo(server, tc.closing); server.Close() }()
			got, err := io.ReadAll(client)
			require.NoError(t, err)
			require.NoError(t, <-errc)
			gotS := dateRe(string(got))
			assert.Equal(t, tc.want, gotS)
		})
	}
}

// dateRe replaces the Date header's value with D.
func dateRe(s string) string {
	head, rest, ok := strings.Cut(s, "\r\nDate: ")
	if !ok {
		return s
	}
	_, rest, _ = strings.Cut(rest, "\r\n")
	return head + "\r\nDate: D\r\n" + rest
}
