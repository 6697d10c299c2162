package api

import (
	"context"
	"encoding/json"
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

	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

const (
	testAccount = "0123456789abcdef0123456789abcdef"
	testToken   = "test-token-value"
	certsPath   = "/client/v4/accounts/" + testAccount + "/gateway/certificates"
	configPath  = "/client/v4/accounts/" + testAccount + "/gateway/configuration"
)

// request is what the replay server saw.
type request struct {
	Method, Path, RawPath, Query string
	Header                       http.Header
	Body                         string
}

// reply is one canned answer.
type reply struct {
	status int
	header map[string]string
	body   string
}

// replay is an httptest server answering "METHOD path" with canned replies
// and recording every request.
type replay struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	routes map[string]reply
	seen   []request
}

func newReplay(t *testing.T, routes map[string]reply) *replay {
	r := &replay{t: t, routes: routes}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.seen = append(r.seen, request{Method: req.Method, Path: req.URL.Path, RawPath: req.URL.EscapedPath(), Query: req.URL.RawQuery, Header: req.Header.Clone(), Body: string(body)})
		rep, ok := r.routes[req.Method+" "+req.URL.EscapedPath()]
		r.mu.Unlock()
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"success":false,"errors":[{"code":7000,"message":"No route for that URI"}],"messages":[],"result":null}`)
			return
		}
		if _, set := rep.header["Content-Type"]; !set {
			w.Header().Set("Content-Type", "application/json")
		}
		for k, v := range rep.header {
			w.Header().Set(k, v)
		}
		if rep.status == 0 {
			rep.status = http.StatusOK
		}
		w.WriteHeader(rep.status)
		io.WriteString(w, rep.body)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *replay) client(t *testing.T, opts ...ClientOption) *Client {
	t.Helper()
	c, err := NewClient(r.srv.URL+"/client/v4/", testAccount, testToken, opts...)
	require.NoError(t, err)
	return c
}

func (r *replay) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.seen...)
}

func ok(result string) string {
	return `{"success":true,"errors":[],"messages":[],"result":` + result + `}`
}

// jsonString quotes s as JSON does.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// unpadded spells fp with single-digit bytes unpadded, as one Cloudflare
// docs example does ("AB:0:31").
func unpadded(fp trust.Fingerprint) string {
	parts := make([]string, len(fp))
	for i, b := range fp {
		parts[i] = fmt.Sprintf("%X", b)
	}
	return strings.Join(parts, ":")
}

// realCert is the real sample of cloudflare-api.md §1.2 with a minted PEM:
// zero timestamps, qs_pack_id, escaped issuer_raw, and status and
// fingerprint spelled as given.
func realCert(id, status string, pem string, fingerprint string, withPEM bool) string {
	pemField := ""
	if withPEM {
		pemField = `"certificate": ` + jsonString(pem) + `,`
	}
	return `{
  "id": "` + id + `",
  "binding_status": "` + status + `",
  ` + pemField + `
  "fingerprint": "` + fingerprint + `",
  "in_use": false,
  "issuer_org": "Cloudflare, Inc.",
  "issuer_raw": "CN=Gateway CA - Cloudflare Managed G1 0123456789abcdef0123456789abcdef,OU=www.cloudflare.com,O=Cloudflare\\, Inc.,L=San Francisco,ST=California,C=US",
  "type": "gateway_managed",
  "qs_pack_id": "00000000-0000-0000-0000-000000000000",
  "created_at": "2025-01-16T03:11:03.381992Z",
  "updated_at": "0001-01-01T00:00:00Z",
  "uploaded_on": "0001-01-01T00:00:00Z",
  "expires_on": "2055-01-09T03:06:00Z"
}`
}

// caWithShortByte mints CAs until one's fingerprint has a byte below 0x10,
// so its unpadded spelling differs from the padded one.
func caWithShortByte(t *testing.T) *trusttest.CA {
	for {
		ca := trusttest.NewCA(t)
		for _, b := range ca.FP {
			if b < 0x10 {
				return ca
			}
		}
	}
}

func TestListRealShape(t *testing.T) {
	a, b := caWithShortByte(t), trusttest.NewCA(t)
	const idA, idB = "f174e90a-fafe-4643-bbbc-4a0ed4fc8415", "9b0c1d2e-3f40-4152-8a63-74859607a8b9"
	r := newReplay(t, map[string]reply{
		"GET " + certsPath: {body: ok(`[` +
			realCert(idA, "active", string(a.PEM()), unpadded(a.FP), true) + `,` +
			realCert(idB, "available", "", b.FP.String(), false) + `]`),
			header: map[string]string{"ETag": `"rev-7"`, "Date": "Sun, 29 Nov 2026 06:00:00 GMT"}},
		"GET " + certsPath + "/" + idB: {body: ok(realCert(idB, "available", string(b.PEM()), b.FP.String(), true))},
	})
	res, err := r.client(t).ListIfChanged(context.Background(), "", 0)
	require.NoError(t, err)
	require.Len(t, res.Certificates, 2)
	assert.Equal(t, `"rev-7"`, res.ETag)
	assert.Equal(t, time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC), res.Date.UTC())

	ca := res.Certificates[0]
	assert.Equal(t, idA, ca.ID)
	assert.Equal(t, StatusActive, ca.BindingStatus)
	assert.Equal(t, StatusAvailable, ca.BindingStatus.Normalize())
	assert.True(t, ca.BindingStatus.Deployed(), "legacy active means deployed")
	assert.True(t, ca.UpdatedAt.IsZero(), "zero time")
	assert.True(t, ca.UploadedOn.IsZero(), "zero time")
	assert.Equal(t, time.Date(2025, 1, 16, 3, 11, 3, 381992000, time.UTC), ca.CreatedAt.Time)
	assert.Equal(t, `CN=Gateway CA - Cloudflare Managed G1 0123456789abcdef0123456789abcdef,OU=www.cloudflare.com,O=Cloudflare\, Inc.,L=San Francisco,ST=California,C=US`, ca.IssuerRaw)
	assert.Equal(t, TypeGatewayManaged, ca.Type)
	// The unpadded fingerprint still parses to what the PEM hashes to.
	claimed, err := trust.ParseFingerprint(ca.Fingerprint)
	require.NoError(t, err)
	assert.Equal(t, a.FP, claimed)
	got, err := trust.ParseOnePEM([]byte(ca.Certificate))
	require.NoError(t, err)
	assert.Equal(t, a.FP, got.FP)

	// The certificate without a PEM was completed with one GET.
	cb := res.Certificates[1]
	assert.Equal(t, string(b.PEM()), cb.Certificate)
	reqs := r.requests()
	require.Len(t, reqs, 2)
	assert.Equal(t, certsPath+"/"+idB, reqs[1].Path)
	for _, rq := range reqs {
		assert.Equal(t, "Bearer "+testToken, rq.Header.Get("Authorization"))
		assert.Equal(t, "application/json", rq.Header.Get("Accept"))
		assert.Equal(t, "certagent", rq.Header.Get("User-Agent"))
		assert.Empty(t, rq.Header.Get("If-None-Match"))
	}

	// The policy accepts what the client returned, unpadded claim and all.
	cert, err := trust.Policy{}.Check(trust.Candidate{ID: ca.ID, PEM: []byte(ca.Certificate), ClaimedFingerprint: ca.Fingerprint})
	require.NoError(t, err)
	assert.Equal(t, a.FP, cert.FP)
}

func TestListEmptyAndResultInfo(t *testing.T) {
	r := newReplay(t, map[string]reply{
		"GET " + certsPath: {body: `{"success":true,"errors":[],"messages":[],"result":[],"result_info":{"page":1,"per_page":20,"count":0,"total_count":0}}`},
	})
	certs, err := r.client(t).List(context.Background())
	require.NoError(t, err)
	assert.NotNil(t, certs)
	assert.Empty(t, certs)
}

func TestListIfChanged(t *testing.T) {
	r := newReplay(t, map[string]reply{
		"GET " + certsPath: {status: http.StatusNotModified, header: map[string]string{"ETag": `"rev-7"`, "Date": "Sun, 29 Nov 2026 06:00:00 GMT"}},
	})
	res, err := r.client(t).ListIfChanged(context.Background(), `"rev-7"`, 25*time.Second)
	require.ErrorIs(t, err, ErrNotModified)
	require.NotNil(t, res)
	assert.Equal(t, `"rev-7"`, res.ETag)
	assert.False(t, res.Date.IsZero())
	reqs := r.requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, `"rev-7"`, reqs[0].Header.Get("If-None-Match"))
	assert.Equal(t, "wait=25s", reqs[0].Query)
}

func TestListMissingPEMFetchFails(t *testing.T) {
	const id = "9b0c1d2e-3f40-4152-8a63-74859607a8b9"
	ca := trusttest.NewCA(t)
	tests := []struct {
		name   string
		routes map[string]reply
		want   error
	}{
		{"GET answers 404", map[string]reply{
			"GET " + certsPath: {body: ok(`[` + realCert(id, "available", "", ca.FP.String(), false) + `]`)},
		}, nil},
		{"GET answers without PEM either", map[string]reply{
			"GET " + certsPath:            {body: ok(`[` + realCert(id, "available", "", ca.FP.String(), false) + `]`)},
			"GET " + certsPath + "/" + id: {body: ok(realCert(id, "available", "", ca.FP.String(), false))},
		}, ErrMalformed},
		{"no id and no PEM", map[string]reply{
			"GET " + certsPath: {body: ok(`[{"binding_status":"available"}]`)},
		}, ErrMalformed},
		{"hostile id", map[string]reply{
			"GET " + certsPath: {body: ok(`[{"id":"../../../user/tokens","binding_status":"available"}]`)},
		}, ErrBadID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReplay(t, tt.routes)
			certs, err := r.client(t).List(context.Background())
			require.Error(t, err)
			assert.Nil(t, certs, "a partial list must not be acted on")
			if tt.want != nil {
				assert.ErrorIs(t, err, tt.want)
			} else {
				assert.Equal(t, http.StatusNotFound, StatusCode(err))
			}
			for _, rq := range r.requests() {
				assert.NotContains(t, rq.Path, "user/tokens", "a hostile id reached the URL")
			}
		})
	}
}

func envelopeErr(code int, msg string) string {
	return `{"success":false,"errors":[{"code":` + fmt.Sprint(code) + `,"message":` + jsonString(msg) + `}],"messages":[],"result":null}`
}

const htmlBody = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>cloudflare</center></body></html>\n"

// TestErrorClasses: each HTTP failure becomes an *Error carrying the status,
// the envelope's code and message, and whether retrying can help.
func TestErrorClasses(t *testing.T) {
	tests := []struct {
		name       string
		rep        reply
		wantStatus int
		wantCode   int
		wantAuth   bool
		wantText   string
		wantRetry  time.Duration
	}{
		{"400 bad input", reply{status: 400, body: envelopeErr(1001, "validity_period_days must be 1..10950")}, 400, 1001, false, "validity_period_days", 0},
		{"401 no token", reply{status: 401, body: envelopeErr(10000, "Authentication error")}, 401, 10000, true, "Authentication error", 0},
		{"403 wrong scope", reply{status: 403, body: envelopeErr(10000, "Authentication error")}, 403, 10000, true, "HTTP 403", 0},
		{"404 unknown id", reply{status: 404, body: `{"success":false,"errors":[{"code":7003,"message":"Could not route to /accounts/x/gateway/certificates/y, perhaps your object identifier is invalid?"},{"code":7000,"message":"No route for that URI"}],"messages":[],"result":null}`}, 404, 7003, false, "7000 No route", 0},
		{"409 state rule", reply{status: 409, body: envelopeErr(2105, "certificate is in use and cannot be deactivated")}, 409, 2105, false, "in use", 0},
		{"429 rate limit", reply{status: 429, header: map[string]string{"Retry-After": "30"}, body: envelopeErr(2101, "3 certificates per 24 hours")}, 429, 2101, false, "retry after 30s", 30 * time.Second},
		{"500 HTML", reply{status: 500, header: map[string]string{"Content-Type": "text/html"}, body: htmlBody}, 500, 0, false, "HTML body", 0},
		{"502 HTML without content type", reply{status: 502, header: map[string]string{"Content-Type": ""}, body: htmlBody}, 502, 0, false, "HTML body", 0},
		{"503 empty", reply{status: 503, header: map[string]string{"Retry-After": "Sun, 29 Nov 2099 06:00:00 GMT"}}, 503, 0, false, "empty body", 24 * time.Hour},
		{"500 plain text", reply{status: 500, header: map[string]string{"Content-Type": "text/plain"}, body: "upstream connect error"}, 500, 0, false, "text/plain", 0},
		{"409 envelope labelled text/plain", reply{status: 409, header: map[string]string{"Content-Type": "text/plain; charset=utf-8"}, body: envelopeErr(2105, "certificate is in use")}, 409, 2105, false, "2105 certificate is in use", 0},
		{"400 hostile message", reply{status: 400, body: envelopeErr(1, "bad\x1b[31m\nFAKE LOG LINE")}, 400, 1, false, "bad?[31m?FAKE", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReplay(t, map[string]reply{"POST " + certsPath: tt.rep})
			out, err := r.client(t).Generate(context.Background(), 30)
			require.Error(t, err)
			assert.Nil(t, out)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, tt.wantStatus, e.StatusCode)
			assert.Equal(t, tt.wantStatus, StatusCode(err))
			assert.Equal(t, tt.wantCode, e.Code())
			assert.Equal(t, tt.wantAuth, IsAuth(err))
			assert.Contains(t, err.Error(), tt.wantText)
			assert.NotContains(t, err.Error(), "\n")
			if tt.wantRetry == 24*time.Hour {
				assert.Greater(t, e.RetryAfter, time.Hour)
			} else {
				assert.Equal(t, tt.wantRetry, e.RetryAfter)
			}
			assert.False(t, errors.Is(err, ErrMalformed), "an HTTP failure is not a malformed success")
		})
	}
}

// TestMalformedAnswers: a 2xx that is not a well-formed, complete envelope
// is ErrMalformed, never an empty success.
func TestMalformedAnswers(t *testing.T) {
	big := ok(`[{"id":"x","certificate":"` + strings.Repeat("A", MaxResponseBytes) + `"}]`)
	tests := []struct {
		name string
		rep  reply
		text string
	}{
		{"non-JSON", reply{header: map[string]string{"Content-Type": "text/plain"}, body: "hello"}, "Content-Type"},
		{"non-JSON labelled JSON", reply{body: "hello"}, "not a v4 envelope"},
		{"valid envelope labelled text/plain", reply{header: map[string]string{"Content-Type": "text/plain; charset=utf-8"}, body: ok(`[]`)}, `Content-Type "text/plain; charset=utf-8", want application/json`},
		{"valid envelope labelled octet-stream", reply{header: map[string]string{"Content-Type": "application/octet-stream"}, body: ok(`[]`)}, "want application/json"},
		{"unparsable Content-Type", reply{header: map[string]string{"Content-Type": "application/json; ="}, body: ok(`[]`)}, "want application/json"},
		{"captive portal", reply{header: map[string]string{"Content-Type": "text/html; charset=utf-8"}, body: htmlBody}, "not JSON"},
		{"truncated JSON", reply{body: ok(`[{"id":"f174e90a","binding_status":"avail`)[:60]}, "not a v4 envelope"},
		{"empty body", reply{}, "empty body"},
		{"whitespace body", reply{body: " \n\t"}, "empty body"},
		{"null result", reply{body: `{"success":true,"result":null}`}, "null"},
		{"no result", reply{body: `{"success":true,"errors":[],"messages":[]}`}, "without a result"},
		{"empty object", reply{body: `{}`}, "neither success nor errors"},
		{"success false, no errors", reply{body: `{"success":false,"errors":[],"result":[]}`}, "no errors"},
		{"result is an object", reply{body: ok(`{"id":"x"}`)}, "result"},
		{"trailing garbage", reply{body: ok(`[]`) + `{"success":true}`}, "trailing"},
		{"trailing brace", reply{body: ok(`[]`) + `}`}, "trailing"},
		{"bad time", reply{body: ok(`[{"id":"x","certificate":"y","created_at":"yesterday"}]`)}, "result"},
		{"oversize", reply{body: big}, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReplay(t, map[string]reply{"GET " + certsPath: tt.rep})
			certs, err := r.client(t).List(context.Background())
			require.Error(t, err)
			assert.Nil(t, certs)
			assert.ErrorIs(t, err, ErrMalformed)
			assert.Contains(t, err.Error(), tt.text)
		})
	}
}

