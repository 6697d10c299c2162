package postgres_test

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/seal"
	"github.com/certagent/certagent/controlplane/storage"
	"github.com/certagent/certagent/controlplane/storage/postgres"
	"github.com/certagent/certagent/controlplane/storage/postgres/pgtest"
	"github.com/certagent/certagent/controlplane/storage/sqlite"
)

// BenchmarkList304 is one agent's steady-state poll, the request a fleet
// sends most, served by the real handler without the network: bearer
// auth, one revision read, and a 304. Compare with BenchmarkBare304, the
// same request answered by a handler that does nothing.
func BenchmarkList304(b *testing.B) {
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			var backend storage.Backend
			var err error
			if kind == "sqlite" {
				backend, err = sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "c.db"))
			} else {
				backend, err = postgres.Open(b.Context(), pgtest.DSN(b))
			}
			require.NoError(b, err)
			b.Cleanup(func() { _ = backend.Close() })
			key := make([]byte, 32)
			_, _ = rand.Read(key)
			sealer, err := seal.New(key)
			require.NoError(b, err)
			svc, err := controlplane.New(backend, controlplane.Options{Sealer: sealer})
			require.NoError(b, err)
			acct, err := svc.CreateAccount(b.Context(), "bench")
			require.NoError(b, err)
			tok, err := svc.CreateToken(b.Context(), acct.ID, "read")
			require.NoError(b, err)
			h := svc.Handler(context.Background())
			url := "/client/v4/accounts/" + acct.ID + "/gateway/certificates"

			first := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, url, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			h.ServeHTTP(first, req)
			require.Equal(b, http.StatusOK, first.Code)
			etag := first.Header().Get("ETag")

			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					w := httptest.NewRecorder()
					r := httptest.NewRequest(http.MethodGet, url, nil)
					r.Header.Set("Authorization", "Bearer "+tok)
					r.Header.Set("If-None-Match", etag)
					h.ServeHTTP(w, r)
					if w.Code != http.StatusNotModified {
						b.Fatalf("got HTTP %d, want 304", w.Code)
					}
				}
			})
		})
	}
}

func BenchmarkBare304(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"0123abcd-1"`)
		w.WriteHeader(http.StatusNotModified)
	})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodGet, "/client/v4/accounts/x/gateway/certificates", nil)
			r.Header.Set("Authorization", "Bearer x")
			r.Header.Set("If-None-Match", `"0123abcd-1"`)
			h.ServeHTTP(w, r)
		}
	})
}
