package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/stores"
	"github.com/certagent/certagent/trust/trusttest"
)

const (
	testAccount = "0123456789abcdef0123456789abcdef"
	testToken   = "read-token-123"
)

// failMode is how the fake control plane misbehaves.
type failMode string

const (
	failNone       failMode = ""
	fail500        failMode = "500"
	fail401        failMode = "401"
	fail403        failMode = "403"
	failHTML       failMode = "html"
	failTruncated  failMode = "truncated"
	failEmpty      failMode = "empty"
	failTimeout    failMode = "timeout"
	failNullResult failMode = "null-result"
	failBadPEM     failMode = "bad-pem"
	failBadFP      failMode = "bad-fingerprint"
	failSuccessF   failMode = "success-false-200"
)

// fakePlane speaks the list endpoint of the Cloudflare v4 API (envelope,
// Bearer auth, ETag/If-None-Match) with a mutable certificate list.
type fakePlane struct {
	t   testing.TB
	srv *httptest.Server

	mu    sync.Mutex
	certs []api.Certificate
	mode  failMode
	lists int
	// block is closed to release requests held by failTimeout.
	block chan struct{}
}

func newFakePlane(t testing.TB) *fakePlane {
	p := &fakePlane{t: t, block: make(chan struct{})}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(func() {
		p.mu.Lock()
		select {
		case <-p.block:
		default:
			close(p.block)
		}
		p.mu.Unlock()
		p.srv.Close()
	})
	return p
}

func (p *fakePlane) URL() string { return p.srv.URL + "/client/v4" }

func (p *fakePlane) setMode(m failMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
}

// add publishes ca with status and returns its id.
func (p *fakePlane) add(ca *trusttest.CA, status api.BindingStatus) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := fmt.Sprintf("00000000-0000-4000-8000-%012d", len(p.certs)+1)
	ca.Cert.ID = id
	p.certs = append(p.certs, api.Certificate{
		ID: id, BindingStatus: status, Certificate: string(ca.PEM()), Fingerprint: ca.FP.String(),
		Type: api.TypeGatewayManaged, ExpiresOn: api.Time{Time: ca.X509.NotAfter},
	})
	return id
}

func (p *fakePlane) setStatus(id string, s api.BindingStatus) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.certs {
		if p.certs[i].ID == id {
			p.certs[i].BindingStatus = s
			return
		}
	}
	p.t.Fatalf("no certificate %s", id)
}

func (p *fakePlane) remove(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.certs[:0]
	for _, c := range p.certs {
		if c.ID != id {
			out = append(out, c)
		}
	}
	p.certs = out
}

