package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/internal/nstest"
	"github.com/certagent/certagent/internal/testenv"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/firefoxpolicy"
	"github.com/certagent/certagent/trust/linuxca"
	"github.com/certagent/certagent/trust/nss"
	"github.com/certagent/certagent/trust/runtimes"
	"github.com/certagent/certagent/trust/trusttest"
)

// The namespace gets private copies of /etc (users, nsswitch.conf, the
// profile.d and drop-in directories the runtimes store writes, Firefox's
// policies), /usr/local (the bundle), /var/lib (the extrausers passwd
// file), Firefox ESR's distribution directory, and an empty /home. /etc
// comes first: the default overlays below it stack on its copy.
func TestMain(m *testing.M) {
	overlays := append([]string{"/etc", "/usr/local", "/var/lib", "/usr/lib/firefox-esr"}, nstest.DefaultOverlays...)
	nstest.Main(m, nstest.Config{Overlays: overlays, Tmpfs: []string{"/home"}})
}

// The two users: alice is in /etc/passwd, dana only in the directory
// service stand-in (libnss-extrausers' /var/lib/extrausers/passwd).
var users = []struct {
	name      string
	uid       int
	directory bool
}{
	{name: "alice", uid: 7101},
	{name: "dana", uid: 7102, directory: true},
}

var usersOnce sync.Once

// setupUsers creates the users inside the namespace, once.
func setupUsers(t *testing.T) {
	t.Helper()
	nstest.Require(t)
	if _, err := os.Stat("/usr/lib/libnss_extrausers.so.2"); err != nil {
		testenv.Skipf(t, "libnss-extrausers is not installed (scripts/install-deps.sh): %v", err)
	}
	for _, p := range []string{"/etc", "/var/lib", "/home"} {
		require.True(t, nstest.IsPrivate(p), "%s must be private to the namespace", p)
	}
	var err error
	usersOnce.Do(func() { err = createUsers() })
	require.NoError(t, err)
}

func createUsers() error {
	appendTo := func(p, line string) error {
		f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = f.WriteString(line + "\n")
		return err
	}
	if err := os.MkdirAll("/var/lib/extrausers", 0o755); err != nil {
		return err
	}
	for _, u := range users {
		id := strconv.Itoa(u.uid)
		home := "/home/" + u.name
		passwd, shadow, group := "/etc/passwd", "/etc/shadow", "/etc/group"
		if u.directory {
			passwd, shadow, group = "/var/lib/extrausers/passwd", "/var/lib/extrausers/shadow", "/var/lib/extrausers/group"
		}
		for _, w := range []struct{ file, line string }{
			{passwd, fmt.Sprintf("%s:x:%s:%s:%s:%s:/bin/bash", u.name, id, id, u.name, home)},
			{shadow, u.name + ":*:19000:0:99999:7:::"},
			{group, fmt.Sprintf("%s:x:%s:", u.name, id)},
		} {
			if err := appendTo(w.file, w.line); err != nil {
				return err
			}
		}
		if err := os.MkdirAll(home, 0o700); err != nil {
			return err
		}
		if err := os.Chown(home, u.uid, u.uid); err != nil {
			return err
		}
	}
	conf, err := os.ReadFile("/etc/nsswitch.conf")
	if err != nil {
		return err
	}
	var out []string
	for _, l := range strings.Split(string(conf), "\n") {
		for _, db := range []string{"passwd", "group", "shadow"} {
			if strings.HasPrefix(l, db+":") {
				l = db + ": files extrausers"
			}
		}
		out = append(out, l)
	}
	return os.WriteFile("/etc/nsswitch.conf", []byte(strings.Join(out, "\n")), 0o644)
}