func TestNullResultForSingleObject(t *testing.T) {
	const id = "f174e90a-fafe-4643-bbbc-4a0ed4fc8415"
	r := newReplay(t, map[string]reply{
		"GET " + certsPath + "/" + id:                {body: ok(`null`)},
		"POST " + certsPath + "/" + id + "/activate": {body: ok(`null`)},
		"GET " + configPath:                          {body: ok(`null`)},
		"DELETE " + certsPath + "/" + id:             {body: ok(`null`)},
	})
	c := r.client(t)
	ctx := context.Background()
	_, err := c.Get(ctx, id)
	assert.ErrorIs(t, err, ErrMalformed)
	_, err = c.Activate(ctx, id)
	assert.ErrorIs(t, err, ErrMalformed)
	_, err = c.GetConfiguration(ctx)
	assert.ErrorIs(t, err, ErrMalformed)
	// A delete that answers null did delete.
	del, err := c.Delete(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, id, del.ID)
}

func TestNetworkError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	c, err := NewClient("http://"+addr+"/client/v4", testAccount, testToken)
	require.NoError(t, err)
	_, err = c.List(context.Background())
	require.Error(t, err)
	var op *net.OpError
	assert.ErrorAs(t, err, &op)
	assert.Equal(t, 0, StatusCode(err))
	assert.False(t, IsAuth(err))
	assert.Contains(t, err.Error(), "GET /accounts/"+testAccount+"/gateway/certificates")
	assert.NotContains(t, err.Error(), testToken)
}

