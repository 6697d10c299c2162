package agent

import (
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

// The hostile-answer catalogue: a control plane (or whatever answers in its
// place) that redirects, refuses, breaks its envelope or lists certificates
// that must not be trusted. Every case starts from an agent that installed
// A and B from a good answer, then asks again, as the running agent and as
// one just restarted. Were the agent to believe the answer, A would be
// removed and X installed; it must do neither, say why, and send the token
// to no listener but the configured origin.

// tokenWitness is a listener that answers like a control plane listing only
// X (so a followed redirect would install it) and records every
// Authorization header it is sent.
type tokenWitness struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []string
}

func newTokenWitness(t *testing.T, addr string, body func() string) *tokenWitness {
	t.Helper()
	w := &tokenWitness{}
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	w.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		w.seen = append(w.seen, r.Method+" "+r.URL.Path+" Authorization="+r.Header.Get("Authorization"))
		w.mu.Unlock()
		rw.Header().Set("Content-Type", "application/json")
		io.WriteString(rw, body())
	}))
	w.srv.Listener.Close()
	w.srv.Listener = ln
	w.srv.Start()
	t.Cleanup(w.srv.Close)
	return w
}

func (w *tokenWitness) requests() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.seen...)
}

// hostileEnv is one case's world: an origin whose answer the case picks,
// two witnesses (same host other port, other host), an agent with two fake
// stores and a real dir: store.
type hostileEnv struct {
	t   *testing.T
	rig *rig
	dir string
	// A and B are installed by the good answer; X is what a hostile answer
	// tries to get installed.
	A, B, X *trusttest.CA
	names   map[trust.Fingerprint]string

	origin            *httptest.Server
	sameHost, farHost *tokenWitness

	mu sync.Mutex
	// serve answers the origin's requests; nil means the good answer.
	serve func(e *hostileEnv, w http.ResponseWriter, r *http.Request)
	// redirected counts requests to the origin's /redirected path (a
	// same-origin redirect target).
	redirected int
	// hung is signalled by a handler that will not answer.
	hung chan struct{}
	stop chan struct{}
}

func cert(ca *trusttest.CA, id string, status api.BindingStatus) api.Certificate {
	return api.Certificate{
		ID: id, BindingStatus: status, Certificate: string(ca.PEM()), Fingerprint: ca.FP.String(),
		Type: api.TypeGatewayManaged, ExpiresOn: api.Time{Time: ca.X509.NotAfter},
	}
}

func listBody(certs ...api.Certificate) string {
	if certs == nil {
		certs = []api.Certificate{}
	}
	b, err := json.Marshal(api.Envelope{Success: true, Errors: []api.Message{}, Messages: []api.Message{}, Result: mustJSON(certs)})
	if err != nil {
		panic(err)
	}
	return string(b)
}

const (
	idA = "00000000-0000-4000-8000-00000000000a"
	idB = "00000000-0000-4000-8000-00000000000b"
	idX = "00000000-0000-4000-8000-00000000000c"
)

func newHostileEnv(t *testing.T) *hostileEnv {
	cas := trusttest.NewCAs(t, 3)
	e := &hostileEnv{t: t, A: cas[0], B: cas[1], X: cas[2], hung: make(chan struct{}, 4), stop: make(chan struct{})}
	e.names = map[trust.Fingerprint]string{e.A.FP: "A", e.B.FP: "B", e.X.FP: "X"}
	onlyX := func() string { return listBody(cert(e.X, idX, api.StatusAvailable)) }
	e.sameHost = newTokenWitness(t, "127.0.0.1:0", onlyX)
	e.farHost = newTokenWitness(t, "127.0.0.2:0", onlyX)
	e.origin = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		serve := e.serve
		if strings.HasPrefix(r.URL.Path, "/redirected") {
			e.redirected++
			serve = func(e *hostileEnv, w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, onlyX()) }
		}
		e.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			writeJSON(w, 401, `{"success":false,"errors":[{"code":10000,"message":"Authentication error"}],"messages":[],"result":null}`)
			return
		}
		if serve == nil {
			writeJSON(w, 200, listBody(cert(e.A, idA, api.StatusAvailable), cert(e.B, idB, api.StatusAvailable)))
			return
		}
		serve(e, w, r)
	}))
	t.Cleanup(func() { close(e.stop); e.origin.Close() })

	e.rig = newRig(t)
	e.dir = filepath.Join(t.TempDir(), "anchors")
	e.rig.cfg.ControlPlaneURL = e.origin.URL + "/client/v4"
	e.rig.cfg.Stores = []string{"one", "multi", "dir:" + e.dir}
	return e
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// withdrawAAddX is the answer the hostile cases distort: A withdrawn, B
// kept, X new.
func (e *hostileEnv) withdrawAAddX() []api.Certificate {
	return []api.Certificate{cert(e.A, idA, api.StatusInactive), cert(e.B, idB, api.StatusAvailable), cert(e.X, idX, api.StatusAvailable)}
}

