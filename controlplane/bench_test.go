package controlplane_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/certagent/certagent/api"
)

// tenCertificates gives the fixture's account 10 certificates.
func tenCertificates(b *testing.B, f *fixture) {
	for i := 0; i < 9; i++ {
		f.available(b)
	}
	certs, _, err := f.svc.Rules().List(context.Background(), f.account)
	if err != nil || len(certs) != 10 {
		b.Fatalf("got %d certificates (%v), want 10", len(certs), err)
	}
}

// BenchmarkList is the handler alone: auth, one snapshot read, PEM and
// JSON encoding of 10 certificates.
func BenchmarkList(b *testing.B) {
	f := newFixture(b)
	tenCertificates(b, f)
	req := httptest.NewRequest("GET", f.gw("/certificates"), nil)
	req.Header.Set("Authorization", "Bearer "+f.read)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		f.handler.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

// BenchmarkListNotModified is an agent's steady-state poll: If-None-Match
// answered from the revision alone.
func BenchmarkListNotModified(b *testing.B) {
	f := newFixture(b)
	tenCertificates(b, f)
	first := httptest.NewRecorder()
	req := httptest.NewRequest("GET", f.gw("/certificates"), nil)
	req.Header.Set("Authorization", "Bearer "+f.read)
	f.handler.ServeHTTP(first, req)
	req.Header.Set("If-None-Match", first.Header().Get("ETag"))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		f.handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotModified {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

// BenchmarkListHTTP is the list over loopback HTTP through api.Client,
// including its JSON decoding.
func BenchmarkListHTTP(b *testing.B) {
	f := newFixture(b)
	tenCertificates(b, f)
	srv := httptest.NewServer(f.handler)
	defer srv.Close()
	c, err := api.NewClient(srv.URL+"/client/v4", f.account, f.read)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		certs, err := c.List(ctx)
		if err != nil || len(certs) != 10 {
			b.Fatalf("list: %d, %v", len(certs), err)
		}
	}
}

// BenchmarkGenerate is POST /certificates: key generation, self-signing,
// sealing, and the rule-checked insert. The clock moves 8 h per call so
// the daily limit never refuses.
func BenchmarkGenerate(b *testing.B) {
	for _, kt := range []string{"ecdsa-p256", "rsa-2048"} {
		b.Run(kt, func(b *testing.B) {
			f := newFixture(b)
			body := `{"key_type":"` + kt + `"}`
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				f.clock.Advance(8*time.Hour + time.Second)
				r := f.do(b, "POST", f.gw("/certificates"), f.write, body)
				if r.status != 200 {
					b.Fatalf("status %d: %s", r.status, r.body)
				}
			}
		})
	}
}
