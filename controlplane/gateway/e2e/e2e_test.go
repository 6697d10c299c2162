// Package e2e is the product's headline test: a device running certagent
// browses inspected HTTPS through the certplane gateway without a single
// certificate error, through a rotation, and fails exactly when it should.
// It runs as root in a private mount namespace (internal/nstest) with the
// real Debian system store, a user's real NSS database, headless Chromium
// and curl; under CERTAGENT_E2E=1 a skip is a failure.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/agent"
	cfapi "github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/gateway"
	"github.com/certagent/certagent/controlplane/seal"
	"github.com/certagent/certagent/controlplane/storage"
	"github.com/certagent/certagent/controlplane/storage/sqlite"
	"github.com/certagent/certagent/internal/nstest"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/linuxca"
	"github.com/certagent/certagent/trust/nss"
	"github.com/certagent/certagent/trust/trusttest"
)

func TestMain(m *testing.M) { nstest.Main(m, nstest.Config{}) }

// origin is the site the device browses: its own CA is trusted only by the
// gateway (--upstream-ca), never by the device.
type origin struct {
	url  string
	mu   sync.Mutex
	seen map[string]bool
}

func marker(path string) string { return "ORIGIN-CONTENT " + path }

func startOrigin(t *testing.T, ca *trusttest.CA) *origin {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	o := &origin{url: "https://" + ln.Addr().String(), seen: map[string]bool{}}
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			o.mu.Lock()
			o.seen[r.URL.Path] = true
			o.mu.Unlock()
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprintf(w, "<html><body><p>%s</p></body></html>\n", marker(r.URL.Path))
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{ca.Issue(t).TLSCertificate()}},
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	go hs.ServeTLS(ln, "", "")
	t.Cleanup(func() { hs.Close() })
	return o
}

func (o *origin) saw(path string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seen[path]
}

type world struct {
	t       *testing.T
	svc     *controlplane.Service
	account string
	origin  *origin
	gw      *gateway.Gateway
	proxy   string // 127.0.0.1:PORT
	home    string
	agent   *agent.Agent
}

// chromium loads path through the gateway and reports whether the page
// loaded with the origin's content; a certificate rejection is false,
// anything in between fails the test.
func (w *world) chromium(path string) bool {
	t := w.t
	t.Helper()
	ud, err := os.MkdirTemp(nstest.Scratch(), "chromium-ud-")
	require.NoError(t, err)
	defer os.RemoveAll(ud)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nstest.ChromiumPath,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--proxy-server=http://"+w.proxy, "--proxy-bypass-list=<-loopback>",
		"--user-data-dir="+ud, "--dump-dom", w.origin.url+path)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "HOME=" + w.home}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	runErr := cmd.Run()
	saw, dom := w.origin.saw(path), strings.Contains(out.String(), marker(path))
	switch {
	case saw && dom:
		return true
	case !dom && runErr == nil && strings.Contains(stderr.String(), "ERR_CERT_AUTHORITY_INVALID"):
		return false
	case !saw && !dom && runErr == nil:
		t.Logf("chromium did not load %s, without ERR_CERT_AUTHORITY_INVALID on stderr:\n%s", path, stderr.String())
		return false
	}
	t.Fatalf("chromium %s: %v, origin saw it: %v, DOM has the content: %v\nstdout: %s\nstderr: %s", path, runErr, saw, dom, out.String(), stderr.String())
	return false
}

// curl fetches path through the gateway with the system store: true when
// it loads, false on a certificate rejection (exit 60).
func (w *world) curl(path string) bool {
	t := w.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nstest.CurlPath, "-sS", "--max-time", "30", "--proxy", "http://"+w.proxy, w.origin.url+path)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	switch {
	case err == nil && strings.Contains(out.String(), marker(path)):
		return true
	case code == 60:
		return false
	}
	t.Fatalf("curl %s: exit %d (%v)\nstdout: %s\nstderr: %s", path, code, err, out.String(), stderr.String())
	return false
}