// keepAB is the good answer plus extra entries.
func (e *hostileEnv) keepAB(extra ...api.Certificate) []api.Certificate {
	return append([]api.Certificate{cert(e.A, idA, api.StatusAvailable), cert(e.B, idB, api.StatusAvailable)}, extra...)
}

// hang blocks the handler until the client gives up, after telling the test
// it is hanging.
func (e *hostileEnv) hang(r *http.Request) {
	e.hung <- struct{}{}
	select {
	case <-r.Context().Done():
	case <-e.stop:
	}
}

// Location targets of the redirect cases.
func (e *hostileEnv) location(kind string) string {
	_, originPort, _ := net.SplitHostPort(e.origin.Listener.Addr().String())
	_, otherPort, _ := net.SplitHostPort(e.sameHost.srv.Listener.Addr().String())
	path := "/client/v4/accounts/" + testAccount + "/gateway/certificates"
	switch kind {
	case "same host same port":
		return e.origin.URL + "/redirected" + path
	case "same host other port":
		return e.sameHost.srv.URL + path
	case "localhost same port":
		return "http://localhost:" + originPort + "/redirected" + path
	case "localhost other port":
		return "http://localhost:" + otherPort + path
	case "other host":
		return e.farHost.srv.URL + path
	case "relative":
		return "/redirected" + path
	}
	panic(kind)
}

// outcome is what a hostile case must produce.
type outcome int

const (
	// failStatic: the fetch failed; nothing changes, the error says why.
	failStatic outcome = iota
	// rejectedX: the answer is valid, X is refused by the policy (the
	// reason says why), A and B stay.
	rejectedX
	// withheldX: X's status is not one that is installed.
	withheldX
	// installsX: a control: the answer is good and X is installed.
	installsX
)

type hostileCase struct {
	name  string
	serve func(e *hostileEnv, w http.ResponseWriter, r *http.Request)
	want  outcome
	// text is in the fetch error (failStatic), the rejection reason
	// (rejectedX), or the withheld status (withheldX).
	text string
	// freshOnly: only a restarted agent (no ETag) gets this answer.
	freshOnly bool
	// hangs: the server never answers; the test cancels the pass once it
	// is hanging (no timers).
	hangs bool
	// setup, when set, changes the agent's config before the hostile pass.
	setup func(e *hostileEnv)
}

func reply(status int, body string) func(*hostileEnv, http.ResponseWriter, *http.Request) {
	return func(e *hostileEnv, w http.ResponseWriter, r *http.Request) { writeJSON(w, status, body) }
}

func answerCerts(build func(e *hostileEnv) []api.Certificate) func(*hostileEnv, http.ResponseWriter, *http.Request) {
	return func(e *hostileEnv, w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, listBody(build(e)...)) }
}

func envErr(code int, msg string) string {
	return fmt.Sprintf(`{"success":false,"errors":[{"code":%d,"message":%q}],"messages":[],"result":null}`, code, msg)
}