func (p *fakePlane) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	// A copy that is never nil: an empty account is [], not null.
	mode, certs := p.mode, append(make([]api.Certificate, 0, len(p.certs)), p.certs...)
	p.lists++
	block := p.block
	p.mu.Unlock()
	if r.URL.Path != "/client/v4/accounts/"+testAccount+"/gateway/certificates" || r.Method != http.MethodGet {
		http.Error(w, `{"success":false,"errors":[{"code":7000,"message":"No route for that URI"}],"messages":[],"result":null}`, http.StatusNotFound)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+testToken && mode != fail403 {
		mode = fail401
	}
	w.Header().Set("Date", time.Now().UTC().Format(http.TimeFormat))
	envelope := func(status int, body string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}
	switch mode {
	case fail500:
		envelope(500, `{"success":false,"errors":[{"code":10001,"message":"internal error"}],"messages":[],"result":null}`)
		return
	case fail401:
		envelope(401, `{"success":false,"errors":[{"code":10000,"message":"Authentication error"}],"messages":[],"result":null}`)
		return
	case fail403:
		envelope(403, `{"success":false,"errors":[{"code":10000,"message":"Authentication error"}],"messages":[],"result":null}`)
		return
	case failHTML:
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html><body>Please log in to the hotel wifi</body></html>")
		return
	case failEmpty:
		w.Header().Set("Content-Type", "application/json")
		return
	case failTimeout:
		select {
		case <-block:
		case <-r.Context().Done():
		}
		return
	case failNullResult:
		envelope(200, `{"success":true,"errors":[],"messages":[],"result":null}`)
		return
	case failSuccessF:
		envelope(200, `{"success":false,"errors":[{"code":1000,"message":"try later"}],"messages":[],"result":[]}`)
		return
	case failBadPEM, failBadFP:
		for i := range certs {
			if failBadPEM == mode {
				certs[i].Certificate = certs[i].Certificate[:len(certs[i].Certificate)/2]
			} else {
				certs[i].Fingerprint = strings.Repeat("AB:", 31) + "AB"
			}
		}
	}
	body, err := json.Marshal(api.Envelope{Success: true, Errors: []api.Message{}, Messages: []api.Message{}, Result: mustJSON(certs)})
	if err != nil {
		p.t.Errorf("fake plane: %v", err)
		return
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	if mode == failTruncated {
		envelope(200, string(body[:len(body)*2/3]))
		return
	}
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	envelope(200, string(body))
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// rig is an agent wired to a fake plane and fake stores.
type rig struct {
	t      testing.TB
	plane  *fakePlane
	cfg    *Config
	stores map[string]trust.Store
	hook   func(string) error
}

// newRig returns a rig with two fake stores: "one" (a single target) and
// "multi" (alice and bob).
func newRig(t testing.TB) *rig {
	r := &rig{t: t, plane: newFakePlane(t), stores: map[string]trust.Store{}}
	r.stores["one"] = trusttest.NewFake("one")
	r.stores["multi"] = trusttest.NewFake("multi", tA, tB)
	r.cfg = &Config{
		ControlPlaneURL: r.plane.URL(), AccountID: testAccount, APIToken: testToken,
		PollInterval: time.Minute, Stores: []string{"one", "multi"}, RemoveRetired: true,
		StateDir: t.TempDir(), LogLevel: "info",
	}
	return r
}

func (r *rig) fake(name string) *trusttest.Fake { return r.stores[name].(*trusttest.Fake) }

func (r *rig) open(spec string) (trust.Store, error) {
	if s, ok := r.stores[spec]; ok {
		return s, nil
	}
	if strings.HasPrefix(spec, "dir:") || strings.HasPrefix(spec, "bundle:") {
		s, err := stores.Open(spec, stores.Env{})
		if err == nil {
			r.stores[spec] = s
		}
		return s, err
	}
	return nil, fmt.Errorf("rig: no store %q: %w", spec, trust.ErrUnavailable)
}

// agent returns a fresh agent, as after a restart.
func (r *rig) agent() *Agent {
	r.t.Helper()
	a, err := New(r.cfg, Deps{OpenStore: r.open, hook: r.hook})
	require.NoError(r.t, err)
	return a
}

func (r *rig) sync(a *Agent) *PassReport {
	r.t.Helper()
	rep, err := a.SyncOnce(context.Background(), false)
	require.NoError(r.t, err)
	return rep
}

// holdings returns "store target fp-short" for every root every fake store
// holds, sorted, for exact comparisons.
func (r *rig) holdings(names map[trust.Fingerprint]string) []string {
	r.t.Helper()
	var out []string
	for _, name := range r.cfg.Stores {
		s := r.stores[name]
		if s == nil {
			continue
		}
		inv, err := s.List(context.Background())
		require.NoError(r.t, err)
		for _, e := range inv.Entries {
			n := names[e.FP]
			if n == "" {
				n = e.FP.Short()
			}
			out = append(out, fmt.Sprintf("%s %s %s", name, targetName(e.Target), n))
		}
	}
	sortStrings(out)
	return out
}

func (r *rig) ledger() *Ledger {
	r.t.Helper()
	l, err := LoadLedger(r.cfg.LedgerPath())
	require.NoError(r.t, err)
	return l
}

func (r *rig) applies() int {
	n := 0
	for _, s := range r.stores {
		if f, ok := s.(*trusttest.Fake); ok {
			n += f.Applies()
		}
	}
	return n
}

func ledgerStates(l *Ledger, names map[trust.Fingerprint]string) []string {
	var out []string
	for _, e := range l.Entries {
		out = append(out, fmt.Sprintf("%s %s %s=%s", e.Store, targetName(e.Target), names[e.FP], e.State))
	}
	sortStrings(out)
	return out
}

func sortStrings(s []string) { sort.Strings(s) }