// TestDirectoryUserIsOnlyInNSS proves the stand-in: dana is not in
// /etc/passwd, NSS knows her, and certagent's user discovery finds her.
func TestDirectoryUserIsOnlyInNSS(t *testing.T) {
	setupUsers(t)
	passwd, err := os.ReadFile("/etc/passwd")
	require.NoError(t, err)
	assert.NotContains(t, string(passwd), "dana:")
	out, err := exec.Command("/usr/bin/getent", "passwd", "dana").Output()
	require.NoError(t, err)
	assert.Contains(t, string(out), "dana:x:7102:7102")
	found, err := platform.LocalUsers(platform.UsersOptions{ExcludeRoot: true})
	require.NoError(t, err)
	var names []string
	for _, u := range found {
		names = append(names, u.Name)
	}
	assert.Equal(t, []string{"alice", "dana"}, names)
}

// server is the HTTPS server every program talks to: a pip index, a git
// smart-HTTP remote and plain pages, all under one leaf the test CA signed.
type server struct {
	url string

	mu sync.Mutex // guards seen and tlsErrors
	// seen are the paths answered (after a completed handshake).
	seen []string
	// tlsErrors counts failed handshakes.
	tlsErrors int
}

func (s *server) saw(prefix string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.seen {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

func (s *server) handshakeErrors() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tlsErrors
}

func (s *server) Write(p []byte) (int, error) {
	if os.Getenv("E2E_DEBUG") != "" {
		os.Stderr.Write(p)
	}
	if bytes.Contains(p, []byte("TLS handshake error")) {
		s.mu.Lock()
		s.tlsErrors++
		s.mu.Unlock()
	}
	return len(p), nil
}

// The pip package the index offers.
const (
	pipProject = "certagent-probe"
	pipWheel   = "certagent_probe-1.0-py3-none-any.whl"
)

func serve(t *testing.T, ca *trusttest.CA) *server {
	t.Helper()
	gitRoot := t.TempDir()
	makeGitRepo(t, filepath.Join(gitRoot, "probe.git"))
	wheel := makeWheel(t)
	gitBackend := &cgi.Handler{
		Path: "/usr/lib/git-core/git-http-backend",
		Env:  []string{"GIT_PROJECT_ROOT=" + gitRoot, "GIT_HTTP_EXPORT_ALL=1"},
	}
	s := &server{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s.url = "https://" + ln.Addr().String()
	leaf := ca.Issue(t)
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			s.seen = append(s.seen, r.URL.Path)
			s.mu.Unlock()
			parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 3)
			switch {
			case len(parts) == 3 && strings.HasPrefix(parts[0], "git-"):
				// /git-NONCE/probe.git/...: the nonce tells the checks apart.
				r2 := r.Clone(r.Context())
				r2.URL.Path = "/" + parts[1] + "/" + parts[2]
				gitBackend.ServeHTTP(w, r2)
			case len(parts) >= 2 && strings.HasPrefix(parts[0], "pip-") && parts[1] == "simple":
				sum := sha256.Sum256(wheel)
				fmt.Fprintf(w, "<!DOCTYPE html><html><body><a href=\"/%s/files/%s#sha256=%x\">%s</a></body></html>\n", parts[0], pipWheel, sum, pipWheel)
			case len(parts) == 3 && strings.HasPrefix(parts[0], "pip-") && parts[1] == "files":
				w.Header().Set("Content-Type", "application/octet-stream")
				w.Write(wheel)
			default:
				w.Header().Set("Content-Type", "text/html")
				fmt.Fprintf(w, "<html><head><title>%s</title></head><body><p>%s</p></body></html>\n", nstest.Marker(r.URL.Path), nstest.Marker(r.URL.Path))
			}
		}),
		TLSConfig: nil,
		ErrorLog:  log.New(s, "", 0),
	}
	cert := leaf.TLSCertificate()
	hs.TLSConfig = tlsConfig(cert)
	go hs.ServeTLS(ln, "", "")
	t.Cleanup(func() { hs.Close() })
	return s
}