func hostileCases() []hostileCase {
	var cases []hostileCase
	for _, code := range []int{301, 302, 303, 307, 308} {
		for _, kind := range []string{"same host same port", "same host other port", "localhost same port", "localhost other port", "other host", "relative"} {
			cases = append(cases, hostileCase{
				name: fmt.Sprintf("%d to %s", code, kind),
				serve: func(e *hostileEnv, w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Location", e.location(kind))
					writeJSON(w, code, listBody(e.withdrawAAddX()...))
				},
				text: fmt.Sprintf("HTTP %d: redirect to ", code),
			})
		}
	}
	cases = append(cases,
		hostileCase{name: "302 without Location", serve: reply(302, ""), text: "redirect to (no Location) refused"},
		hostileCase{name: "300 multiple choices", serve: func(e *hostileEnv, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", e.location("same host other port"))
			writeJSON(w, 300, "")
		}, text: "HTTP 300: redirect to http://127.0.0.1:"},
		hostileCase{name: "304 to a request without If-None-Match", serve: reply(304, ""), text: "304 Not Modified to a request without If-None-Match", freshOnly: true},

		hostileCase{name: "400", serve: reply(400, envErr(1001, "bad request")), text: "HTTP 400"},
		hostileCase{name: "401", serve: reply(401, envErr(10000, "Authentication error")), text: "HTTP 401"},
		hostileCase{name: "403", serve: reply(403, envErr(10000, "Authentication error")), text: "HTTP 403"},
		hostileCase{name: "404", serve: reply(404, envErr(7003, "Could not route")), text: "HTTP 404"},
		hostileCase{name: "429 with Retry-After", serve: func(e *hostileEnv, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "120")
			writeJSON(w, 429, envErr(10429, "rate limited"))
		}, text: "retry after 2m0s"},
		hostileCase{name: "500", serve: reply(500, envErr(10001, "internal")), text: "HTTP 500"},
		hostileCase{name: "502 HTML from a proxy", serve: func(e *hostileEnv, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(502)
			io.WriteString(w, "<html><body>Bad gateway</body></html>")
		}, text: "HTML body"},
		hostileCase{name: "503", serve: reply(503, envErr(10503, "unavailable")), text: "HTTP 503"},
		hostileCase{name: "504 empty", serve: reply(504, ""), text: "HTTP 504"},
		hostileCase{name: "500 with a success envelope", serve: func(e *hostileEnv, w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 500, listBody(e.withdrawAAddX()...))
		}, text: "HTTP 500"},

		hostileCase{name: "HTML 200 (captive portal)", serve: func(e *hostileEnv, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, "<html><body>Log in to the hotel wifi</body></html>")
		}, text: "not JSON"},
		hostileCase{name: "truncated JSON", serve: func(e *hostileEnv, w http.ResponseWriter, r *http.Request) {
			b := listBody(e.withdrawAAddX()...)
			writeJSON(w, 200, b[:len(b)*2/3])
		}, text: "not a v4 envelope"},
		hostileCase{name: "empty body", serve: reply(200, ""), text: "empty body"},
		hostileCase{name: "whitespace body", serve: reply(200, " \n"), text: "empty body"},
		hostileCase{name: "empty object", serve: reply(200, "{}"), text: "neither success nor errors"},
		hostileCase{name: "success without result", serve: reply(200, `{"success":true,"errors":[],"messages":[]}`), text: "without a result"},
		hostileCase{name: "result null", serve: reply(200, `{"success":true,"errors":[],"messages":[],"result":null}`), text: "result is null"},
		hostileCase{name: "result an object", serve: reply(200, `{"success":true,"errors":[],"messages":[],"result":{"id":"x"}}`), text: "result"},
		hostileCase{name: "result a string", serve: reply(200, `{"success":true,"errors":[],"messages":[],"result":"[]"}`), text: "result"},
		hostileCase{name: "success false with 200", serve: reply(200, `{"success":false,"errors":[{"code":1000,"message":"try later"}],"messages":[],"result":[]}`), text: "1000 try later"},
		hostileCase{name: "success false with 200, no errors", serve: reply(200, `{"success":false,"errors":[],"messages":[],"result":[]}`), text: "no errors"},
		hostileCase{name: "trailing second envelope", serve: func(e *hostileEnv, w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, listBody(e.keepAB()...)+listBody(e.withdrawAAddX()...))
		}, text: "trailing data"},
		hostileCase{name: "oversized body", serve: func(e *hostileEnv, w http.ResponseWriter, r *http.Request) {
			c := cert(e.X, idX, api.StatusAvailable)
			c.IssuerRaw = strings.Repeat("A", api.MaxResponseBytes)
			writeJSON(w, 200, listBody(c))
		}, text: "larger than"},
		hostileCase{name: "valid JSON labelled text/plain", serve: func(e *hostileEnv, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, listBody(e.withdrawAAddX()...))
		}, text: "want application/json"},
		hostileCase{name: "valid JSON labelled text/html", serve: func(e *hostileEnv, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, listBody(e.withdrawAAddX()...))
		}, text: "not JSON"},
		hostileCase{name: "malformed header echoing the token", serve: func(e *hostileEnv, w http.ResponseWriter, r *http.Request) {
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			buf.WriteString("HTTP/1.1 200 OK\r\nX-Echo: " + r.Header.Get("Authorization") + "\x1b\r\n\r\n")
			buf.Flush()
		}, text: "malformed MIME header"},
		hostileCase{name: "hung server", serve: func(e *hostileEnv, w http.ResponseWriter, r *http.Request) { e.hang(r) }, text: "context canceled", hangs: true},
		hostileCase{name: "slow body cut short", serve: func(e *hostileEnv, w http.ResponseWriter, r *http.Request) {
			b := listBody(e.withdrawAAddX()...)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(200)
			io.WriteString(w, b[:len(b)/2])
			w.(http.Flusher).Flush()
			e.hang(r)
		}, text: "context canceled", hangs: true},

		hostileCase{name: "fingerprint mismatch", serve: answerCerts(func(e *hostileEnv) []api.Certificate {
			x := cert(e.X, idX, api.StatusAvailable)
			x.Fingerprint = e.A.FP.String()
			return append(e.withdrawAAddX()[:2], x)
		}), text: "claimed fingerprint"},
		hostileCase{name: "fingerprint garbage", serve: answerCerts(func(e *hostileEnv) []api.Certificate {
			x := cert(e.X, idX, api.StatusAvailable)
			x.Fingerprint = "not-a-fingerprint"
			return append(e.withdrawAAddX()[:2], x)
		}), text: "integrity"},
		hostileCase{name: "PEM cut in half", serve: answerCerts(func(e *hostileEnv) []api.Certificate {
			x := cert(e.X, idX, api.StatusAvailable)
			x.Certificate = x.Certificate[:len(x.Certificate)/2]
			return append(e.withdrawAAddX()[:2], x)
		}), text: "integrity"},
		hostileCase{name: "two certificates in one entry", serve: answerCerts(func(e *hostileEnv) []api.Certificate {
			x := cert(e.X, idX, api.StatusAvailable)
			x.Certificate += string(e.A.PEM())
			x.Fingerprint = ""
			return append(e.withdrawAAddX()[:2], x)
		}), text: "integrity"},
		hostileCase{name: "duplicate ids", serve: answerCerts(func(e *hostileEnv) []api.Certificate {
			return append(e.withdrawAAddX()[:2], cert(e.X, idB, api.StatusAvailable))
		}), text: "listed twice"},
		hostileCase{name: "more than 15 deployed", serve: answerCerts(func(e *hostileEnv) []api.Certificate {
			out := e.withdrawAAddX()
			for i, ca := range trusttest.NewCAs(e.t, trust.MaxAvailable) {
				out = append(out, cert(ca, fmt.Sprintf("00000000-0000-4000-8000-1000000000%02d", i), api.StatusAvailable))
			}
			return out
		}), text: "more than the 15"},
		hostileCase{name: "PEM missing, GET 404", serve: func(e *hostileEnv, w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/certificates") {
				x := cert(e.X, idX, api.StatusAvailable)
				x.Certificate = ""
				writeJSON(w, 200, listBody(append(e.withdrawAAddX()[:2], x)...))
				return
			}
			writeJSON(w, 404, envErr(7003, "no such certificate"))
		}, text: "HTTP 404"},
		hostileCase{name: "PEM missing, GET redirected to another port", serve: func(e *hostileEnv, w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/certificates") {
				x := cert(e.X, idX, api.StatusAvailable)
				x.Certificate = ""
				writeJSON(w, 200, listBody(append(e.withdrawAAddX()[:2], x)...))
				return
			}
			w.Header().Set("Location", e.sameHost.srv.URL+"/x")
			writeJSON(w, 307, "")
		}, text: "HTTP 307: redirect to http://127.0.0.1:"},
		hostileCase{name: "PEM missing, id escapes the path", serve: answerCerts(func(e *hostileEnv) []api.Certificate {
			x := cert(e.X, "../../../x", api.StatusAvailable)
			x.Certificate = ""
			return append(e.withdrawAAddX()[:2], x)
		}), text: "bad certificate id"},

		hostileCase{name: "not a CA", want: rejectedX, text: "not a CA", serve: answerCerts(func(e *hostileEnv) []api.Certificate {
			return e.keepAB(cert(trusttest.NewCA(e.t, trusttest.NotCA()), idX, api.StatusAvailable))
		})},
		hostileCase{name: "TLS leaf of A", want: rejectedX, text: "not a CA", serve: answerCerts(func(e *hostileEnv) []api.Certificate {
			return e.keepAB(cert(e.A.Issue(e.t), idX, api.StatusAvailable))
		})},
		hostileCase{name: "expired", want: rejectedX, text: "expired", serve: answerCerts(func(e *hostileEnv) []api.Certificate {
			return e.keepAB(cert(trusttest.NewCA(e.t, trusttest.Expired()), idX, api.StatusAvailable))
		})},
		hostileCase{name: "not yet valid", want: rejectedX, text: "not valid until", serve: answerCerts(func(e *hostileEnv) []api.Certificate {
			return e.keepAB(cert(trusttest.NewCA(e.t, trusttest.NotYetValid()), idX, api.StatusAvailable))
		})},
		hostileCase{name: "weak RSA key", want: rejectedX, text: "weak key", serve: answerCerts(func(e *hostileEnv) []api.Certificate {
			return e.keepAB(cert(trusttest.NewCA(e.t, trusttest.WithRSA(1024)), idX, api.StatusAvailable))
		})},
		hostileCase{name: "weak curve", want: rejectedX, text: "weak key", serve: answerCerts(func(e *hostileEnv) []api.Certificate {
			return e.keepAB(cert(trusttest.NewCA(e.t, trusttest.WithECDSA(elliptic.P224())), idX, api.StatusAvailable))
		})},
		hostileCase{name: "SHA-1 signature", want: rejectedX, text: "SHA-1", serve: answerCerts(func(e *hostileEnv) []api.Certificate {
			return e.keepAB(cert(trusttest.NewCA(e.t, trusttest.WithSHA1()), idX, api.StatusAvailable))
		})},
		hostileCase{name: "key usage without certSign", want: rejectedX, text: "keyCertSign missing", serve: answerCerts(func(e *hostileEnv) []api.Certificate {
			ku := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
			return e.keepAB(cert(trusttest.NewCA(e.t, trusttest.WithRSA(2048), trusttest.WithKeyUsage(ku)), idX, api.StatusAvailable))
		})},
		hostileCase{name: "retired fingerprint", want: rejectedX, text: "retired",
			setup: func(e *hostileEnv) { e.rig.cfg.RetiredFingerprints = []trust.Fingerprint{e.X.FP} },
			serve: answerCerts(func(e *hostileEnv) []api.Certificate { return e.keepAB(cert(e.X, idX, api.StatusAvailable)) }),
		},
	)
	for _, s := range []string{"ACTIVE", "Available", "availble", "installed", "deployed", "", "pending_deployment", "inactive", "pending_deletion"} {
		cases = append(cases, hostileCase{name: fmt.Sprintf("status %q", s), want: withheldX, text: s, serve: answerCerts(func(e *hostileEnv) []api.Certificate {
			return e.keepAB(cert(e.X, idX, api.BindingStatus(s)))
		})})
	}
	cases = append(cases,
		hostileCase{name: "control: legacy active spelling installs", want: installsX, serve: answerCerts(func(e *hostileEnv) []api.Certificate {
			return e.keepAB(cert(e.X, idX, api.StatusActive))
		})},
		hostileCase{name: "control: available installs", want: installsX, serve: answerCerts(func(e *hostileEnv) []api.Certificate {
			return e.keepAB(cert(e.X, idX, api.StatusAvailable))
		})},
	)
	return cases
}

