package linuxpkg_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/internal/nstest"
	"github.com/certagent/certagent/packaging/linuxpkg"
)

// The install tests run the machine's real dpkg, rpm and pacman, as root,
// inside a private mount namespace whose /etc, /usr and /var are
// copy-on-write overlays and whose /run is an empty tmpfs: the packages
// really install, upgrade and purge, and the host is left exactly as it was.
func TestMain(m *testing.M) {
	nstest.Main(m, nstest.Config{
		Overlays: []string{"/etc", "/usr", "/var"},
		Files:    []string{},
		Tmpfs:    []string{"/run"},
	})
}

// buildAgent builds the real certagent, stripped as releases are. It
// builds in the product's module, which packaging's module replaces with
// the parent directory: go list -m says where that is.
func buildAgent(dir string) (string, error) {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/certagent/certagent").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m github.com/certagent/certagent: %w", err)
	}
	out := filepath.Join(dir, "certagent")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./cmd/certagent")
	cmd.Dir = strings.TrimSpace(string(root))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/certagent: %v: %s", err, b)
	}
	return out, nil
}

// buildMkpkg builds cmd/mkpkg, the release packager, as releases build it:
// without -race. Compressing the 10 MiB agent into every format took
// about 30 s per version inside this -race test binary (2 s in a normal
// build), most of this package's wall time in CI; Build's own logic still
// runs under -race in TestReproducible and TestBuildBadOptions.
func buildMkpkg(dir string) (string, error) {
	mod, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/certagent/certagent/packaging").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m github.com/certagent/certagent/packaging: %w", err)
	}
	out := filepath.Join(dir, "mkpkg")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./cmd/mkpkg")
	cmd.Dir = strings.TrimSpace(string(mod))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/mkpkg: %v: %s", err, b)
	}
	return out, nil
}

// buildAll builds version's packages of every format around bin with
// mkpkg (a release's command line) and returns them by format.
func buildAll(mkpkg, bin, version, out string) (map[string]string, error) {
	binDir := filepath.Join(out, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, err
	}
	// A copy, not a symlink: the package would carry the link itself.
	b, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(binDir, "certagent-linux-amd64"), b, 0o755); err != nil {
		return nil, err
	}
	cmd := exec.Command(mkpkg, "-describe", "v"+version, "-bindir", binDir, "-out", out, "-linux-archs", "amd64", "linux")
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("mkpkg %s: %v: %s", version, err, stderr.Bytes())
	}
	// mkpkg prints linuxpkg.Build's paths, one a line, in Formats order.
	paths := strings.Fields(string(stdout))
	if len(paths) != len(linuxpkg.Formats) {
		return nil, fmt.Errorf("mkpkg %s: got %d packages %q, want %d", version, len(paths), paths, len(linuxpkg.Formats))
	}
	m := map[string]string{}
	for i, f := range linuxpkg.Formats {
		m[f] = paths[i]
	}
	return m, nil
}

// Inside the namespace the agent and each version's packages are built once
// and shared (read-only inputs) on the namespace's scratch tmpfs, which
// vanishes with it.
var (
	sharedAgent = sync.OnceValues(func() (string, error) { return buildAgent(nstest.Scratch()) })
	sharedMkpkg = sync.OnceValues(func() (string, error) { return buildMkpkg(nstest.Scratch()) })
	builds      sync.Map // version -> func() (map[string]string, error)
)

// buildPackages returns the packages of version for formats.
func buildPackages(t *testing.T, version string, formats ...string) map[string]string {
	t.Helper()
	var all map[string]string
	var err error
	if nstest.Inside() {
		once, _ := builds.LoadOrStore(version, sync.OnceValues(func() (map[string]string, error) {
			bin, err := sharedAgent()
			if err != nil {
				return nil, err
			}
			mkpkg, err := sharedMkpkg()
			if err != nil {
				return nil, err
			}
			out := filepath.Join(nstest.Scratch(), "pkg-"+version)
			return buildAll(mkpkg, bin, version, out)
		}))
		all, err = once.(func() (map[string]string, error))()
	} else {
		var bin, mkpkg string
		if bin, err = buildAgent(t.TempDir()); err == nil {
			if mkpkg, err = buildMkpkg(t.TempDir()); err == nil {
				all, err = buildAll(mkpkg, bin, version, t.TempDir())
			}
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, f := range formats {
		m[f] = all[f]
	}
	return m
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := runErr(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func runErr(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdin = nil // no terminal: a conffile prompt must fail, not hang
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	if err != nil {
		return b.String(), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b.String())
	}
	return b.String(), nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// controlPlane is a fake Cloudflare-compatible API serving one available
// root, minted here.
type controlPlane struct {
	URL, Account, Token string
	RootFile            string // the file name the dir store gives the root
}

func newControlPlane(t *testing.T) controlPlane {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		Subject:               pkix.Name{CommonName: "certagent packaging test root", Organization: []string{"certagent tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	var fp []string
	for _, b := range sum {
		fp = append(fp, fmt.Sprintf("%02X", b))
	}
	cp := controlPlane{Account: "0123456789abcdef0123456789abcdef", Token: "test-read-token",
		RootFile: fmt.Sprintf("certagent-%x.pem", sum)}
	cert := api.Certificate{
		ID: "6f1b2c3d-0000-4000-8000-000000000001", BindingStatus: "available",
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		Fingerprint: strings.Join(fp, ":"), IssuerOrg: "certagent tests",
		IssuerRaw: "CN=certagent packaging test root,O=certagent tests", Type: "gateway_managed",
		CreatedAt: api.Time{Time: now}, UpdatedAt: api.Time{Time: now},
		UploadedOn: api.Time{Time: now}, ExpiresOn: api.Time{Time: tmpl.NotAfter},
	}
	result, err := json.Marshal([]api.Certificate{cert})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer "+cp.Token {
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(api.Envelope{Errors: []api.Message{{Code: 10000, Message: "bad token"}}})
			return
		}
		if r.Method != http.MethodGet || r.URL.Path != "/client/v4/accounts/"+cp.Account+"/gateway/certificates" {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(api.Envelope{Errors: []api.Message{{Code: 7003, Message: "no route"}}})
			return
		}
		_ = json.NewEncoder(w).Encode(api.Envelope{Success: true, Errors: []api.Message{}, Messages: []api.Message{}, Result: result})
	}))
	t.Cleanup(srv.Close)
	cp.URL = srv.URL + "/client/v4"
	return cp
}

// writeManaged writes the site settings the way Ansible would: a file the
// package does not own.
func writeManaged(t *testing.T, cp controlPlane, store string) {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"control_plane_url": cp.URL, "account_id": cp.Account, "api_token": cp.Token,
		"stores": []string{"dir:" + store},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/etc/certagent/managed.json", b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// editConfig makes the admin's local change to the conffile.
func editConfig(t *testing.T) []byte {
	t.Helper()
	edited := []byte("{\n  \"stores\": [\"system\", \"nss\"],\n  \"log_level\": \"debug\"\n}\n")
	if err := os.WriteFile(linuxpkg.ConfigPath, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	return edited
}

// requireClean fails unless nothing of certagent is on the machine before a
// test installs it (the overlays start from the host's state).
func requireClean(t *testing.T) {
	t.Helper()
	for _, p := range []string{linuxpkg.BinPath, linuxpkg.ConfigDir, linuxpkg.StateDir} {
		if exists(p) {
			t.Fatalf("%s exists before the test installed anything: is certagent installed on this host?", p)
		}
	}
}