// makeGitRepo creates a bare repository with one commit.
func makeGitRepo(t *testing.T, bare string) {
	t.Helper()
	git := nstest.Tool(t, "/usr/bin/git", "git")
	work := t.TempDir()
	env := []string{"PATH=" + platform.DefaultPath, "HOME=" + work, "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid"}
	run := func(dir string, args ...string) {
		cmd := exec.Command(git, args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "git %v: %s", args, out)
	}
	run(work, "init", "-q", "-b", "main")
	require.NoError(t, os.WriteFile(filepath.Join(work, "README"), []byte("probe\n"), 0o644))
	run(work, "add", "README")
	run(work, "commit", "-q", "-m", "probe")
	run(work, "clone", "-q", "--bare", work, bare)
}

// makeWheel builds a minimal valid wheel for pip to download.
func makeWheel(t *testing.T) []byte {
	t.Helper()
	files := []struct{ name, body string }{
		{"certagent_probe/__init__.py", ""},
		{"certagent_probe-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: certagent-probe\nVersion: 1.0\n"},
		{"certagent_probe-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: certagent-e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	var record strings.Builder
	for _, f := range files {
		w, err := zw.Create(f.name)
		require.NoError(t, err)
		_, err = io.WriteString(w, f.body)
		require.NoError(t, err)
		sum := sha256.Sum256([]byte(f.body))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", f.name, base64.RawURLEncoding.EncodeToString(sum[:]), len(f.body))
	}
	record.WriteString("certagent_probe-1.0.dist-info/RECORD,,\n")
	w, err := zw.Create("certagent_probe-1.0.dist-info/RECORD")
	require.NoError(t, err)
	_, err = io.WriteString(w, record.String())
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// asUser runs script in user's login shell, as `su - USER -c` does for a
// person, and returns its output and exit code. The whole process group
// is killed when the timeout passes.
func asUser(t *testing.T, user, script string, timeout time.Duration) (string, int) {
	t.Helper()
	out, code, err := runAsUser(user, script, timeout)
	if err != nil {
		t.Fatalf("su - %s -c %q: %v\n%s", user, script, err, out)
	}
	return out, code
}

// runAsUser is asUser for goroutines other than the test's: it reports
// instead of failing the test.
func runAsUser(user, script string, timeout time.Duration) (string, int, error) {
	cmd := exec.Command("/bin/su", "-", user, "-c", script)
	cmd.Env = []string{"PATH=" + platform.DefaultPath, "LANG=C.UTF-8"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", -1, err
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-time.After(timeout):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}()
	err := cmd.Wait()
	close(done)
	code := cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		return out.String(), code, fmt.Errorf("%w (killed after %s?)", err, timeout)
	}
	return out.String(), code, nil
}

// tool is one program's trust check: the script it runs (given a URL
// prefix unique to the check), the exit code of a certificate rejection,
// and what its output then says.
type tool struct {
	name     string
	path     string // what the nonce path starts with
	script   func(base string) string
	rejected int
	says     string
}

var tools = []tool{
	{
		name: "node", path: "/node-",
		script: func(u string) string {
			return `node -e 'require("https").get(process.argv[1], r => { process.exit(r.statusCode === 200 ? 0 : 2) }).on("error", e => { console.log(e.code); process.exit(e.code === "UNABLE_TO_GET_ISSUER_CERT_LOCALLY" || e.code === "SELF_SIGNED_CERT_IN_CHAIN" || e.code === "UNABLE_TO_VERIFY_LEAF_SIGNATURE" ? 1 : 2) })' ` + u
		},
		rejected: 1, says: "UNABLE_TO",
	},
	{
		name: "python3 requests", path: "/requests-",
		script: func(u string) string {
			return `python3 -c 'import sys, requests
try:
    r = requests.get(sys.argv[1], timeout=30)
except requests.exceptions.SSLError as e:
    print("SSLError", e); sys.exit(1)
sys.exit(0 if r.status_code == 200 else 2)' ` + u
		},
		rejected: 1, says: "CERTIFICATE_VERIFY_FAILED",
	},
	{
		name: "pip", path: "/pip-",
		script: func(u string) string {
			return `d=$(mktemp -d) && python3 -m pip download --no-deps --no-cache-dir --disable-pip-version-check --retries 0 --timeout 30 -d "$d" --index-url ` + u + `/simple/ ` + pipProject
		},
		rejected: 1, says: "CERTIFICATE_VERIFY_FAILED",
	},
	{
		name: "git", path: "/git-",
		script: func(u string) string { return `git ls-remote ` + u + `/probe.git` },
		// git says "server certificate verification failed" (gnutls).
		rejected: 128, says: "certificate",
	},
	{
		name: "curl", path: "/curl-",
		script:   func(u string) string { return `curl -sS --noproxy '*' --max-time 60 ` + u + `/page` },
		rejected: 60, says: "certificate",
	},
}

// trusts runs tl as user against s and reports whether the handshake was
// trusted; anything but a clean success or the tool's certificate
// rejection fails t.
func trusts(t *testing.T, s *server, tl tool, user string) bool {
	t.Helper()
	prefix := nstest.NewPath(strings.Trim(tl.path, "/-"))
	out, code := asUser(t, user, tl.script(s.url+prefix), 3*time.Minute)
	saw := s.saw(prefix)
	switch {
	case code == 0 && saw:
		return true
	case code == tl.rejected && !saw && strings.Contains(out, tl.says):
		return false
	}
	t.Fatalf("%s as %s: exit %d, server saw the request: %v\n%s", tl.name, user, code, saw, out)
	return false
}

// trustTable returns, for user, which tools trust s.
func trustTable(t *testing.T, s *server, user string) map[string]bool {
	t.Helper()
	got := make(map[string]bool)
	for _, tl := range tools {
		got[tl.name] = trusts(t, s, tl, user)
	}
	return got
}

func want(trusted ...string) map[string]bool {
	m := make(map[string]bool)
	for _, tl := range tools {
		m[tl.name] = false
	}
	for _, n := range trusted {
		m[n] = true
	}
	return m
}

// wiringFiles are the paths the runtimes store may write, with what they
// held before (nil: absent).
func wiringFiles(t *testing.T) map[string][]byte {
	t.Helper()
	out := make(map[string][]byte)
	for _, p := range []string{runtimes.ProfileScript, runtimes.EnvironmentD, runtimes.SystemManagerConf, runtimes.UserManagerConf, runtimes.PipConf, filepath.Join(runtimes.DefaultDir, runtimes.BundleFile)} {
		b, err := os.ReadFile(p)
		if err == nil {
			out[p] = b
		} else {
			out[p] = nil
		}
	}
	return out
}

// TestRuntimesAsUsers: the runtimes store makes node, requests and pip
// trust the root for a local and a directory user in a login shell, and
// nothing else (curl and git follow the system store); withdrawing the
// root takes it away from all of them and leaves the files as they were.
func TestRuntimesAsUsers(t *testing.T) {
	setupUsers(t)
	for _, p := range []string{"/usr/bin/node", "/usr/bin/python3", "/usr/bin/git", "/usr/bin/curl", "/usr/lib/git-core/git-http-backend"} {
		nstest.Tool(t, p, "nodejs, python3-requests, python3-pip, git, curl")
	}
	nstest.MinimalDebianStore(t)
	ctx := context.Background()
	ca := trusttest.NewCA(t)
	s := serve(t, ca)
	before := wiringFiles(t)

	for _, u := range users {
		assert.Equal(t, want(), trustTable(t, s, u.name), "%s before certagent", u.name)
	}
	assert.Equal(t, want(), probeTable(t, ca.FP), "status's verdicts before certagent")

	rt := runtimes.New(runtimes.Options{})
	require.NoError(t, rt.Check(ctx))
	res, err := trust.Install(ctx, rt, ca.Cert)
	require.NoError(t, err)
	require.NoError(t, trust.FirstError(res))
	for _, u := range users {
		assert.Equal(t, want("node", "python3 requests", "pip"), trustTable(t, s, u.name), "%s with the runtimes store", u.name)
	}
	assert.Equal(t, want("node", "python3 requests", "pip"), probeTable(t, ca.FP), "status's verdicts agree with the programs")

	sys := linuxca.New(linuxca.Options{})
	res, err = trust.Install(ctx, sys, ca.Cert)
	require.NoError(t, err)
	require.NoError(t, trust.FirstError(res))
	for _, u := range users {
		assert.Equal(t, want("node", "python3 requests", "pip", "git", "curl"), trustTable(t, s, u.name), "%s with the runtimes and system stores", u.name)
	}
	assert.Equal(t, want("node", "python3 requests", "pip", "git", "curl"), probeTable(t, ca.FP), "status's verdicts agree with the programs")

	// Withdrawn from both, as the agent does: removals of our own copy.
	for _, st := range []trust.Store{rt, sys} {
		require.NoError(t, trust.FirstError(st.Apply(ctx, []trust.Change{{Op: trust.OpRemove, FP: ca.FP}})))
	}
	for _, u := range users {
		assert.Equal(t, want(), trustTable(t, s, u.name), "%s after the withdrawal", u.name)
	}
	assert.Equal(t, before, wiringFiles(t), "every file is as it was before")
	assert.Equal(t, want(), probeTable(t, ca.FP), "status's verdicts after the withdrawal")
}

// probeTable is what `certagent status` concludes for the same tools: the
// probe as a new login of dana's would see it (certagent's profile script,
// not this test process's environment), programs from /usr/bin.
func probeTable(t *testing.T, fp trust.Fingerprint) map[string]bool {
	t.Helper()
	wired := runtimes.WiredSettings("")
	found := runtimes.Probe(context.Background(), runtimes.ProbeOptions{
		LookPath: func(n string) (string, error) {
			p := filepath.Join("/usr/bin", n)
			if _, err := os.Stat(p); err != nil {
				return "", err
			}
			return p, nil
		},
		Getenv: func(n string) (string, string) { return wired[n], runtimes.ProfileScript },
		Home:   "/home/dana",
	})
	names := map[string]string{"node": "node", "python requests": "python3 requests", "pip": "pip", "git": "git", "curl": "curl"}
	got := want()
	for _, f := range found {
		name, ok := names[f.Runtime]
		if !ok {
			continue
		}
		trusted, known := f.Trusts(fp)
		require.True(t, known, "%s: %+v", f.Runtime, f.Sources)
		got[name] = trusted
	}
	return got
}

// The Firefox checks.

// firefoxProfile creates user's Firefox profile (listed in profiles.ini,
// as Firefox's profile manager makes it) and returns its directory.
func firefoxProfile(t *testing.T, user string) string {
	t.Helper()
	dir := "/home/" + user + "/.mozilla/firefox/certagent.e2e"
	out, code := asUser(t, user, `firefox-esr --headless --no-remote -CreateProfile "e2e `+dir+`"`, 2*time.Minute)
	require.Equal(t, 0, code, "firefox -CreateProfile: %s", out)
	require.DirExists(t, dir)
	return dir
}

// firefoxTrusts loads a fresh page of s in headless Firefox as user with
// profile, and reports whether it loaded. Firefox exits after a successful
// --screenshot but waits forever on a certificate error page, so: trusted
// means the server answered the page; rejected means a handshake failed
// and, after a grace period, the page was still not asked for (Firefox is
// then killed).
func firefoxTrusts(t *testing.T, s *server, user, profile string) bool {
	t.Helper()
	path := nstest.NewPath("firefox")
	errsBefore := s.handshakeErrors()
	shot := "/home/" + user + "/shot-" + strings.TrimPrefix(path, "/firefox-") + ".png"
	cmd := exec.Command("/bin/su", "-", user, "-c", "exec firefox-esr --headless --no-remote --profile "+profile+" --screenshot "+shot+" "+s.url+path)
	cmd.Env = []string{"PATH=" + platform.DefaultPath, "LANG=C.UTF-8"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// su puts Firefox in a process group of its own, which keeps the
	// output pipe open after su is gone: do not wait for it.
	cmd.WaitDelay = 5 * time.Second
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	kill := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		waitProfileFree(t, profile)
		<-exited
		// Firefox's children outlive the group kill by a moment; the
		// profile must be free before certutil touches it again.
		waitProfileFree(t, profile)
	}
	deadline := time.After(90 * time.Second)
	var rejectedAt <-chan time.Time
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-exited:
			if s.saw(path) {
				waitProfileFree(t, profile)
				return true
			}
			t.Fatalf("firefox %s exited without loading the page:\n%s", path, out.String())
		case <-tick.C:
			if s.saw(path) {
				select {
				case <-exited:
				case <-time.After(time.Minute):
					kill()
				}
				waitProfileFree(t, profile)
				return true
			}
			if rejectedAt == nil && s.handshakeErrors() > errsBefore {
				// The grace period is not a measurement: it only lets a
				// retry that would succeed show up before we call it.
				rejectedAt = time.After(5 * time.Second)
			}
		case <-rejectedAt:
			kill()
			if s.saw(path) {
				return true
			}
			return false
		case <-deadline:
			kill()
			t.Fatalf("firefox %s: neither loaded nor rejected in 3 minutes:\n%s", path, out.String())
		}
	}
}

