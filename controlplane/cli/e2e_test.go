package cli_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/cli"
	"github.com/certagent/certagent/trust"
)

// offsetClock is real time plus an offset tests can move forward: deploy
// delays run in real time while the 24-hour window can be crossed at once.
type offsetClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *offsetClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type server struct {
	url  string
	logs *lockedBuffer
	stop func()
}

// startServer runs `certplane serve` in-process on a free port.
func startServer(t *testing.T, dataDir string, clock *offsetClock, delay string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan int, 1)
	logs := &lockedBuffer{}
	go func() {
		done <- cli.Main(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--deploy-delay", delay},
			cli.Env{Stdout: logs, Stderr: logs, Now: clock.Now, Ready: func(a net.Addr) { ready <- a }})
	}()
	var addr net.Addr
	select {
	case addr = <-ready:
	case code := <-done:
		cancel()
		t.Fatalf("serve exited with %d: %s", code, logs.String())
	}
	var once sync.Once
	s := &server{url: "http://" + addr.String() + "/client/v4", logs: logs}
	s.stop = func() {
		once.Do(func() {
			cancel()
			code := <-done
			assert.Equal(t, 0, code, "serve exit code; logs:\n%s", logs.String())
		})
	}
	t.Cleanup(s.stop)
	return s
}

// runCLI runs one admin command and returns its stdout.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Main(context.Background(), args, cli.Env{Stdout: &out, Stderr: &errb})
	require.Equal(t, 0, code, "certplane %s: %s", strings.Join(args, " "), errb.String())
	return strings.TrimSpace(out.String())
}

func newClient(t *testing.T, url, account, token string) *api.Client {
	t.Helper()
	c, err := api.NewClient(url, account, token)
	require.NoError(t, err)
	return c
}

func requireAPIError(t *testing.T, err error, status, code int) {
	t.Helper()
	var ae *api.Error
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, status, ae.StatusCode, "HTTP status (%v)", err)
	assert.Equal(t, code, ae.Code(), "error code (%v)", err)
}

func find(certs []api.Certificate, id string) (api.Certificate, bool) {
	for _, c := range certs {
		if c.ID == id {
			return c, true
		}
	}
	return api.Certificate{}, false
}

// waitStatus polls the list until certificate id has status want. (Not
// a long-poll: those wake only for what agents act on, and pending_deletion
// -> inactive is not.)
func waitStatus(t *testing.T, c *api.Client, id string, want api.BindingStatus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	etag := ""
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		res, err := c.ListIfChanged(ctx, etag, 0)
		if errors.Is(err, api.ErrNotModified) {
			select {
			case <-tick.C:
			case <-ctx.Done():
				t.Fatalf("%s did not become %s", id, want)
			}
			continue
		}
		require.NoError(t, err, "waiting for %s to become %s", id, want)
		if got, ok := find(res.Certificates, id); ok && got.BindingStatus == want {
			return
		}
		etag = res.ETag
	}
}

