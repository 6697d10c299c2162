package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// roundTripper answers every request with one canned response, so fuzzing
// exercises the client without sockets.
type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// FuzzDecodeEnvelope feeds arbitrary bodies, statuses and content types
// through the whole client path. It must never panic, and whatever it
// accepts as a list must be a real list whose every entry has a PEM.
func FuzzDecodeEnvelope(f *testing.F) {
	seeds := []struct {
		status int
		ct     string
		body   string
	}{
		{200, "application/json", ok(`[]`)},
		{200, "application/json", ok(`[{"id":"a","certificate":"x","binding_status":"active","created_at":"0001-01-01T00:00:00Z","qs_pack_id":"00000000-0000-0000-0000-000000000000"}]`)},
		{200, "application/json", ok(`[{"id":"a"}]`)},
		{200, "application/json", ok(`null`)},
		{200, "application/json", `{"success":true,"result":[],"result_info":{"page":1,"per_page":20,"count":0,"total_count":0}}`},
		{200, "application/json", `{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}`},
		{200, "", `{}`},
		{200, "", ``},
		{200, "text/html", htmlBody},
		{200, "application/json", ok(`[]`) + `}`},
		{200, "application/json", `{"success":true,"result":[{"id":"a","certificate":"x","created_at":"`},
		{401, "application/json", envelopeErr(10000, "Authentication error")},
		{429, "application/json", envelopeErr(2101, "rate")},
		{502, "text/html", htmlBody},
		{304, "", ``},
	}
	for _, s := range seeds {
		f.Add(s.status, s.ct, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, status int, ct string, body []byte) {
		if status < 100 || status > 599 {
			status = 200
		}
		hc := &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
			h := http.Header{}
			if ct != "" {
				h.Set("Content-Type", ct)
			}
			// A PEM fetch for an entry without one gets the same body;
			// whatever it is, List must not accept an entry without PEM.
			return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(bytes.NewReader(body)), Request: r}, nil
		})}
		c, err := NewClient("https://example.test/client/v4", testAccount, testToken, WithHTTPClient(hc))
		if err != nil {
			t.Fatal(err)
		}
		certs, err := c.List(context.Background())
		if err != nil {
			if certs != nil {
				t.Fatalf("error %v with %d certificates", err, len(certs))
			}
			if strings.Contains(err.Error(), testToken) {
				t.Fatalf("error leaks the token: %v", err)
			}
			return
		}
		if status < 200 || status > 299 {
			t.Fatalf("HTTP %d accepted as a list", status)
		}
		if certs == nil {
			t.Fatal("nil list without an error")
		}
		for i, cert := range certs {
			if strings.TrimSpace(cert.Certificate) == "" {
				t.Fatalf("certificate %d accepted without PEM", i)
			}
		}
		var env Envelope
		if err := json.Unmarshal(body, &env); err != nil || !env.Success {
			t.Fatalf("accepted a body that is not a successful envelope: %v", err)
		}
	})
}

// FuzzTime checks that every accepted timestamp survives a round trip.
func FuzzTime(f *testing.F) {
	for _, s := range []string{
		`"2025-01-16T03:11:03.381992Z"`, `"0001-01-01T00:00:00Z"`, `""`, `null`,
		`"2025-01-16T05:11:03+02:00"`, `"9999-12-31T23:59:59Z"`, `"0000-01-01T00:00:00Z"`,
		`"2025-01-16"`, `1`, `"\u0032025-01-16T03:11:03Z"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var a Time
		if err := json.Unmarshal(in, &a); err != nil {
			return
		}
		out, err := json.Marshal(a)
		if err != nil {
			t.Fatalf("accepted %q but cannot write it: %v", in, err)
		}
		var b Time
		if err := json.Unmarshal(out, &b); err != nil {
			t.Fatalf("%q wrote %s, which does not read back: %v", in, out, err)
		}
		if !a.Equal(b.Time) {
			t.Fatalf("%q: round trip %v → %s → %v", in, a.Time, out, b.Time)
		}
		if a.IsZero() != (a.Year() <= 1) {
			t.Fatalf("%q: zero-ness %v for year %d", in, a.IsZero(), a.Year())
		}
	})
}

// FuzzRetryAfter: any header gives a delay in [0, 24h].
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "120", "-1", "Sun, 29 Nov 2026 06:01:00 GMT", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, h string) {
		d := retryAfter(h, now)
		if d < 0 || d > 24*time.Hour {
			t.Fatalf("Retry-After %q gave %v", h, d)
		}
	})
}

// FuzzCheckID: an id checkID accepts must stay one path segment.
func FuzzCheckID(f *testing.F) {
	for _, s := range []string{"f174e90a-fafe-4643-bbbc-4a0ed4fc8415", "..", "a/b", "%2e%2e", "é"} {
		f.Add(s)
	}
	c, err := NewClient("https://example.test/client/v4", testAccount, "")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if checkID(id) != nil {
			return
		}
		req, err := c.newRequest(context.Background(), http.MethodGet, c.gatewayPath("certificates", id), nil, nil, nil)
		if err != nil {
			if errors.Is(err, ErrMalformed) {
				t.Fatal(err)
			}
			return
		}
		want := "/client/v4/accounts/" + testAccount + "/gateway/certificates/"
		if !strings.HasPrefix(req.URL.EscapedPath(), want) || strings.Contains(req.URL.EscapedPath()[len(want):], "/") {
			t.Fatalf("id %q requested %s", id, req.URL.EscapedPath())
		}
		if req.URL.Path != "/client/v4/accounts/"+testAccount+"/gateway/certificates/"+id {
			t.Fatalf("id %q decoded to %s", id, req.URL.Path)
		}
	})
}