// waitProfileFree waits until no process holds profile's lock any more.
func waitProfileFree(t *testing.T, profile string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		out, _ := exec.Command("/usr/bin/pgrep", "-f", "--", "--profile "+profile).Output()
		if len(bytes.TrimSpace(out)) == 0 {
			return
		}
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("firefox still holds %s", profile)
}

// nssStore is the nss store over the namespace's people only (never root's
// real home), found as the agent finds them: passwd file and NSS.
func nssStore() *nss.Store {
	return nss.New(nss.Options{SystemDB: "-", UsersOptions: platform.UsersOptions{ExcludeRoot: true}})
}

// TestFirefoxNSS: the nss store reaches the Firefox profile of a user who
// exists only in the directory service.
func TestFirefoxNSS(t *testing.T) {
	setupUsers(t)
	nstest.Tool(t, "/usr/bin/firefox-esr", "firefox-esr")
	nstest.Tool(t, nss.DefaultCertutil, "libnss3-tools")
	ctx := context.Background()
	ca := trusttest.NewCA(t)
	s := serve(t, ca)
	profile := firefoxProfile(t, "dana")
	assert.False(t, firefoxTrusts(t, s, "dana", profile), "before certagent")

	st := nssStore()
	res, err := trust.Install(ctx, st, ca.Cert)
	require.NoError(t, err)
	require.NoError(t, trust.FirstError(res))
	assert.Contains(t, targets(res), trust.Target{User: "dana", Path: profile}, "the directory user's profile is served")
	assert.True(t, firefoxTrusts(t, s, "dana", profile), "after the nss store installed the root")

	require.NoError(t, trust.FirstError(st.Apply(ctx, []trust.Change{{Op: trust.OpRemove, FP: ca.FP, Target: trust.Target{User: "dana", Path: profile}}})))
	assert.False(t, firefoxTrusts(t, s, "dana", profile), "after the withdrawal")
}