func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	clock := &offsetClock{}
	db := "sqlite:" + filepath.Join(dir, "certplane.db")
	srv := startServer(t, dir, clock, "150ms")
	ctx := context.Background()

	account := runCLI(t, "account", "create", "--db", db, "--data-dir", dir, "--name", "acme")
	require.True(t, api.ValidAccountID(account), "account create printed %q", account)
	writeTok := runCLI(t, "token", "create", "--db", db, "--data-dir", dir, "--account", account, "--scope", "write")
	readTok := runCLI(t, "token", "create", "--db", db, "--data-dir", dir, "--account", account, "--scope", "read")
	w := newClient(t, srv.url, account, writeTok)
	r := newClient(t, srv.url, account, readTok)

	// A new account starts with one generated certificate, available and in use.
	certs, err := r.List(ctx)
	require.NoError(t, err)
	require.Len(t, certs, 1)
	first := certs[0]
	assert.Equal(t, api.StatusAvailable, first.BindingStatus)
	assert.True(t, first.InUse)
	assert.Equal(t, api.TypeGatewayManaged, first.Type)
	assert.Equal(t, "certplane", first.IssuerOrg)
	assert.Equal(t, "CN=Gateway CA - certplane G1 "+account+",O=certplane", first.IssuerRaw)
	tc, err := trust.ParseOnePEM([]byte(first.Certificate))
	require.NoError(t, err)
	assert.Equal(t, tc.FP.String(), first.Fingerprint)

	var gen []string
	t.Run("three generations a day, the fourth is refused with 429", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			c, err := w.Generate(ctx, 0)
			require.NoError(t, err)
			assert.Equal(t, api.StatusInactive, c.BindingStatus)
			assert.False(t, c.InUse)
			gen = append(gen, c.ID)
		}
		_, err := w.Generate(ctx, 30)
		requireAPIError(t, err, 429, 1100)
		certs, err := r.List(ctx)
		require.NoError(t, err)
		assert.Len(t, certs, 4, "the refused generation must leave nothing behind")
	})

	t.Run("activate: pending, then available", func(t *testing.T) {
		c, err := w.Activate(ctx, gen[0])
		require.NoError(t, err)
		assert.Equal(t, api.StatusPendingDeployment, c.BindingStatus)
		// Repeating an activation under way is harmless.
		again, err := w.Activate(ctx, gen[0])
		require.NoError(t, err)
		assert.Contains(t, []api.BindingStatus{api.StatusPendingDeployment, api.StatusAvailable}, again.BindingStatus)
		waitStatus(t, r, gen[0], api.StatusAvailable)
	})

	t.Run("turning one on demotes the other", func(t *testing.T) {
		// Not available yet: refused.
		_, err := w.SetInUse(ctx, gen[1])
		requireAPIError(t, err, 409, 1104)
		conf, err := w.SetInUse(ctx, gen[0])
		require.NoError(t, err)
		require.NotNil(t, conf.Settings.Certificate)
		assert.Equal(t, gen[0], conf.Settings.Certificate.ID)
		certs, err := r.List(ctx)
		require.NoError(t, err)
		now, _ := find(certs, gen[0])
		old, _ := find(certs, first.ID)
		assert.True(t, now.InUse)
		assert.False(t, old.InUse, "the previous certificate is demoted")
		assert.Equal(t, api.StatusAvailable, old.BindingStatus, "and stays available")
		got, err := w.GetConfiguration(ctx)
		require.NoError(t, err)
		assert.Equal(t, gen[0], got.Settings.Certificate.ID)
		// The certificate in use can be neither deactivated nor deleted.
		_, err = w.Deactivate(ctx, gen[0])
		requireAPIError(t, err, 409, 1103)
		_, err = w.Delete(ctx, gen[0])
		requireAPIError(t, err, 409, 1102)
	})

	t.Run("ten available, the eleventh refused", func(t *testing.T) {
		// Available now: first, gen[0]. Make 11 more candidates over 3 more days.
		cands := []string{gen[1], gen[2]}
		for len(cands) < 9 {
			clock.Advance(24*time.Hour + time.Minute)
			for i := 0; i < 3 && len(cands) < 9; i++ {
				c, err := w.Generate(ctx, 365)
				require.NoError(t, err)
				cands = append(cands, c.ID)
			}
		}
		for _, id := range cands[:8] {
			_, err := w.Activate(ctx, id)
			require.NoError(t, err)
		}
		// 2 + 8 = 10 available or pending.
		_, err := w.Activate(ctx, cands[8])
		requireAPIError(t, err, 409, 1101)
		for _, id := range cands[:8] {
			waitStatus(t, r, id, api.StatusAvailable)
		}
		_, err = w.Activate(ctx, cands[8])
		requireAPIError(t, err, 409, 1101)
		c, err := r.Get(ctx, cands[8])
		require.NoError(t, err)
		assert.Equal(t, api.StatusInactive, c.BindingStatus)
	})

	t.Run("delete is refused until inactive", func(t *testing.T) {
		id := gen[1] // available, not in use
		_, err := w.Delete(ctx, id)
		requireAPIError(t, err, 409, 1102)
		c, err := w.Deactivate(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, api.StatusPendingDeletion, c.BindingStatus)
		waitStatus(t, r, id, api.StatusInactive)
		c, err = w.Delete(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, id, c.ID)
		_, err = r.Get(ctx, id)
		requireAPIError(t, err, 404, 7003)
	})

	t.Run("download parses as the same certificate in PEM and DER", func(t *testing.T) {
		c, err := r.Get(ctx, gen[0])
		require.NoError(t, err)
		pemBytes, err := r.Download(ctx, gen[0], "pem")
		require.NoError(t, err)
		derBytes, err := r.Download(ctx, gen[0], "crt")
		require.NoError(t, err)
		block, rest := pem.Decode(pemBytes)
		require.NotNil(t, block)
		assert.Empty(t, bytes.TrimSpace(rest))
		assert.Equal(t, block.Bytes, derBytes)
		x, err := x509.ParseCertificate(derBytes)
		require.NoError(t, err)
		assert.Equal(t, c.Fingerprint, trust.FingerprintOf(x.Raw).String())
		assert.Equal(t, c.Certificate, string(pemBytes))
		assert.True(t, x.IsCA)
		_, err = r.Download(ctx, gen[0], "pfx")
		requireAPIError(t, err, 400, 1001)
	})

	t.Run("auth: read scope, other accounts, no token", func(t *testing.T) {
		_, err := r.Generate(ctx, 0)
		requireAPIError(t, err, 403, 10001)
		_, err = r.SetInUse(ctx, first.ID)
		requireAPIError(t, err, 403, 10001)
		other := runCLI(t, "account", "create", "--db", db, "--data-dir", dir, "--name", "other")
		otherTok := runCLI(t, "token", "create", "--db", db, "--account", other, "--scope", "write")
		_, err = newClient(t, srv.url, account, otherTok).List(ctx)
		requireAPIError(t, err, 403, 10000)
		_, err = newClient(t, srv.url, account, "").List(ctx)
		requireAPIError(t, err, 401, 10000)
		_, err = newClient(t, srv.url, account, writeTok[:len(writeTok)-1]+"x").List(ctx)
		requireAPIError(t, err, 401, 10000)
	})

	t.Run("custom upload appears in the gateway list", func(t *testing.T) {
		var ids []string
		for i := 0; i < 5; i++ {
			certPEM, keyPEM := mintCA(t, fmt.Sprintf("BYO %d", i))
			m, err := w.Upload(ctx, fmt.Sprintf("byo-%d", i), certPEM, keyPEM)
			require.NoError(t, err)
			assert.True(t, m.CA)
			assert.Equal(t, certPEM, m.Certificates)
			ids = append(ids, m.ID)
		}
		certPEM, keyPEM := mintCA(t, "one too many")
		_, err := w.Upload(ctx, "byo-6", certPEM, keyPEM)
		requireAPIError(t, err, 409, 1105)
		c, err := r.Get(ctx, ids[0])
		require.NoError(t, err)
		assert.Equal(t, api.TypeCustom, c.Type)
		assert.Equal(t, api.StatusInactive, c.BindingStatus)
		assert.Equal(t, "Example Inc.", c.IssuerOrg)
	})

	t.Run("logs name requests but never the token", func(t *testing.T) {
		logs := srv.logs.String()
		assert.Contains(t, logs, `"account":"`+account+`"`)
		assert.NotContains(t, logs, writeTok[len("cpt_")+17:])
		assert.NotContains(t, logs, readTok[len("cpt_")+17:])
		assert.NotContains(t, logs, "PRIVATE KEY")
	})

	t.Run("a restart mid-deployment still completes", func(t *testing.T) {
		srv.stop()
		slow := startServer(t, dir, clock, "1h")
		wc := newClient(t, slow.url, account, writeTok)
		clock.Advance(24 * time.Hour)
		fresh, err := wc.Generate(ctx, 0)
		require.NoError(t, err)
		c, err := wc.Activate(ctx, fresh.ID) // 9 available + this one
		require.NoError(t, err)
		require.Equal(t, api.StatusPendingDeployment, c.BindingStatus)
		slow.stop()
		// The process is gone with the deployment pending; an hour passes.
		clock.Advance(time.Hour + time.Second)
		again := startServer(t, dir, clock, "1h")
		rc := newClient(t, again.url, account, readTok)
		waitStatus(t, rc, fresh.ID, api.StatusAvailable)
	})
}

