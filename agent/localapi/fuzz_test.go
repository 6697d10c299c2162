//go:build !windows

package localapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/certagent/certagent/platform"
)

// FuzzServeHTTP throws arbitrary methods, paths and headers at the handler
// map as an unprivileged peer: it must never panic, never answer a write
// with success, and never let a write reach the backend.
func FuzzServeHTTP(f *testing.F) {
	for _, s := range [][3]string{
		{"GET", "/localapi/v0/status", ""}, {"POST", "/localapi/v0/sync", ""},
		{"POST", "/localapi/v0/sync?dry_run=1", "http://evil"}, {"POST", "/localapi/v0/purge", ""},
		{"GET", "/localapi/v0/../v0/sync", ""}, {"POST", "/localapi/v0/sync/", ""}, {"PUT", "/", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, method, path, origin string) {
		if !validMethod(method) || !strings.HasPrefix(path, "/") || strings.ContainsAny(path+origin, " \r\n\t\x00") {
			return
		}
		fb := &fakeBackend{}
		s := NewServer(fb, nil)
		req, err := http.NewRequest(method, "http://certagent.local"+path, nil)
		if err != nil {
			return
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		req = req.WithContext(context.WithValue(req.Context(), peerKey{}, platform.PeerCred{UID: 1000}))
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if fb.syncs.Load() != 0 || fb.purges.Load() != 0 {
			t.Fatalf("%s %s reached a write handler as uid 1000", method, path)
		}
		if origin != "" && rec.Code != http.StatusForbidden {
			t.Fatalf("%s %s with Origin answered %d", method, path, rec.Code)
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, r := range m {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}