func targets(res []trust.Result) []trust.Target {
	var out []trust.Target
	for _, r := range res {
		out = append(out, r.Change.Target)
	}
	return out
}

// TestFirefoxPolicy: the policy makes Firefox trust the root; dropping the
// policy alone leaves Firefox's copy in the profile (still trusted), and
// the store's withdrawal, which also takes the copies out of every profile,
// makes Firefox reject the page again.
func TestFirefoxPolicy(t *testing.T) {
	setupUsers(t)
	nstest.Tool(t, "/usr/bin/firefox-esr", "firefox-esr")
	nstest.Tool(t, nss.DefaultCertutil, "libnss3-tools")
	ctx := context.Background()
	ca := trusttest.NewCA(t)
	s := serve(t, ca)
	profile := firefoxProfile(t, "alice")
	assert.False(t, firefoxTrusts(t, s, "alice", profile), "before certagent")

	policyOnly := firefoxpolicy.New(firefoxpolicy.Options{})
	st := firefoxpolicy.New(firefoxpolicy.Options{Profiles: nssStore()})
	require.NoError(t, st.Check(ctx))
	res, err := trust.Install(ctx, st, ca.Cert)
	require.NoError(t, err)
	require.NoError(t, trust.FirstError(res))
	assert.True(t, firefoxTrusts(t, s, "alice", profile), "after the policy installed the root")

	// The gotcha, with the policy's file logic alone.
	require.NoError(t, trust.FirstError(policyOnly.Apply(ctx, []trust.Change{{Op: trust.OpRemove, FP: ca.FP}})))
	assert.True(t, firefoxTrusts(t, s, "alice", profile), "the policy alone cannot withdraw: Firefox kept its copy")

	// The store's withdrawal: the policy entry (already gone) and the copy.
	res, err = trust.Install(ctx, st, ca.Cert)
	require.NoError(t, err)
	require.NoError(t, trust.FirstError(res))
	require.NoError(t, trust.FirstError(st.Apply(ctx, []trust.Change{{Op: trust.OpRemove, FP: ca.FP}})))
	assert.False(t, firefoxTrusts(t, s, "alice", profile), "after the withdrawal")
}