func TestContextCanceled(t *testing.T) {
	r := newReplay(t, map[string]reply{"GET " + certsPath: {body: ok(`[]`)}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := r.client(t).List(ctx)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestMutations(t *testing.T) {
	const id = "f174e90a-fafe-4643-bbbc-4a0ed4fc8415"
	ca := trusttest.NewCA(t)
	cert := realCert(id, "inactive", string(ca.PEM()), ca.FP.String(), true)
	r := newReplay(t, map[string]reply{
		"POST " + certsPath:                                              {body: ok(cert)},
		"POST " + certsPath + "/" + id + "/activate":                     {body: ok(strings.Replace(cert, `"inactive"`, `"pending_deployment"`, 1))},
		"POST " + certsPath + "/" + id + "/deactivate":                   {body: ok(strings.Replace(cert, `"inactive"`, `"pending_deletion"`, 1))},
		"DELETE " + certsPath + "/" + id:                                 {body: ok(cert)},
		"GET " + certsPath + "/" + id + "/download":                      {header: map[string]string{"Content-Type": "application/x-pem-file"}, body: string(ca.PEM())},
		"POST /client/v4/accounts/" + testAccount + "/mtls_certificates": {body: ok(`{"id":"` + id + `","name":"corp","ca":true,"certificates":` + jsonString(string(ca.PEM())) + `,"expires_on":"2030-01-01T00:00:00Z","issuer":"CN=corp","serial_number":"1","signature":"ECDSAWithSHA256","updated_at":"0001-01-01T00:00:00Z","uploaded_on":"2026-11-29T06:00:00Z"}`)},
	})
	c := r.client(t, WithUserAgent("certagent/test"))
	ctx := context.Background()

	g, err := c.Generate(ctx, 1826)
	require.NoError(t, err)
	assert.Equal(t, StatusInactive, g.BindingStatus)
	a, err := c.Activate(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, StatusPendingDeployment, a.BindingStatus)
	d, err := c.Deactivate(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, StatusPendingDeletion, d.BindingStatus)
	del, err := c.Delete(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, id, del.ID)
	pemBytes, err := c.Download(ctx, id, "pem")
	require.NoError(t, err)
	assert.Equal(t, ca.PEM(), pemBytes)
	up, err := c.Upload(ctx, "corp", string(ca.PEM()), string(ca.KeyPEM()))
	require.NoError(t, err)
	assert.True(t, up.CA)
	assert.True(t, up.UpdatedAt.IsZero())

	reqs := r.requests()
	require.Len(t, reqs, 6)
	assert.JSONEq(t, `{"validity_period_days":1826}`, reqs[0].Body)
	assert.Equal(t, "application/json", reqs[0].Header.Get("Content-Type"))
	assert.JSONEq(t, `{}`, reqs[1].Body, "activate sends an empty object")
	assert.JSONEq(t, `{}`, reqs[2].Body, "deactivate sends an empty object")
	assert.Equal(t, "DELETE", reqs[3].Method)
	assert.Empty(t, reqs[3].Body)
	assert.Equal(t, "format=pem", reqs[4].Query)
	var upBody UploadRequest
	require.NoError(t, json.Unmarshal([]byte(reqs[5].Body), &upBody))
	assert.Equal(t, UploadRequest{Name: "corp", Certificates: string(ca.PEM()), PrivateKey: string(ca.KeyPEM()), CA: true}, upBody)
	for _, rq := range reqs {
		assert.Equal(t, "certagent/test", rq.Header.Get("User-Agent"))
	}

	// Generate with 0 days leaves the default to the server.
	_, err = c.Generate(ctx, 0)
	require.NoError(t, err)
	assert.JSONEq(t, `{}`, r.requests()[6].Body)
}

func TestDownloadErrors(t *testing.T) {
	const id = "f174e90a-fafe-4643-bbbc-4a0ed4fc8415"
	r := newReplay(t, map[string]reply{
		"GET " + certsPath + "/" + id + "/download": {status: 200, header: map[string]string{"Content-Type": "application/x-pem-file"}},
	})
	_, err := r.client(t).Download(context.Background(), id, "pem")
	assert.ErrorIs(t, err, ErrMalformed)
	_, err = r.client(t).Download(context.Background(), "nope", "crt")
	assert.Equal(t, http.StatusNotFound, StatusCode(err))
}

func TestConfiguration(t *testing.T) {
	const id = "f174e90a-fafe-4643-bbbc-4a0ed4fc8415"
	conf := `{"created_at":"2024-10-17T00:00:00Z","updated_at":"0001-01-01T00:00:00Z","settings":{
		"tls_decrypt":{"enabled":true},
		"certificate":{"id":"` + id + `"},
		"custom_certificate":{"enabled":false,"id":"00000000-0000-0000-0000-000000000000","qs_pack_id":"00000000-0000-0000-0000-000000000000","created_at":"0001-01-01T00:00:00Z"},
		"fips":{"tls":true}}}`
	r := newReplay(t, map[string]reply{
		"GET " + configPath:   {body: ok(conf)},
		"PATCH " + configPath: {body: ok(conf)},
	})
	c := r.client(t)
	ctx := context.Background()
	got, err := c.GetConfiguration(ctx)
	require.NoError(t, err)
	require.NotNil(t, got.Settings.Certificate)
	assert.Equal(t, id, got.Settings.Certificate.ID)
	assert.True(t, got.UpdatedAt.IsZero())
	assert.Len(t, got.Settings.Extra, 3, "other settings are kept")

	// Writing it back keeps every collection.
	back, err := json.Marshal(got.Settings)
	require.NoError(t, err)
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(back, &m))
	assert.Len(t, m, 4)
	assert.JSONEq(t, `{"enabled":true}`, string(m["tls_decrypt"]))

	_, err = c.SetInUse(ctx, id)
	require.NoError(t, err)
	_, err = c.SetInUse(ctx, NilUUID)
	require.NoError(t, err)
	reqs := r.requests()
	require.Len(t, reqs, 3)
	assert.Equal(t, "PATCH", reqs[1].Method)
	assert.JSONEq(t, `{"settings":{"certificate":{"id":"`+id+`","in_use":true}}}`, reqs[1].Body)
	assert.JSONEq(t, `{"settings":{"certificate":{"id":"`+NilUUID+`"}}}`, reqs[2].Body)
}

func TestBadIDsNeverReachTheWire(t *testing.T) {
	r := newReplay(t, nil)
	c := r.client(t)
	ctx := context.Background()
	for _, id := range []string{"", ".", "..", "../x", "a/b", `a\b`, "a?b", "a#b", "a%2Fb", "a b", "a\nb", strings.Repeat("a", 129)} {
		t.Run(fmt.Sprintf("%q", id), func(t *testing.T) {
			_, err := c.Get(ctx, id)
			assert.ErrorIs(t, err, ErrBadID)
			_, err = c.Activate(ctx, id)
			assert.ErrorIs(t, err, ErrBadID)
			_, err = c.Deactivate(ctx, id)
			assert.ErrorIs(t, err, ErrBadID)
			_, err = c.Delete(ctx, id)
			assert.ErrorIs(t, err, ErrBadID)
			_, err = c.Download(ctx, id, "pem")
			assert.ErrorIs(t, err, ErrBadID)
		})
	}
	assert.Empty(t, r.requests())
}

func TestNewClient(t *testing.T) {
	tests := []struct {
		name, url, account, wantErr string
	}{
		{"https", "https://api.cloudflare.com/client/v4", testAccount, ""},
		{"http with trailing slash", "http://127.0.0.1:8080/client/v4/", testAccount, ""},
		{"ftp", "ftp://x/client/v4", testAccount, "scheme"},
		{"no host", "https:///client/v4", testAccount, "no host"},
		{"bad url", "https://[::1", testAccount, "control plane URL"},
		{"upper-case account", "https://x", strings.ToUpper(testAccount), "account id"},
		{"short account", "https://x", "abc", "account id"},
		{"account with path", "https://x", "../../../0123456789abcdef0123", "account id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(tt.url, tt.account, testToken)
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.account, c.AccountID())
		})
	}
}

