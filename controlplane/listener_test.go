package controlplane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
)

func TestParseNetHTTPError(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		status int
		ok     bool
	}{
		{"431", "HTTP/1.1 431 Request Header Fields Too Large" + netHTTPErrorHeaders + "431 Request Header Fields Too Large", 431, true},
		{"400 with detail", "HTTP/1.1 400 Bad Request: missing required Host header" + netHTTPErrorHeaders + "400 Bad Request: missing required Host header", 400, true},
		{"handler answer", "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nDate: x\r\n\r\n{}", 0, false},
		{"handler text/plain with Date", "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nDate: x\r\n\r\n", 0, false},
		{"success", "HTTP/1.1 200 OK" + netHTTPErrorHeaders + "ok", 0, false},
		{"body chunk", `{"x":"HTTP/1.1 431 ` + netHTTPErrorHeaders, 0, false},
		{"short", "HTTP/1.1 4", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, _, ok := parseNetHTTPError([]byte(tc.in))
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.status, status)
		})
	}
}

// TestHandlersSeeTLS: with TLS terminated by Listener, handlers still get
// r.TLS (the dashboard's Secure cookies depend on it), and a panicking
// handler answers the 500 envelope.
func TestHandlersSeeTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)

	s := &Service{log: hclog.NewNullLogger()}
	mux := http.NewServeMux()
	mux.HandleFunc("/tls", func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || !r.TLS.HandshakeComplete {
			io.WriteString(w, "no TLS")
			return
		}
		io.WriteString(w, tls.VersionName(r.TLS.Version))
	})
	mux.HandleFunc("/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: s.recoverPanics(mux), ConnContext: ConnContext, ErrorLog: nil}
	go srv.Serve(Listener(ln, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}))
	t.Cleanup(func() { srv.Shutdown(context.Background()) })

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get("https://" + ln.Addr().String() + "/tls")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(b), "TLS 1.")

	resp, err = hc.Get("https://" + ln.Addr().String() + "/panic")
	require.NoError(t, err)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 500, resp.StatusCode)
	var env api.Envelope
	require.NoError(t, json.Unmarshal(b, &env), "%s", b)
	require.Len(t, env.Errors, 1)
	assert.Equal(t, CodeInternal, env.Errors[0].Code)

	// Without Listener (httptest), r.TLS stays what net/http set.
	rec := httptest.NewRecorder()
	s.recoverPanics(mux).ServeHTTP(rec, httptest.NewRequest("GET", "/tls", nil))
	assert.Equal(t, "no TLS", rec.Body.String())
}
