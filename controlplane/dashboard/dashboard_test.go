package dashboard_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/dashboard"
	"github.com/certagent/certagent/controlplane/seal"
	"github.com/certagent/certagent/controlplane/storage"
	"github.com/certagent/certagent/controlplane/storage/sqlite"
	"github.com/certagent/certagent/controlplane/storage/storagetest"
)

// fixture is a Service on SQLite with the dashboard and the API on one
// test server, and a clock the test moves.
type fixture struct {
	svc     *controlplane.Service
	clock   *storagetest.Clock
	srv     *httptest.Server
	account string
	first   string
	write   string
	read    string
	logs    *lockedBuffer
}

func newFixture(t testing.TB, tls bool) *fixture {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "certplane.db"))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	sealer, err := seal.New(bytes.Repeat([]byte{0x42}, seal.KeySize))
	require.NoError(t, err)
	f := &fixture{clock: storagetest.NewClock(time.Now().UTC()), logs: &lockedBuffer{}}
	log := hclog.New(&hclog.LoggerOptions{Output: f.logs, JSONFormat: true, Level: hclog.Info})
	f.svc, err = controlplane.New(db, controlplane.Options{Sealer: sealer, Now: f.clock.Now, DeployDelay: time.Minute,
		Logger: log})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	d, err := dashboard.New(dashboard.Options{Service: f.svc, Logger: log.Named("dashboard"), Stopping: ctx, IdleTimeout: 30 * time.Minute})
	require.NoError(t, err)
	h := d.Mount(f.svc.Handler(ctx))
	if tls {
		f.srv = httptest.NewTLSServer(h)
	} else {
		f.srv = httptest.NewServer(h)
	}
	t.Cleanup(f.srv.Close)
	a, err := f.svc.CreateAccount(context.Background(), "acme")
	require.NoError(t, err)
	f.account, f.first = a.ID, a.InUseID
	f.write, err = f.svc.CreateToken(context.Background(), a.ID, storage.ScopeWrite)
	require.NoError(t, err)
	f.read, err = f.svc.CreateToken(context.Background(), a.ID, storage.ScopeRead)
	require.NoError(t, err)
	return f
}

// client is an HTTP client with a cookie jar that does not follow
// redirects and sends Origin like a browser's form post.
type client struct {
	t    *testing.T
	f    *fixture
	c    *http.Client
	csrf string
}