func TestTime(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{`"2025-01-16T03:11:03.381992Z"`, time.Date(2025, 1, 16, 3, 11, 3, 381992000, time.UTC), false},
		{`"2055-01-09T03:06:00Z"`, time.Date(2055, 1, 9, 3, 6, 0, 0, time.UTC), false},
		{`"2025-01-16T05:11:03+02:00"`, time.Date(2025, 1, 16, 3, 11, 3, 0, time.UTC), false},
		{`"0001-01-01T00:00:00Z"`, time.Time{}, false},
		{`"0001-01-01T00:00:00+01:00"`, time.Time{}, false},
		{`""`, time.Time{}, false},
		{`"  "`, time.Time{}, false},
		{`null`, time.Time{}, false},
		{`"2025-01-16"`, time.Time{}, true},
		{`"yesterday"`, time.Time{}, true},
		{`1737000000`, time.Time{}, true},
		{`{}`, time.Time{}, true},
		{`"9999-12-31T23:00:00-05:00"`, time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var got Time
			err := json.Unmarshal([]byte(tt.in), &got)
			if tt.wantErr {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.True(t, got.Equal(tt.want), "got %v, want %v", got.Time, tt.want)
		})
	}
	b, err := json.Marshal(Time{})
	require.NoError(t, err)
	assert.Equal(t, `"0001-01-01T00:00:00Z"`, string(b))
	b, err = json.Marshal(Time{time.Date(2025, 1, 16, 5, 11, 3, 5, time.FixedZone("x", 7200))})
	require.NoError(t, err)
	assert.Equal(t, `"2025-01-16T03:11:03.000000005Z"`, string(b))
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"120", 2 * time.Minute},
		{"0", 0},
		{"-5", 0},
		{"999999999", 24 * time.Hour},
		{"Sun, 29 Nov 2026 06:01:00 GMT", time.Minute},
		{"Sun, 29 Nov 2026 05:00:00 GMT", 0},
		{"soon", 0},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, retryAfter(tt.in, now), "Retry-After %q", tt.in)
	}
}