// leaf returns the leaf the gateway presents for the origin, on a new
// connection.
func (w *world) leaf() *x509.Certificate {
	t := w.t
	t.Helper()
	pu, _ := url.Parse("http://" + w.proxy)
	var leaf *x509.Certificate
	tr := &http.Transport{
		Proxy: http.ProxyURL(pu),
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
			leaf = cs.PeerCertificates[0]
			return nil
		}},
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Get(w.origin.url + "/leaf")
	require.NoError(t, err)
	resp.Body.Close()
	require.NotNil(t, leaf)
	return leaf
}

func (w *world) cert(id string) storage.Certificate {
	c, err := w.svc.Rules().Get(context.Background(), w.account, id)
	require.NoError(w.t, err)
	return c
}

func parse(t *testing.T, c storage.Certificate) *x509.Certificate {
	x, err := x509.ParseCertificate(c.DER)
	require.NoError(t, err)
	return x
}

func (w *world) sync() {
	w.t.Helper()
	rep, err := w.agent.SyncOnce(context.Background(), false)
	require.NoError(w.t, err)
	require.False(w.t, rep.Failed(), "sync: %+v", rep)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(60 * time.Second) // a safety net, not a timing assertion
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestBrowseThroughTheGatewayAcrossARotation(t *testing.T) {
	nstest.Require(t)
	nstest.Tool(t, nstest.ChromiumPath, "chromium")
	nstest.Tool(t, nstest.CurlPath, "curl")
	certutil := nstest.Tool(t, nss.DefaultCertutil, "libnss3-tools")
	nstest.MinimalDebianStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// certplane: the deploy delay is an hour, so a root becomes available
	// only because the gateway loaded it.
	dir := t.TempDir()
	sealer, _, err := seal.Load("", dir)
	require.NoError(t, err)
	db, err := sqlite.Open(ctx, filepath.Join(dir, "certplane.db"))
	require.NoError(t, err)
	defer db.Close()
	svc, err := controlplane.New(db, controlplane.Options{Sealer: sealer, DeployDelay: time.Hour, PollInterval: 100 * time.Millisecond})
	require.NoError(t, err)
	go svc.Run(ctx)
	apiSrv := httptest.NewServer(svc.Handler(ctx))
	defer apiSrv.Close()
	acct, err := svc.CreateAccount(ctx, "acme")
	require.NoError(t, err)
	token, err := svc.CreateToken(ctx, acct.ID, storage.ScopeRead)
	require.NoError(t, err)

	// The origin, and the gateway that alone trusts its CA.
	originCA := trusttest.NewCA(t, trusttest.WithCommonName("Origin Private CA"))
	w := &world{t: t, svc: svc, account: acct.ID, origin: startOrigin(t, originCA)}
	w.gw, err = gateway.New(svc, gateway.Config{AccountID: acct.ID, ID: "e2e-gateway", UpstreamRoots: originCA.Pool(),
		RefreshInterval: 100 * time.Millisecond, ReportInterval: 200 * time.Millisecond, Logger: hclog.NewNullLogger()})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	w.proxy = ln.Addr().String()
	go w.gw.Serve(ln)
	go w.gw.Run(ctx)
	defer w.gw.Shutdown(context.Background())
	eventually(t, "the gateway to register", func() bool {
		gws, _ := svc.Rules().Gateways(ctx, acct.ID)
		return len(gws) == 1 && gws[0].Signing != ""
	})

	// The device: the real system store and one user's NSS database.
	w.home, err = os.MkdirTemp(nstest.Scratch(), "home-")
	require.NoError(t, err)
	nssdb := filepath.Join(w.home, ".pki", "nssdb")
	require.NoError(t, os.MkdirAll(nssdb, 0o700))
	out, err := exec.Command(certutil, "-N", "--empty-password", "-d", "sql:"+nssdb).CombinedOutput()
	require.NoError(t, err, "certutil -N: %s", out)
	user := platform.User{Name: "root", UID: 0, GID: 0, Home: w.home, Shell: "/bin/sh"}
	stores := map[string]trust.Store{
		"system": linuxca.New(linuxca.Options{}),
		"nss":    nss.New(nss.Options{Users: func() ([]platform.User, error) { return []platform.User{user}, nil }, SystemDB: "-"}),
	}
	w.agent, err = agent.New(&agent.Config{
		ControlPlaneURL: apiSrv.URL + controlplane.APIPrefix, AccountID: acct.ID, APIToken: token,
		PollInterval: time.Hour, Stores: []string{"system", "nss"}, RemoveRetired: true, StateDir: filepath.Join(dir, "agent"),
	}, agent.Deps{OpenStore: func(spec string) (trust.Store, error) { return stores[spec], nil }})
	require.NoError(t, err)

	root1 := parse(t, w.cert(acct.InUseID))

	// 1. Before certagent runs: the gateway's leaves are not trusted.
	require.False(t, w.chromium("/1-chromium-before"), "chromium trusted the gateway before certagent ran")
	require.False(t, w.curl("/1-curl-before"), "curl trusted the gateway before certagent ran")

	// 2. certagent syncs: the page loads, signed by the in-use root.
	w.sync()
	require.True(t, w.chromium("/2-chromium-synced"), "chromium after certagent sync")
	require.True(t, w.curl("/2-curl-synced"), "curl after certagent sync")
	require.NoError(t, w.leaf().CheckSignatureFrom(root1), "the leaf's issuer is the in-use root")

	// 3. Rotation, with a browser-side load loop running throughout.
	var loads, failures atomic.Int64
	var failed []string
	var failedMu sync.Mutex
	stopLoop := make(chan struct{})
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for i := 0; ; i++ {
			select {
			case <-stopLoop:
				return
			default:
			}
			path := fmt.Sprintf("/3-rotation-%d", i)
			ok := w.curlQuiet(path)
			loads.Add(1)
			if !ok {
				failures.Add(1)
				failedMu.Lock()
				failed = append(failed, path)
				failedMu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	c2, err := svc.Generate(ctx, acct.ID, controlplane.GenerateRequest{})
	require.NoError(t, err)
	got, err := svc.Rules().Activate(ctx, acct.ID, c2.ID)
	require.NoError(t, err)
	require.Equal(t, cfapi.StatusPendingDeployment, got.Status)
	eventually(t, "the gateway to load the new root", func() bool { return contains(w.gw.Loaded(), c2.Fingerprint) })
	eventually(t, "the new root to become available", func() bool { return w.cert(c2.ID).Status == cfapi.StatusAvailable })
	w.sync()
	require.True(t, w.chromium("/3-chromium-both-trusted"))
	_, err = svc.Use(ctx, acct.ID, c2.ID)
	require.NoError(t, err)
	eventually(t, "the switch to reach the gateway", func() bool { return w.gw.Signing() == c2.Fingerprint })
	require.True(t, w.chromium("/3-chromium-new-root"), "chromium after the switch")
	require.NoError(t, w.leaf().CheckSignatureFrom(parse(t, w.cert(c2.ID))), "the next connection is signed by the new root")
	time.Sleep(300 * time.Millisecond) // let the loop run on the new root too
	close(stopLoop)
	<-loopDone
	require.Zero(t, failures.Load(), "loads failed during the rotation: %v", failed)
	require.Greater(t, loads.Load(), int64(3))
	t.Logf("rotation: %d loads through the gateway, none failed", loads.Load())

	// 4. A root the device does not trust, forced on: the browser fails.
	c3, err := svc.Generate(ctx, acct.ID, controlplane.GenerateRequest{})
	require.NoError(t, err)
	_, err = svc.Rules().Activate(ctx, acct.ID, c3.ID)
	require.NoError(t, err)
	eventually(t, "the third root to become available", func() bool { return w.cert(c3.ID).Status == cfapi.StatusAvailable })
	_, err = svc.UseForce(ctx, acct.ID, c3.ID)
	require.NoError(t, err)
	eventually(t, "the forced switch to reach the gateway", func() bool { return w.gw.Signing() == c3.Fingerprint })
	assert.False(t, w.chromium("/4-chromium-untrusted-root"), "chromium must fail on a root the device does not trust")
	assert.False(t, w.curl("/4-curl-untrusted-root"), "curl must fail on a root the device does not trust")
}

// curlQuiet is curl for the load loop: any failure is false, never fatal
// (the loop runs off the test goroutine).
func (w *world) curlQuiet(path string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nstest.CurlPath, "-sS", "--max-time", "30", "--proxy", "http://"+w.proxy, w.origin.url+path)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	out, err := cmd.Output()
	return err == nil && strings.Contains(string(out), marker(path))
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
