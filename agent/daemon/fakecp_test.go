package daemon

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust/trusttest"
)

const (
	testAccount = "0123456789abcdef0123456789abcdef"
	testToken   = "cpt_daemon_test_token_9f8e7d6c5b4a"
)

// fakeCP is an httptest server speaking the list endpoint of the
// Cloudflare v4 API, the way certplane and api.cloudflare.com do.
type fakeCP struct {
	srv   *httptest.Server
	mu    sync.Mutex
	certs []api.Certificate
	polls atomic.Int64
}

func newFakeCP(t *testing.T, cas ...*trusttest.CA) *fakeCP {
	t.Helper()
	f := &fakeCP{}
	for i, ca := range cas {
		f.certs = append(f.certs, certOf(ca, i == 0))
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func certOf(ca *trusttest.CA, inUse bool) api.Certificate {
	c := ca.Cert
	now := time.Now().UTC()
	return api.Certificate{
		ID: "5c1e2d3f-0000-4000-8000-" + c.FP.Hex()[:12], BindingStatus: api.StatusAvailable,
		Certificate: string(c.PEM()), Fingerprint: c.FP.String(), InUse: inUse,
		IssuerOrg: "certagent test", IssuerRaw: c.X509.Issuer.String(), Type: api.TypeGatewayManaged,
		CreatedAt: api.Time{Time: now}, UpdatedAt: api.Time{Time: now}, UploadedOn: api.Time{Time: now},
		ExpiresOn: api.Time{Time: c.X509.NotAfter},
	}
}

func (f *fakeCP) URL() string { return f.srv.URL + "/client/v4" }

func (f *fakeCP) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") != "Bearer "+testToken {
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(map[string]any{"success": false, "errors": []api.Message{{Code: 10000, Message: "Authentication error"}}, "messages": []any{}, "result": nil})
		return
	}
	if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/accounts/"+testAccount+"/gateway/certificates") {
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]any{"success": false, "errors": []api.Message{{Code: 7003, Message: "no route"}}, "messages": []any{}, "result": nil})
		return
	}
	f.polls.Add(1)
	f.mu.Lock()
	certs := append([]api.Certificate{}, f.certs...)
	f.mu.Unlock()
	json.NewEncoder(w).Encode(map[string]any{"success": true, "errors": []any{}, "messages": []any{}, "result": certs})
}