func TestConcurrentGenerateMakesExactlyThree(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir, &offsetClock{}, "1s")
	db := "sqlite:" + filepath.Join(dir, "certplane.db")
	account := runCLI(t, "account", "create", "--db", db, "--data-dir", dir, "--name", "race")
	tok := runCLI(t, "token", "create", "--db", db, "--account", account, "--scope", "write")
	c := newClient(t, srv.url, account, tok)
	ctx := context.Background()

	const n = 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, limited := 0, 0
	gate := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			_, err := c.Generate(ctx, 0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case api.StatusCode(err) == 429:
				limited++
			default:
				t.Errorf("generate: %v", err)
			}
		}()
	}
	close(gate)
	wg.Wait()
	assert.Equal(t, 3, ok)
	assert.Equal(t, n-3, limited)
	certs, err := c.List(ctx)
	require.NoError(t, err)
	assert.Len(t, certs, 1+3)
}

func TestCLIAdminShortcuts(t *testing.T) {
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "certplane.db")
	account := runCLI(t, "account", "create", "--db", db, "--data-dir", dir, "--name", "cli")
	id := runCLI(t, "cert", "generate", "--db", db, "--data-dir", dir, "--account", account, "--days", "30", "--key-type", "rsa-2048")
	assert.Len(t, id, 36)
	assert.Equal(t, "pending_deployment", runCLI(t, "cert", "activate", "--db", db, "--account", account, "--id", id))
	list := runCLI(t, "cert", "list", "--db", db, "--account", account)
	assert.Contains(t, list, id)
	assert.Contains(t, list, "pending_deployment")
	js := runCLI(t, "cert", "list", "--db", db, "--account", account, "--json")
	assert.Contains(t, js, `"binding_status": "pending_deployment"`)
	out := filepath.Join(dir, "root.crt")
	runCLI(t, "cert", "download", "--db", db, "--account", account, "--format", "crt", "--out", out, id)
	der, err := os.ReadFile(out)
	require.NoError(t, err)
	x, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	assert.Equal(t, x509.SHA256WithRSA, x.SignatureAlgorithm)

	// Refusals come back as a non-zero exit and a clear message.
	var stderr bytes.Buffer
	code := cli.Main(context.Background(), []string{"cert", "use", "--db", db, "--account", account, "--id", id},
		cli.Env{Stdout: &bytes.Buffer{}, Stderr: &stderr})
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr.String(), "only an available certificate can be turned on")
	assert.Equal(t, api.NilUUID, runCLI(t, "cert", "use", "--db", db, "--account", account, "--id", "none"))
	// Flags may follow the positional id.
	assert.Equal(t, "pending_deletion", runCLI(t, "cert", "deactivate", id, "--db", db, "--account", account))

	code = cli.Main(context.Background(), []string{"account", "create", "--db", db, "--data-dir", dir, "--name", "bad\x01name"},
		cli.Env{Stdout: &bytes.Buffer{}, Stderr: &stderr})
	assert.Equal(t, 1, code, "an unprintable account name is refused")

	var help bytes.Buffer
	assert.Equal(t, 0, cli.Main(context.Background(), []string{"--help"}, cli.Env{Stdout: &help, Stderr: &help}))
	assert.Contains(t, help.String(), "Example")
	help.Reset()
	assert.Equal(t, 0, cli.Main(context.Background(), []string{"serve", "-h"}, cli.Env{Stdout: &help, Stderr: &help}))
	assert.Contains(t, help.String(), "-deploy-delay")
	// A command group asked for help answers with the usage, not an error.
	for _, group := range []string{"account", "cert", "devices", "token"} {
		help.Reset()
		assert.Equal(t, 0, cli.Main(context.Background(), []string{group, "--help"}, cli.Env{Stdout: &help, Stderr: &help}), group)
		assert.Contains(t, help.String(), "certplane "+group+" ", group)
	}

	for _, args := range [][]string{
		{},
		{"bogus"},
		{"cert", "list", "--db", db, "--account", account, "--id", id}, // list names no certificate
		{"cert", "list", "--db", db, "--account", account, id},
		{"account", "create", "--db", db},
		{"token", "create", "--db", db, "--account", account, "--scope", "admin"},
		{"cert", "activate", "--db", db, "--account", account},
		{"cert", "frobnicate", "--db", db, "--account", account},
		{"serve", "--tls-cert", "x"},
	} {
		var stderr bytes.Buffer
		code := cli.Main(context.Background(), args, cli.Env{Stdout: &bytes.Buffer{}, Stderr: &stderr})
		assert.Equal(t, 2, code, "certplane %v: %s", args, stderr.String())
	}
}

