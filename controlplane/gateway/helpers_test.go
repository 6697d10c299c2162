package gateway_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/gateway"
	"github.com/certagent/certagent/controlplane/seal"
	"github.com/certagent/certagent/controlplane/storage/sqlite"
	"github.com/certagent/certagent/trust/trusttest"
)

// origin is a local HTTPS server whose own CA only the gateway trusts.
type origin struct {
	ca   *trusttest.CA
	addr string // 127.0.0.1:PORT
	port string
	hits atomic.Int64
	body []byte
}

func startOrigin(t testing.TB, body []byte) *origin {
	t.Helper()
	ca := trusttest.NewCA(t, trusttest.WithCommonName("origin test CA"))
	leaf := ca.Issue(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	o := &origin{ca: ca, addr: ln.Addr().String(), body: body}
	_, o.port, _ = net.SplitHostPort(o.addr)
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			o.hits.Add(1)
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("X-Origin-Proto", r.Proto)
			if r.URL.Path == "/echo-host" {
				fmt.Fprint(w, r.Host)
				return
			}
			w.Write(o.body)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate()}},
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	go hs.ServeTLS(ln, "", "")
	t.Cleanup(func() { hs.Close() })
	return o
}

// plane is a certplane database with one account, and a Service over it.
type plane struct {
	svc     *controlplane.Service
	account string
}

func newPlane(t testing.TB) *plane {
	t.Helper()
	dir := t.TempDir()
	sealer, _, err := seal.Load("", dir)
	require.NoError(t, err)
	b, err := sqlite.Open(context.Background(), filepath.Join(dir, "certplane.db"))
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	svc, err := controlplane.New(b, controlplane.Options{Sealer: sealer, DeployDelay: time.Hour})
	require.NoError(t, err)
	a, err := svc.CreateAccount(context.Background(), "acme")
	require.NoError(t, err)
	return &plane{svc: svc, account: a.ID}
}

// inUseRoot returns the account's in-use root certificate.
func (p *plane) inUseRoot(t testing.TB) *x509.Certificate {
	t.Helper()
	a, err := p.svc.Rules().Account(context.Background(), p.account)
	require.NoError(t, err)
	c, err := p.svc.Rules().Get(context.Background(), p.account, a.InUseID)
	require.NoError(t, err)
	x, err := x509.ParseCertificate(c.DER)
	require.NoError(t, err)
	return x
}

// proxyFixture is a running gateway.
type proxyFixture struct {
	gw   *gateway.Gateway
	addr string
	url  *url.URL
}

func startGateway(t testing.TB, p *plane, cfg gateway.Config) *proxyFixture {
	t.Helper()
	cfg.AccountID = p.account
	if cfg.ID == "" {
		cfg.ID = "gw-test"
	}
	gw, err := gateway.New(p.svc, cfg)
	require.NoError(t, err)
	_, err = gw.Refresh(context.Background())
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go gw.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		gw.Shutdown(ctx)
	})
	u, _ := url.Parse("http://" + ln.Addr().String())
	return &proxyFixture{gw: gw, addr: ln.Addr().String(), url: u}
}

// client returns an HTTP client that uses the gateway and trusts roots.
func (f *proxyFixture) client(roots *x509.CertPool, h2 bool) *http.Client {
	tr := &http.Transport{
		Proxy:               http.ProxyURL(f.url),
		TLSClientConfig:     &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2:   h2,
		MaxIdleConnsPerHost: 64,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func get(t testing.TB, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// rawProxy sends raw bytes to the gateway and returns its first answer:
// the status line, headers and up to 64 KiB of body.
func rawProxy(t testing.TB, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second)) // a safety net, not an assertion
	_, err = io.WriteString(c, req)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "no answer: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %s\r\n", resp.Proto, resp.Status)
	resp.Header.Write(&sb)
	sb.WriteString("\r\n")
	sb.Write(b)
	return sb.String()
}

func statusLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}
