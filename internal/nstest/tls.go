package nstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certagent/certagent/trust/trusttest"
)

// Tool locations on Debian; checks skip (or fail under E2E) without them.
const (
	CurlPath     = "/usr/bin/curl"
	ChromiumPath = "/usr/bin/chromium"
)

// checkTimeout bounds one client run. It is a safety net against a hung
// browser, not a timing assertion.
const checkTimeout = 120 * time.Second

// Server is a local HTTPS server on 127.0.0.1 whose leaf was signed by a
// test CA. Every path answers "TRUST-OK <path>"; the server records each path
// it served, which only happens after a completed handshake — the proof a
// client trusted the CA.
type Server struct {
	// URL is https://127.0.0.1:PORT, without a trailing slash.
	URL string

	mu   sync.Mutex // guards seen
	seen map[string]bool
}

// Serve starts a server whose leaf ca signs, and stops it when t ends.
func Serve(t testing.TB, ca *trusttest.CA) *Server {
	t.Helper()
	leaf := ca.Issue(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("nstest: listen: %v", err)
	}
	s := &Server{URL: "https://" + ln.Addr().String(), seen: make(map[string]bool)}
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			s.seen[r.URL.Path] = true
			s.mu.Unlock()
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprintf(w, "<html><body><p>%s</p></body></html>\n", Marker(r.URL.Path))
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate()}},
		// Rejected handshakes are the expected outcome of half the checks.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go hs.ServeTLS(ln, "", "")
	t.Cleanup(func() { hs.Close() })
	return s
}

// Marker is the text the page for path contains.
func Marker(path string) string { return "TRUST-OK " + path }

// Saw reports whether the server answered path (after a good handshake).
func (s *Server) Saw(path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[path]
}

// NewPath returns a path no client has asked for yet, so each check is
// judged on its own request.
func NewPath(kind string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return "/" + kind + "-" + hex.EncodeToString(b)
}

// cleanEnv is the environment the trust checks run with: no CA overrides
// (CI images set SSL_CERT_FILE, SSL_CERT_DIR and CURL_CA_BUNDLE, which would
// hide the system store) and no proxies.
func cleanEnv(extra ...string) []string {
	return append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}, extra...)
}

// CurlTrusts reports whether curl, in a new process with the system's
// default CA locations, trusts s. Any outcome other than a clean success or
// a certificate rejection fails t.
func CurlTrusts(t testing.TB, s *Server) bool {
	t.Helper()
	curl := Tool(t, CurlPath, "curl")
	path := NewPath("curl")
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, "-sS", "--noproxy", "*", "--max-time", "60", s.URL+path)
	cmd.Env = cleanEnv()
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	switch {
	case err == nil && strings.Contains(out.String(), Marker(path)) && s.Saw(path):
		return true
	case code == 60 && !s.Saw(path):
		// 60: "Peer certificate cannot be authenticated with known CA certificates".
		return false
	}
	t.Fatalf("nstest: curl %s: exit %d (%v), server saw the request: %v\nstdout: %s\nstderr: %s",
		path, code, err, s.Saw(path), out.String(), stderr.String())
	return false
}

// GoClientTrusts reports whether a Go client in a fresh process (the test
// binary in helper mode: x509.SystemCertPool is built anew) trusts s. The
// test binary's TestMain must call Main.
func GoClientTrusts(t testing.TB, s *Server) bool {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("nstest: %v", err)
	}
	path := NewPath("go")
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = cleanEnv(envHelper+"=goclient", envURL+"="+s.URL+path)
	out, err := cmd.CombinedOutput()
	code := cmd.ProcessState.ExitCode()
	switch {
	case code == 0 && strings.Contains(string(out), Marker(path)) && s.Saw(path):
		return true
	case code == 1 && !s.Saw(path):
		return false
	}
	t.Fatalf("nstest: go client %s: exit %d (%v), server saw the request: %v\n%s", path, code, err, s.Saw(path), out)
	return false
}

// runHelper runs a helper mode instead of tests and returns the exit code.
func runHelper(mode string) int {
	switch mode {
	case "goclient":
		return goClient(os.Getenv(envURL))
	}
	fmt.Fprintf(os.Stderr, "nstest: unknown helper mode %q\n", mode)
	return 2
}

// goClient fetches url with Go's default system roots: exit 0 trusted (the
// body is printed), 1 certificate rejected, 2 anything else.
func goClient(url string) int {
	pool, err := x509.SystemCertPool()
	if err != nil {
		fmt.Println("system cert pool:", err)
		return 2
	}
	c := &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Println(err)
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ua) {
			return 1
		}
		return 2
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	os.Stdout.Write(body)
	if resp.StatusCode != http.StatusOK {
		return 2
	}
	return 0
}

// ChromiumTrusts reports whether headless Debian chromium, run with HOME set
// to home (it reads home/.pki/nssdb) and a new profile directory, loads s.
// Chromium exits 0 whether or not the page loaded, so trusted means the
// server saw the request and the dumped DOM holds the page's marker;
// rejected means neither. Anything in between fails t.
func ChromiumTrusts(t testing.TB, s *Server, home string) bool {
	t.Helper()
	return ChromiumTrustsAs(t, s, -1, -1, home)
}

// ChromiumTrustsAs is ChromiumTrusts with chromium running as uid:gid, as a
// real user's browser does: files it creates in home (Chromium 146+ makes
// ~/.local/share/pki/nssdb on its first certificate check when no
// ~/.pki/nssdb exists) stay that user's. uid < 0 means as ourselves.
func ChromiumTrustsAs(t testing.TB, s *Server, uid, gid int, home string) bool {
	t.Helper()
	chromium := Tool(t, ChromiumPath, "chromium")
	path := NewPath("chromium")
	ud := t.TempDir()
	if Scratch() != "" {
		// Keep the browser's profile on the namespace's tmpfs.
		d, err := os.MkdirTemp(Scratch(), "chromium-ud-")
		if err != nil {
			t.Fatalf("nstest: %v", err)
		}
		defer os.RemoveAll(d)
		ud = d
	}
	if uid >= 0 {
		if err := os.Chown(ud, uid, gid); err != nil {
			t.Fatalf("nstest: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--no-proxy-server", "--user-data-dir="+ud, "--dump-dom", s.URL+path)
	cmd.Env = cleanEnv("HOME=" + home)
	if uid >= 0 {
		setCredential(cmd, uid, gid)
	}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	runErr := cmd.Run()
	saw, dom := s.Saw(path), strings.Contains(out.String(), Marker(path))
	switch {
	case saw && dom:
		return true
	case !saw && !dom && runErr == nil:
		if !strings.Contains(stderr.String(), "ERR_CERT_AUTHORITY_INVALID") {
			t.Logf("nstest: chromium rejected %s without ERR_CERT_AUTHORITY_INVALID on stderr:\n%s", path, stderr.String())
		}
		return false
	}
	t.Fatalf("nstest: chromium %s: %v, server saw the request: %v, DOM has the marker: %v\nstdout: %s\nstderr: %s",
		path, runErr, saw, dom, out.String(), stderr.String())
	return false
}