// TestHostileAnswers runs the catalogue. Each case: no install, no removal
// (A and B stay in every store and the ledger is byte for byte the same), a
// clear error, and no request (so no token) at any listener but the origin.
func TestHostileAnswers(t *testing.T) {
	cases := hostileCases()
	require.GreaterOrEqual(t, len(cases), 50)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newHostileEnv(t)
			a := e.rig.agent()
			rep := e.rig.sync(a)
			require.False(t, rep.Failed(), "the good answer installs: %+v", rep.Fetch)
			d := "dir:" + e.dir
			wantHoldings := []string{
				d + " - A", d + " - B", "multi alice A", "multi alice B", "multi bob A", "multi bob B", "one - A", "one - B",
			}
			require.Equal(t, wantHoldings, e.rig.holdings(e.names))
			dirBefore := snapshotDir(t, e.dir)
			require.Len(t, dirBefore, 2)
			ledgerBefore, err := os.ReadFile(e.rig.cfg.LedgerPath())
			require.NoError(t, err)

			if tc.setup != nil {
				tc.setup(e)
			}
			e.mu.Lock()
			e.serve = tc.serve
			e.mu.Unlock()
			agents := []*Agent{a, e.rig.agent()}
			if tc.freshOnly {
				agents = agents[1:]
			}
			if tc.want == installsX {
				rep := e.rig.sync(agents[1%len(agents)])
				assert.False(t, rep.Failed())
				assert.Contains(t, e.rig.holdings(e.names), "one - X")
				assert.Len(t, snapshotDir(t, e.dir), 3)
				return
			}
			for i, ag := range agents {
				rep := syncHostile(t, e, ag, tc.hangs)
				assert.Equal(t, wantHoldings, e.rig.holdings(e.names), "agent %d: the fake stores changed", i)
				assert.Equal(t, dirBefore, snapshotDir(t, e.dir), "agent %d: the dir store changed", i)
				ledgerAfter, err := os.ReadFile(e.rig.cfg.LedgerPath())
				require.NoError(t, err)
				assert.Equal(t, string(ledgerBefore), string(ledgerAfter), "agent %d: the ledger changed", i)
				switch tc.want {
				case failStatic:
					assert.True(t, rep.Failed(), "agent %d: a bad answer is a failed pass", i)
					assert.False(t, rep.Fetch.Authoritative, "agent %d", i)
					assert.Contains(t, rep.Fetch.Error, tc.text, "agent %d: the error says why", i)
					assert.NotContains(t, rep.Fetch.Error, testToken)
					assert.Contains(t, ag.Snapshot().LastError, tc.text, "agent %d: status says why", i)
				case rejectedX:
					assert.False(t, rep.Failed(), "agent %d", i)
					var reasons []string
					for _, rj := range rep.Rejected {
						reasons = append(reasons, rj.Reason)
					}
					require.Len(t, reasons, 1, "agent %d", i)
					assert.Contains(t, reasons[0], tc.text, "agent %d: the rejection says why", i)
				case withheldX:
					assert.False(t, rep.Failed(), "agent %d", i)
					require.Len(t, rep.Withheld, 1, "agent %d", i)
					assert.Equal(t, idX, rep.Withheld[0].ID)
					assert.Equal(t, strings.ToLower(tc.text), strings.ToLower(rep.Withheld[0].BindingStatus))
				}
			}
			e.mu.Lock()
			assert.Zero(t, e.redirected, "a same-origin redirect was followed")
			e.mu.Unlock()
			assert.Empty(t, e.sameHost.requests(), "a request (and the token) reached another port")
			assert.Empty(t, e.farHost.requests(), "a request (and the token) reached another host")
		})
	}
}

// syncHostile runs one pass; for a server that hangs, it cancels the pass
// once the server says it is hanging.
func syncHostile(t *testing.T, e *hostileEnv, a *Agent, hangs bool) *PassReport {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	if hangs {
		go func() {
			select {
			case <-e.hung:
				cancel()
			case <-done:
			}
		}()
	}
	rep, err := a.SyncOnce(ctx, false)
	require.NoError(t, err)
	return rep
}

// snapshotDir maps each file name in dir to its content.
func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[strings.TrimPrefix(p, dir)] = string(b)
		return err
	})
	require.NoError(t, err)
	return out
}