func tlsConfig(c tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{c}}
}

// TestRuntimesNoNewLogin: a login session that started while the store held
// one root trusts a root installed later, without logging in again: every
// variable names the bundle, which certagent rewrites in place.
func TestRuntimesNoNewLogin(t *testing.T) {
	setupUsers(t)
	nstest.Tool(t, "/usr/bin/node", "nodejs")
	ctx := context.Background()
	first, later := trusttest.NewCA(t), trusttest.NewCA(t)
	s := serve(t, later)
	rt := runtimes.New(runtimes.Options{})
	res, err := trust.Install(ctx, rt, first.Cert)
	require.NoError(t, err)
	require.NoError(t, trust.FirstError(res))
	t.Cleanup(func() { _, _ = trust.Uninstall(ctx, rt, first.FP, later.FP) })

	home := "/home/dana"
	for _, f := range []string{"ready", "go"} {
		_ = os.Remove(filepath.Join(home, f))
	}
	path := nstest.NewPath("node")
	node := tools[0]
	script := `touch ~/ready; while [ ! -e ~/go ]; do sleep 0.1; done; ` + node.script(s.url+path)
	type result struct {
		out  string
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		out, code, err := runAsUser("dana", script, 3*time.Minute)
		done <- result{out, code, err}
	}()
	// The session is up (its profile has run) before the new root exists.
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(home, "ready")); err == nil {
			break
		}
		require.Less(t, i, 1200, "the login shell never started")
		time.Sleep(100 * time.Millisecond)
	}
	res, err = trust.Install(ctx, rt, later.Cert)
	require.NoError(t, err)
	require.NoError(t, trust.FirstError(res))
	require.NoError(t, os.WriteFile(filepath.Join(home, "go"), nil, 0o644))
	r := <-done
	require.NoError(t, r.err)
	assert.Equal(t, 0, r.code, "node in the session that predates the root: %s", r.out)
	assert.True(t, s.saw(path))
}