// mintCA returns a fresh self-signed CA and its key, PEM.
func mintCA(t *testing.T, cn string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Example Inc."}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}

func TestServeRefusesAWrongSealKey(t *testing.T) {
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "certplane.db")
	runCLI(t, "account", "create", "--db", db, "--data-dir", dir, "--name", "acme")
	// Same database, another data directory: a new key would be created.
	other := t.TempDir()
	var stderr bytes.Buffer
	code := cli.Main(context.Background(), []string{"cert", "generate", "--db", db, "--data-dir", other, "--account", "0123456789abcdef0123456789abcdef"},
		cli.Env{Stdout: &bytes.Buffer{}, Stderr: &stderr})
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr.String(), "seal key does not open")
	_, err := os.Stat(filepath.Join(other, "seal.key"))
	assert.True(t, os.IsNotExist(err), "the stray key must not be left behind")
}

func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))

	db := "sqlite:" + filepath.Join(dir, "certplane.db")
	account := runCLI(t, "account", "create", "--db", db, "--data-dir", dir, "--name", "tls")
	tok := runCLI(t, "token", "create", "--db", db, "--account", account, "--scope", "read")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan net.Addr, 1)
	done := make(chan int, 1)
	logs := &lockedBuffer{}
	go func() {
		done <- cli.Main(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dir, "--tls-cert", certFile, "--tls-key", keyFile},
			cli.Env{Stdout: logs, Stderr: logs, Ready: func(a net.Addr) { ready <- a }})
	}()
	var addr net.Addr
	select {
	case addr = <-ready:
	case code := <-done:
		t.Fatalf("serve exited %d: %s", code, logs.String())
	}
	pool := x509.NewCertPool()
	parsed, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool.AddCert(parsed)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	c, err := api.NewClient("https://"+addr.String()+"/client/v4", account, tok, api.WithHTTPClient(hc))
	require.NoError(t, err)
	certs, err := c.List(context.Background())
	require.NoError(t, err)
	assert.Len(t, certs, 1)
	// Plain HTTP to the TLS port is not served, and says so in the envelope.
	_, err = newClient(t, "http://"+addr.String()+"/client/v4", account, tok).List(context.Background())
	assert.Error(t, err)
	resp, body := rawExchange(t, addr.String(), nil, []byte("GET /client/v4 HTTP/1.1\r\nHost: x\r\n\r\n"))
	requireEnvelope(t, resp, body, 400, controlplane.CodeBadRequest)
	assert.Contains(t, string(body), "HTTPS")
	// Under TLS too, what net/http answers by itself is the envelope.
	for _, tc := range errorRequests(addr.String()) {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawExchange(t, addr.String(), &tls.Config{RootCAs: pool}, tc.req)
			requireEnvelope(t, resp, body, tc.status, tc.code)
		})
	}
	assert.NotContains(t, logs.String(), "serving plain HTTP", "no plain-HTTP warning under TLS")
	cancel()
	assert.Equal(t, 0, <-done, "graceful shutdown; logs:\n%s", logs.String())
}