func (f *fixture) client(t *testing.T) *client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	// A client of its own: srv.Client() is one shared client.
	c := &http.Client{Transport: f.srv.Client().Transport, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &client{t: t, f: f, c: c}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (b *client) do(method, path string, form url.Values, hdr map[string]string) answer {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.f.srv.URL+path, body)
	require.NoError(b.t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", b.f.srv.URL)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := b.c.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	return answer{resp.StatusCode, resp.Header, string(raw)}
}

var csrfInput = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// login logs in with token and keeps the page's CSRF token.
func (b *client) login(token string) answer {
	b.t.Helper()
	page := b.do(http.MethodGet, "/dashboard/login", nil, nil)
	require.Equal(b.t, http.StatusOK, page.status)
	m := csrfInput.FindStringSubmatch(page.body)
	require.NotNil(b.t, m, "login form has a CSRF token")
	a := b.do(http.MethodPost, "/dashboard/login", url.Values{"csrf_token": {m[1]}, "token": {token}}, nil)
	if a.status == http.StatusSeeOther {
		list := b.do(http.MethodGet, "/dashboard/certificates", nil, nil)
		require.Equal(b.t, http.StatusOK, list.status)
		m := csrfInput.FindStringSubmatch(list.body)
		require.NotNil(b.t, m, "the logged-in page has a CSRF token")
		b.csrf = m[1]
	}
	return a
}

// post sends a form with the session's CSRF token.
func (b *client) post(path string, form url.Values) answer {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf_token", b.csrf)
	return b.do(http.MethodPost, path, form, nil)
}

// apiError calls the API with the write token and returns its status and
// first error message.
func (f *fixture) apiError(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+"/client/v4/accounts/"+f.account+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+f.write)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var env struct {
		Errors []struct{ Message string } `json:"errors"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&env))
	require.NotEmpty(t, env.Errors, "API %s %s: want a refusal", method, path)
	return resp.StatusCode, env.Errors[0].Message
}

func (f *fixture) certs(t *testing.T) []storage.Certificate {
	t.Helper()
	cs, _, err := f.svc.Rules().List(context.Background(), f.account)
	require.NoError(t, err)
	return cs
}

func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t, false)
	b := f.client(t)
	require.Equal(t, http.StatusSeeOther, b.login(f.write).status)
	for _, path := range []string{"/dashboard/login", "/dashboard/certificates", "/dashboard/certificates/" + f.first + "/turn-on",
		"/dashboard/certificates/" + f.first + "/delete",
		"/dashboard/devices", "/dashboard/settings", "/dashboard/static/dashboard.js", "/dashboard/nowhere"} {
		t.Run(path, func(t *testing.T) {
			a := b.do(http.MethodGet, path, nil, nil)
			csp := a.header.Get("Content-Security-Policy")
			assert.Contains(t, csp, "script-src 'self'")
			assert.Contains(t, csp, "frame-ancestors 'none'")
			assert.NotContains(t, csp, "unsafe-inline")
			assert.Equal(t, "DENY", a.header.Get("X-Frame-Options"))
			assert.Equal(t, "nosniff", a.header.Get("X-Content-Type-Options"))
			assert.Equal(t, "same-origin", a.header.Get("Referrer-Policy"))
			if strings.Contains(path, "/static/") {
				assert.Equal(t, "text/javascript; charset=utf-8", a.header.Get("Content-Type"))
				return
			}
			assert.Equal(t, "no-store", a.header.Get("Cache-Control"))
			// The CSP forbids inline script and style: pages carry none.
			assert.NotRegexp(t, `<script(\s[^>]*)?>[^<]`, a.body, "inline script")
			assert.NotRegexp(t, `<script(?:\s(?:[^s>]|s[^r])*)?>`, a.body, "script without src")
			assert.NotRegexp(t, `\son[a-z]+=`, a.body, "inline event handler")
			assert.NotRegexp(t, `\sstyle=`, a.body, "inline style")
		})
	}
}

// TestLogsKeepSecrets: the request log has the requests, and never a
// token, a session id or a CSRF token.
func TestLogsKeepSecrets(t *testing.T) {
	f := newFixture(t, false)
	b := f.client(t)
	require.Equal(t, http.StatusSeeOther, b.login(f.write).status)
	require.Equal(t, http.StatusSeeOther, b.post("/dashboard/certificates/generate", url.Values{"validity": {"recommended"}}).status)
	f.client(t).login("cpt_0000000000000000.wrongwrongwrongwrongwrongwrongwrongwrongwro")
	logs := f.logs.String()
	assert.Contains(t, logs, `"path":"/dashboard/certificates/generate"`)
	assert.Contains(t, logs, `"@message":"dashboard login"`)
	u, _ := url.Parse(f.srv.URL + "/dashboard/")
	secrets := []string{f.write[strings.Index(f.write, ".")+1:], "wrongwrongwrong", b.csrf}
	for _, c := range b.c.Jar.Cookies(u) {
		secrets = append(secrets, c.Value)
	}
	for _, s := range secrets {
		assert.NotContains(t, logs, s)
	}
}

func TestSessionCookie(t *testing.T) {
	for _, tls := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", tls), func(t *testing.T) {
			f := newFixture(t, tls)
			b := f.client(t)
			a := b.login(f.write)
			require.Equal(t, http.StatusSeeOther, a.status)
			var c *http.Cookie
			for _, k := range (&http.Response{Header: a.header}).Cookies() {
				if k.Name == "certplane_session" && k.Value != "" {
					c = k
				}
			}
			require.NotNil(t, c, "login sets the session cookie")
			assert.True(t, c.HttpOnly, "HttpOnly")
			assert.Equal(t, http.SameSiteStrictMode, c.SameSite, "SameSite")
			assert.Equal(t, tls, c.Secure, "Secure exactly under TLS")
			assert.Equal(t, "/dashboard/", c.Path)
			assert.GreaterOrEqual(t, len(c.Value), 43, "a 256-bit session id")
			assert.NotContains(t, c.Value, f.write[4:20], "the cookie is not the token")
		})
	}
}

func TestLoginRefusals(t *testing.T) {
	f := newFixture(t, false)
	device, err := f.svc.CreateToken(context.Background(), f.account, storage.ScopeDevice)
	require.NoError(t, err)
	revoked, err := f.svc.CreateToken(context.Background(), f.account, storage.ScopeWrite)
	require.NoError(t, err)
	id, err := controlplane.TokenID(revoked)
	require.NoError(t, err)
	_, err = f.svc.RevokeToken(context.Background(), f.account, id)
	require.NoError(t, err)

	tests := []struct {
		name   string
		token  string
		csrf   func(real string) string
		origin string
		want   int
	}{
		{"wrong token", "cpt_0000000000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", nil, "", http.StatusUnauthorized},
		{"garbage token", "<script>alert(1)</script>", nil, "", http.StatusUnauthorized},
		{"empty token", "", nil, "", http.StatusUnauthorized},
		{"revoked token", revoked, nil, "", http.StatusUnauthorized},
		{"device token", device, nil, "", http.StatusForbidden},
		{"no CSRF token", f.write, func(string) string { return "" }, "", http.StatusForbidden},
		{"wrong CSRF token", f.write, func(string) string { return "x" }, "", http.StatusForbidden},
		{"cross-origin", f.write, nil, "https://evil.example", http.StatusForbidden},
		{"null origin", f.write, nil, "null", http.StatusForbidden},
		{"write token", f.write, nil, "", http.StatusSeeOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := f.client(t)
			page := b.do(http.MethodGet, "/dashboard/login", nil, nil)
			csrf := csrfInput.FindStringSubmatch(page.body)[1]
			if tt.csrf != nil {
				csrf = tt.csrf(csrf)
			}
			hdr := map[string]string{}
			if tt.origin != "" {
				hdr["Origin"] = tt.origin
			}
			a := b.do(http.MethodPost, "/dashboard/login", url.Values{"csrf_token": {csrf}, "token": {tt.token}}, hdr)
			assert.Equal(t, tt.want, a.status, "status; body:\n%s", a.body)
			if tt.want != http.StatusSeeOther {
				assert.NotContains(t, a.header.Get("Set-Cookie"), "certplane_session=", "no session")
				assert.NotContains(t, a.body, "<script>alert", "the token is never echoed")
			}
		})
	}
}

func TestCSRF(t *testing.T) {
	f := newFixture(t, false)
	b := f.client(t)
	require.Equal(t, http.StatusSeeOther, b.login(f.write).status)
	before := len(f.certs(t))
	tests := []struct {
		name string
		form url.Values
		hdr  map[string]string
	}{
		{"none", url.Values{"validity": {"recommended"}}, nil},
		{"wrong", url.Values{"validity": {"recommended"}, "csrf_token": {"forged"}}, nil},
		{"another session's", url.Values{"validity": {"recommended"}, "csrf_token": {otherCSRF(t, f)}}, nil},
		{"right token, foreign origin", url.Values{"validity": {"recommended"}, "csrf_token": {b.csrf}}, map[string]string{"Origin": "http://evil.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := b.do(http.MethodPost, "/dashboard/certificates/generate", tt.form, tt.hdr)
			assert.Equal(t, http.StatusForbidden, a.status)
		})
	}
	// An oversized body is refused before anything reads it further.
	big := b.post("/dashboard/certificates/upload", url.Values{"certificates": {strings.Repeat("x", 70<<10)}})
	assert.Equal(t, http.StatusRequestEntityTooLarge, big.status)
	// The header works as well as the field (the live script's way).
	a := b.do(http.MethodPost, "/dashboard/certificates/generate", url.Values{"validity": {"recommended"}},
		map[string]string{"X-CSRF-Token": b.csrf})
	assert.Equal(t, http.StatusSeeOther, a.status)
	assert.Len(t, f.certs(t), before+1, "only the request with the token generated")
}

// otherCSRF logs in a second browser and returns its CSRF token.
func otherCSRF(t *testing.T, f *fixture) string {
	o := f.client(t)
	require.Equal(t, http.StatusSeeOther, o.login(f.write).status)
	return o.csrf
}

func TestReadTokenCannotWrite(t *testing.T) {
	f := newFixture(t, false)
	b := f.client(t)
	require.Equal(t, http.StatusSeeOther, b.login(f.read).status)
	list := b.do(http.MethodGet, "/dashboard/certificates", nil, nil)
	assert.NotContains(t, list.body, `action="/dashboard/certificates/`, "no write form")
	assert.Contains(t, list.body, "read-only")
	for _, path := range []string{"/dashboard/certificates/generate", "/dashboard/certificates/upload",
		"/dashboard/certificates/" + f.first + "/activate", "/dashboard/certificates/" + f.first + "/deactivate",
		"/dashboard/certificates/" + f.first + "/delete", "/dashboard/certificates/" + f.first + "/turn-on", "/dashboard/settings"} {
		t.Run(path, func(t *testing.T) {
			a := b.post(path, url.Values{"validity": {"recommended"}, "min_readiness": {"0"}, "device_active_days": {"1"}})
			assert.Equal(t, http.StatusForbidden, a.status)
			assert.Contains(t, a.body, "the token&#39;s scope is read; this operation needs a write token")
		})
	}
	assert.Len(t, f.certs(t), 1, "nothing changed")
	set, err := f.svc.Rules().Backend().DeviceSettings(context.Background(), f.account)
	require.NoError(t, err)
	assert.Equal(t, storage.DefaultDeviceSettings(), set, "settings unchanged")
}

func TestSessionEnds(t *testing.T) {
	f := newFixture(t, false)
	t.Run("idle", func(t *testing.T) {
		b := f.client(t)
		require.Equal(t, http.StatusSeeOther, b.login(f.write).status)
		f.clock.Advance(29 * time.Minute)
		assert.Equal(t, http.StatusOK, b.do(http.MethodGet, "/dashboard/certificates", nil, nil).status, "used within the idle time")
		f.clock.Advance(29 * time.Minute)
		assert.Equal(t, http.StatusOK, b.do(http.MethodGet, "/dashboard/certificates", nil, nil).status, "each use restarts the idle time")
		f.clock.Advance(31 * time.Minute)
		a := b.do(http.MethodGet, "/dashboard/certificates", nil, nil)
		assert.Equal(t, http.StatusSeeOther, a.status)
		assert.Equal(t, "/dashboard/login?ended=expired", a.header.Get("Location"))
	})
	t.Run("max age", func(t *testing.T) {
		b := f.client(t)
		require.Equal(t, http.StatusSeeOther, b.login(f.write).status)
		for i := 0; i < 25; i++ {
			f.clock.Advance(29 * time.Minute)
			b.do(http.MethodGet, "/dashboard/certificates", nil, nil)
		}
		a := b.do(http.MethodGet, "/dashboard/certificates", nil, nil)
		assert.Equal(t, http.StatusSeeOther, a.status, "a session in use still ends after %s", dashboard.DefaultMaxAge)
	})
	t.Run("revoked", func(t *testing.T) {
		tok, err := f.svc.CreateToken(context.Background(), f.account, storage.ScopeWrite)
		require.NoError(t, err)
		b := f.client(t)
		require.Equal(t, http.StatusSeeOther, b.login(tok).status)
		id, err := controlplane.TokenID(tok)
		require.NoError(t, err)
		_, err = f.svc.RevokeToken(context.Background(), f.account, id)
		require.NoError(t, err)
		a := b.post("/dashboard/certificates/generate", url.Values{"validity": {"recommended"}})
		assert.Equal(t, http.StatusUnauthorized, a.status, "the next request after revocation is refused")
		assert.Contains(t, a.body, "revoked")
		a = b.do(http.MethodGet, "/dashboard/certificates", nil, nil)
		assert.Equal(t, http.StatusSeeOther, a.status)
		assert.True(t, strings.HasPrefix(a.header.Get("Location"), "/dashboard/login"))
		assert.Len(t, f.certs(t), 1, "nothing generated")
	})
	t.Run("logout", func(t *testing.T) {
		b := f.client(t)
		require.Equal(t, http.StatusSeeOther, b.login(f.write).status)
		u, _ := url.Parse(f.srv.URL + "/dashboard/")
		var session string
		for _, c := range b.c.Jar.Cookies(u) {
			if c.Name == "certplane_session" {
				session = c.Value
			}
		}
		require.NotEmpty(t, session)
		assert.Equal(t, http.StatusForbidden, b.do(http.MethodPost, "/dashboard/logout", url.Values{}, nil).status, "logout needs the CSRF token")
		assert.Equal(t, http.StatusOK, b.post("/dashboard/logout", nil).status)
		// Replaying the old cookie after logout gets nothing.
		status, loc := get(t, f.srv.URL+"/dashboard/certificates", session)
		assert.Equal(t, http.StatusSeeOther, status)
		assert.True(t, strings.HasPrefix(loc, "/dashboard/login"))
	})
}

// TestRefusalsMatchAPI: a rule refuses with the API's status and words,
// whichever door the admin used.
func TestRefusalsMatchAPI(t *testing.T) {
	f := newFixture(t, false)
	b := f.client(t)
	require.Equal(t, http.StatusSeeOther, b.login(f.write).status)
	certPEM, _ := newCA(t, "Other CA")

	tests := []struct {
		name      string
		path      string
		form      url.Values
		apiMethod string
		apiPath   string
		apiBody   string
	}{
		{"delete the in-use root", "/dashboard/certificates/" + f.first + "/delete", nil,
			http.MethodDelete, "/gateway/certificates/" + f.first, ""},
		{"deactivate the in-use root", "/dashboard/certificates/" + f.first + "/deactivate", nil,
			http.MethodPost, "/gateway/certificates/" + f.first + "/deactivate", ""},
		{"zero days", "/dashboard/certificates/generate", url.Values{"validity": {"custom"}, "days": {"0"}},
			http.MethodPost, "/gateway/certificates", `{"validity_period_days":0}`},
		{"too many days", "/dashboard/certificates/generate", url.Values{"validity": {"custom"}, "days": {"10951"}},
			http.MethodPost, "/gateway/certificates", `{"validity_period_days":10951}`},
		{"upload without a key", "/dashboard/certificates/upload", url.Values{"name": {"x"}, "certificates": {certPEM}},
			http.MethodPost, "/mtls_certificates", fmt.Sprintf(`{"name":"x","certificates":%q,"private_key":"","ca":true}`, certPEM)},
		{"upload garbage", "/dashboard/certificates/upload", url.Values{"name": {"x"}, "certificates": {"junk"}, "private_key": {"junk"}},
			http.MethodPost, "/mtls_certificates", `{"name":"x","certificates":"junk","private_key":"junk","ca":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.certs(t)
			a := b.post(tt.path, tt.form)
			status, msg := f.apiError(t, tt.apiMethod, tt.apiPath, tt.apiBody)
			assert.Equal(t, status, a.status, "the dashboard's status is the API's")
			assert.Contains(t, a.body, "Refused: "+htmlEscape(msg), "the dashboard's words are the API's")
			assert.Equal(t, before, f.certs(t), "nothing changed")
		})
	}

	// Non-UUID and unknown ids are not found, as in the API.
	for _, id := range []string{"nope", "../../etc", strings.Repeat("a", 36), "00000000-0000-0000-0000-000000000001"} {
		a := b.post("/dashboard/certificates/"+url.PathEscape(id)+"/activate", nil)
		assert.Equal(t, http.StatusNotFound, a.status, "activate %q", id)
	}
}

// TestGenerationLimit: the page says when the next generation is allowed,
// and the fourth is refused with the API's 429 and words.
func TestGenerationLimit(t *testing.T) {
	f := newFixture(t, false)
	b := f.client(t)
	require.Equal(t, http.StatusSeeOther, b.login(f.write).status)
	start := f.clock.Now()
	for i := 0; i < storage.GenerationsPerDay; i++ {
		a := b.post("/dashboard/certificates/generate", url.Values{"validity": {"custom"}, "days": {"30"}})
		require.Equal(t, http.StatusSeeOther, a.status, "%s", a.body)
		f.clock.Advance(20 * time.Minute) // within the session's idle time
	}
	page := b.do(http.MethodGet, "/dashboard/certificates", nil, nil)
	next := start.Add(storage.GenerationWindow + time.Nanosecond).UTC()
	assert.Contains(t, page.body, "the next generation is allowed at <time datetime=\""+next.Format(time.RFC3339)+"\">")
	assert.Regexp(t, `<button type="submit" id="generate" disabled`, page.body)
	a := b.post("/dashboard/certificates/generate", url.Values{"validity": {"recommended"}})
	status, msg := f.apiError(t, http.MethodPost, "/gateway/certificates", `{}`)
	assert.Equal(t, http.StatusTooManyRequests, status)
	assert.Equal(t, status, a.status)
	assert.Contains(t, a.body, htmlEscape(msg))
}

// TestUploadFile uploads a custom root as files, the way a browser's file
// inputs send them.
func TestUploadFile(t *testing.T) {
	f := newFixture(t, false)
	b := f.client(t)
	require.Equal(t, http.StatusSeeOther, b.login(f.write).status)
	certPEM, keyPEM := newCA(t, "Example Inc. Inspection CA")
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	require.NoError(t, mw.WriteField("csrf_token", b.csrf))
	require.NoError(t, mw.WriteField("name", "Example root"))
	for field, content := range map[string]string{"certificates_file": certPEM, "private_key_file": keyPEM} {
		w, err := mw.CreateFormFile(field, field+".pem")
		require.NoError(t, err)
		_, err = io.WriteString(w, content)
		require.NoError(t, err)
	}
	require.NoError(t, mw.Close())
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/dashboard/certificates/upload", &body)
	require.NoError(t, err)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Origin", f.srv.URL)
	resp, err := b.c.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	page := b.do(http.MethodGet, "/dashboard/certificates", nil, nil)
	assert.Contains(t, page.body, "Uploaded custom certificate")
	assert.Contains(t, page.body, "Example root")
	assert.Contains(t, page.body, `<td data-label="Type">Custom</td>`)
	// The same upload again is the API's duplicate refusal.
	a := b.post("/dashboard/certificates/upload", url.Values{"name": {"again"}, "certificates": {certPEM}, "private_key": {keyPEM}})
	assert.Equal(t, http.StatusConflict, a.status)
	assert.Contains(t, a.body, "already has this certificate")
}

func TestLiveFeed(t *testing.T) {
	f := newFixture(t, false)
	b := f.client(t)
	require.Equal(t, http.StatusSeeOther, b.login(f.read).status)
	a := b.do(http.MethodGet, "/dashboard/certificates.json", nil, nil)
	require.Equal(t, http.StatusOK, a.status)
	var feed struct {
		Revision     int64
		Certificates []struct{ ID, Status string }
	}
	require.NoError(t, json.Unmarshal([]byte(a.body), &feed))
	require.Len(t, feed.Certificates, 1)
	assert.Equal(t, dashboard.LabelAvailableInUse, feed.Certificates[0].Status)
	// A waiting feed answers at the next change, a pending state included.
	c, err := f.svc.Generate(context.Background(), f.account, controlplane.GenerateRequest{ValidityDays: 30})
	require.NoError(t, err)
	a = b.do(http.MethodGet, "/dashboard/certificates.json", nil, nil)
	require.NoError(t, json.Unmarshal([]byte(a.body), &feed))
	done := make(chan answer, 1)
	go func() {
		done <- b.do(http.MethodGet, fmt.Sprintf("/dashboard/certificates.json?since=%d", feed.Revision), nil, nil)
	}()
	// Activate once the feed is held, so the wake-up is what answers it.
	for f.svc.ChangeHub().Waiting(f.account) == 0 {
		time.Sleep(time.Millisecond)
	}
	_, err = f.svc.Rules().Activate(context.Background(), f.account, c.ID)
	require.NoError(t, err)
	a = <-done
	var feed2 struct {
		Revision     int64
		Pending      bool
		Certificates []struct{ ID, Status string }
	}
	require.NoError(t, json.Unmarshal([]byte(a.body), &feed2))
	assert.Greater(t, feed2.Revision, feed.Revision)
	assert.True(t, feed2.Pending)
	assert.Len(t, feed2.Certificates, 2)
	assert.Equal(t, http.StatusBadRequest, b.do(http.MethodGet, "/dashboard/certificates.json?since=x", nil, nil).status)
	// Without a session the feed is 401, not a redirect page.
	anon := f.client(t)
	assert.Equal(t, http.StatusUnauthorized, anon.do(http.MethodGet, "/dashboard/certificates.json", nil, nil).status)
}

func TestStatusLabel(t *testing.T) {
	tests := []struct {
		status string
		inUse  bool
		want   string
	}{
		{"inactive", false, "Inactive"},
		{"pending_deployment", false, "Pending"},
		{"pending_deletion", false, "Pending"},
		{"available", false, "Available"},
		{"active", false, "Available"},
		{"available", true, "Available and In-Use"},
		{"bogus", false, "Inactive"},
	}
	for _, tt := range tests {
		if got := dashboard.StatusLabel(apiStatus(tt.status), tt.inUse); got != tt.want {
			t.Errorf("StatusLabel(%s, %v): got %q, want %q", tt.status, tt.inUse, got, tt.want)
		}
	}
}

// newCA mints a CA certificate and its key in PEM.
func newCA(t *testing.T, cn string) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: []string{"Example Inc."}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}

func apiStatus(s string) api.BindingStatus { return api.BindingStatus(s) }