// TestErrorsNeverCarryTheToken: a server or proxy that echoes the
// Authorization header in its error text must not put the token into our
// errors (they reach status.json, logs and terminals).
func TestErrorsNeverCarryTheToken(t *testing.T) {
	echo := envelopeErr(10000, "invalid token Bearer "+testToken+" (token "+testToken+")")
	tests := []struct {
		name string
		rep  reply
	}{
		{"401 envelope", reply{status: 401, body: echo}},
		{"200 success false", reply{status: 200, body: echo}},
		{"403 several errors", reply{status: 403, body: `{"success":false,"errors":[{"code":1,"message":"ok"},{"code":2,"message":"` + testToken + `"}],"messages":[],"result":null}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReplay(t, map[string]reply{"GET " + certsPath: tt.rep})
			_, err := r.client(t).List(context.Background())
			require.Error(t, err)
			assert.NotContains(t, err.Error(), testToken)
			assert.Contains(t, err.Error(), "REDACTED")
			var e *Error
			require.ErrorAs(t, err, &e)
			for _, m := range e.Errors {
				assert.NotContains(t, m.Message, testToken)
			}
		})
	}
}

func TestErrorMessageBounds(t *testing.T) {
	var errs []Message
	for i := range 8 {
		errs = append(errs, Message{Code: 1000 + i, Message: strings.Repeat("x", 500)})
	}
	msg := (&Error{Method: "GET", Path: "/p", StatusCode: 400, Errors: errs}).Error()
	assert.Contains(t, msg, "and 3 more")
	assert.Less(t, len(msg), 1400)
}

func TestStatusHelpers(t *testing.T) {
	assert.Equal(t, 0, StatusCode(errors.New("x")))
	assert.False(t, IsAuth(nil))
	wrapped := fmt.Errorf("agent: poll: %w", &Error{StatusCode: 403})
	assert.True(t, IsAuth(wrapped))
	assert.Equal(t, 403, StatusCode(wrapped))
	assert.Equal(t, 0, (&Error{}).Code())
	for _, s := range []BindingStatus{StatusPendingDeployment, StatusPendingDeletion, StatusInactive} {
		assert.False(t, s.Deployed(), "%s", s)
	}
}

// TestLongPollTimeout: a whole-request timeout must not cut a long-poll the
// client itself asked the server to hold.
func TestLongPollTimeout(t *testing.T) {
	hc := &http.Client{Timeout: 30 * time.Second}
	c, err := NewClient("https://example.test/client/v4", testAccount, testToken, WithHTTPClient(hc))
	require.NoError(t, err)
	assert.Same(t, c.hc, c.clientForWait(0))
	got := c.clientForWait(55 * time.Second)
	assert.Equal(t, 85*time.Second, got.Timeout)
	assert.NotNil(t, got.CheckRedirect, "the long-poll client refuses redirects too")
	assert.Equal(t, 30*time.Second, hc.Timeout, "the configured client is not changed")
	noLimit := &http.Client{}
	c, err = NewClient("https://example.test/client/v4", testAccount, testToken, WithHTTPClient(noLimit))
	require.NoError(t, err)
	assert.Same(t, c.hc, c.clientForWait(time.Minute))
}

// TestOldAndNewShapes: the client reads what certplane answered before it
// matched Cloudflare's schema and what it (and Cloudflare) answers now:
// activate 200 or 202, deactivate 200 or 201, settings.certificate with or
// without in_use, an upload with or without type.
func TestOldAndNewShapes(t *testing.T) {
	const id = "f174e90a-fafe-4643-bbbc-4a0ed4fc8415"
	ca := trusttest.NewCA(t)
	cert := realCert(id, "inactive", string(ca.PEM()), ca.FP.String(), true)
	upload := `{"id":"` + id + `","name":"corp","ca":true,"certificates":` + jsonString(string(ca.PEM())) + `,"expires_on":"2030-01-01T00:00:00Z","issuer":"CN=corp","serial_number":"1","signature":"ECDSAWithSHA256",`
	tests := []struct {
		name                   string
		activate, deactivate   int
		certificateSetting     string
		uploadTail, uploadType string
	}{
		{"old", 200, 200, `{"id":"` + id + `","in_use":true}`, `"updated_at":"0001-01-01T00:00:00Z","uploaded_on":"2026-11-29T06:00:00Z"}`, ""},
		{"new", 202, 201, `{"id":"` + id + `"}`, `"type":"custom","updated_at":"0001-01-01T00:00:00Z","uploaded_on":"2026-11-29T06:00:00Z"}`, TypeCustom},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conf := `{"created_at":"2024-10-17T00:00:00Z","updated_at":"2024-10-17T00:00:00Z","settings":{"certificate":` + tc.certificateSetting + `}}`
			r := newReplay(t, map[string]reply{
				"POST " + certsPath + "/" + id + "/activate":                     {status: tc.activate, body: ok(strings.Replace(cert, `"inactive"`, `"pending_deployment"`, 1))},
				"POST " + certsPath + "/" + id + "/deactivate":                   {status: tc.deactivate, body: ok(strings.Replace(cert, `"inactive"`, `"pending_deletion"`, 1))},
				"GET " + configPath:                                              {body: ok(conf)},
				"POST /client/v4/accounts/" + testAccount + "/mtls_certificates": {body: ok(upload + tc.uploadTail)},
			})
			c := r.client(t)
			ctx := context.Background()
			a, err := c.Activate(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, StatusPendingDeployment, a.BindingStatus)
			d, err := c.Deactivate(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, StatusPendingDeletion, d.BindingStatus)
			got, err := c.GetConfiguration(ctx)
			require.NoError(t, err)
			require.NotNil(t, got.Settings.Certificate)
			assert.Equal(t, id, got.Settings.Certificate.ID)
			up, err := c.Upload(ctx, "corp", string(ca.PEM()), string(ca.KeyPEM()))
			require.NoError(t, err)
			assert.Equal(t, id, up.ID)
			assert.Equal(t, tc.uploadType, up.Type)
		})
	}
}