// TestTokenRevoke revokes a live agent token through the CLI against the
// database a running server uses: the very next request is refused.
func TestTokenRevoke(t *testing.T) {
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "certplane.db")
	srv := startServer(t, dir, &offsetClock{}, "150ms")
	ctx := context.Background()

	account := runCLI(t, "account", "create", "--db", db, "--data-dir", dir, "--name", "acme")
	readTok := runCLI(t, "token", "create", "--db", db, "--account", account, "--scope", "read")
	writeTok := runCLI(t, "token", "create", "--db", db, "--account", account, "--scope", "write")
	readID, _, ok := strings.Cut(strings.TrimPrefix(readTok, "cpt_"), ".")
	require.True(t, ok, "token %q has no id", readTok)
	other := runCLI(t, "account", "create", "--db", db, "--data-dir", dir, "--name", "other")
	otherTok := runCLI(t, "token", "create", "--db", db, "--account", other, "--scope", "read")
	otherID, _, _ := strings.Cut(strings.TrimPrefix(otherTok, "cpt_"), ".")

	r := newClient(t, srv.url, account, readTok)
	_, err := r.List(ctx)
	require.NoError(t, err, "the read token works before revocation")

	list := runCLI(t, "token", "list", "--db", db, "--account", account)
	assert.Contains(t, list, readID)
	assert.Contains(t, list, "read")
	assert.NotContains(t, list, readTok[len("cpt_")+17:], "token list must never print the secret")
	var js []struct {
		ID        string  `json:"id"`
		Scope     string  `json:"scope"`
		RevokedAt *string `json:"revoked_at"`
	}
	out := runCLI(t, "token", "list", "--db", db, "--account", account, "--json")
	require.NoError(t, json.Unmarshal([]byte(out), &js), out)
	require.Len(t, js, 2)
	assert.NotContains(t, out, readTok[len("cpt_")+17:])

	// Revoke by pasting the whole (leaked) token.
	runCLI(t, "token", "revoke", "--db", db, "--account", account, "--id", readTok)
	_, err = r.List(ctx)
	requireAPIError(t, err, 401, 10000)
	_, err = newClient(t, srv.url, account, writeTok).List(ctx)
	require.NoError(t, err, "revoking one token leaves the others working")

	// Twice is fine; the id alone works too.
	out = runCLI(t, "token", "revoke", "--db", db, "--account", account, "--id", readID, "--json")
	var rev struct {
		ID        string  `json:"id"`
		RevokedAt *string `json:"revoked_at"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rev), out)
	assert.Equal(t, readID, rev.ID)
	assert.NotNil(t, rev.RevokedAt)
	_, err = r.List(ctx)
	requireAPIError(t, err, 401, 10000)

	out = runCLI(t, "token", "list", "--db", db, "--account", account, "--json")
	js = nil
	require.NoError(t, json.Unmarshal([]byte(out), &js), out)
	for _, tk := range js {
		assert.Equal(t, tk.ID == readID, tk.RevokedAt != nil, "token %s revoked_at %v", tk.ID, tk.RevokedAt)
	}

	// Another account's token cannot be revoked through this account.
	var stderr bytes.Buffer
	code := cli.Main(ctx, []string{"token", "revoke", "--db", db, "--account", account, "--id", otherID},
		cli.Env{Stdout: &bytes.Buffer{}, Stderr: &stderr})
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr.String(), "no token "+otherID)
	_, err = newClient(t, srv.url, other, otherTok).List(ctx)
	require.NoError(t, err, "the other account's token still works")

	for _, args := range [][]string{
		{"token", "revoke", "--db", db, "--account", account},
		{"token", "revoke", "--db", db, "--account", account, "--id", "not-hex-at-all!"},
		{"token", "list", "--db", db},
		{"token", "frobnicate", "--db", db, "--account", account},
	} {
		var stderr bytes.Buffer
		code := cli.Main(ctx, args, cli.Env{Stdout: &bytes.Buffer{}, Stderr: &stderr})
		assert.Equal(t, 2, code, "certplane %v: %s", args, stderr.String())
	}
	// A malformed whole token is refused without echoing its secret.
	stderr.Reset()
	bad := "cpt_zz" + readTok[len("cpt_")+2:]
	code = cli.Main(ctx, []string{"token", "revoke", "--db", db, "--account", account, "--id", bad},
		cli.Env{Stdout: &bytes.Buffer{}, Stderr: &stderr})
	assert.Equal(t, 2, code)
	assert.NotContains(t, stderr.String(), readTok[len("cpt_")+17:])
}
