// Package nstest runs a package's tests as root inside a private mount
// namespace whose trust directories are private copies, so tests can change
// the machine's real trust stores with the real tools (update-ca-certificates,
// certutil, keytool, trust) and prove the result with real TLS clients, while
// the host's stores stay exactly as they were.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { nstest.Main(m, nstest.Config{}) }
//
// When the test binary runs as root and is not yet inside, Main re-executes
// it with CLONE_NEWNS (Go also makes / recursively private in the child, so
// nothing propagates back), mounts a tmpfs scratch area, puts copy-on-write
// overlays over the trust directories (Config.Overlays), private copies over
// single files (Config.Files), empty tmpfs over Config.Tmpfs, masks Debian's
// update.d hooks (they run dpkg, which writes the host's /var/lib/dpkg),
// checks /proc/self/mountinfo and refuses to run any test (exit 3) unless
// every one of them is really private. Without root, or where the kernel
// refuses the namespace, the tests run unchanged and every test that calls
// Require skips — or fails when CERTAGENT_E2E=1, so CI cannot pass by
// skipping.
//
// Only mounts are private: a write to a path that is not under one of the
// overlays lands on the host. Tests must only write below the overlaid
// directories, Scratch(), or t.TempDir().
//
// The trust checks (CurlTrusts, GoClientTrusts, ChromiumTrusts,
// ChromiumTrustsAs, JavaTrusts) talk to a local HTTPS server (Serve) whose
// leaf a test CA (trusttest.NewCA) signed; each uses a fresh request path and
// decides from both the client's outcome and whether the server saw the
// request, failing the test on anything in between. GoClientTrusts runs the
// test binary again in a helper mode, so every check gets a fresh
// x509.SystemCertPool — Go caches the pool for the life of a process.
//
// The rest of the API:
//
//	Require(t)             skip (fail under E2E) unless inside a verified namespace
//	Skipf(t, …), E2E()     skip, or fail when CERTAGENT_E2E=1
//	Tool(t, path, pkg)     the tool's path, or skip naming the Debian package
//	Scratch()              a directory on the namespace's private tmpfs
//	HostPath(p)            the host's view of p (/proc/<host pid>/root/p)
//	IsPrivate(p), Mounts() mount checks from /proc/self/mountinfo
//	MinimalDebianStore(t)  shrink the namespaced Debian store to one root, once
//	CountPEM(path)         certificates in a PEM file
//
// A package's full-store tests must run before any test calls
// MinimalDebianStore (keep them sequential and first; call it after
// t.Parallel elsewhere).
package nstest

import (
	"fmt"
	"os"
	"testing"

	"github.com/certagent/certagent/internal/testenv"
)

// Environment variables shared between the parent, the namespaced child and
// the helper processes.
const (
	// envInside holds the scratch directory; set in the namespaced child.
	envInside = "CERTAGENT_NSTEST_INSIDE"
	// envReady is set once the namespace is set up, for our own children.
	envReady = "CERTAGENT_NSTEST_READY"
	// envHostPID is the pid of the parent, which stays in the host namespace.
	envHostPID = "CERTAGENT_NSTEST_HOST_PID"
	// envHelper selects a helper mode instead of running tests.
	envHelper = "CERTAGENT_NSTEST_HELPER"
	// envURL is the URL the Go client helper fetches.
	envURL = "CERTAGENT_NSTEST_URL"
	// EnvE2E turns skips into failures (set by .ci/run).
	EnvE2E = testenv.EnvE2E
)

// Exit codes of the namespaced child when it refuses to run tests.
const (
	// ExitNotIsolated means a directory that should be private is not.
	ExitNotIsolated = 3
)

// DefaultOverlays are the trust directories every package gets private
// copies of: Debian's system store and its anchors, the RHEL/SUSE layouts if
// present, Firefox's system policies and the JDKs (their cacerts). Missing
// directories are left alone (they cannot be mounted over without creating
// them on the host); Missing reports them.
var DefaultOverlays = []string{
	"/etc/ssl/certs",
	"/usr/local/share/ca-certificates",
	"/etc/ca-certificates",
	"/etc/pki",
	"/etc/firefox",
	"/usr/lib/jvm",
}

// DefaultFiles are single files replaced by a private copy (the directory
// that holds them is too broad to overlay: /etc).
var DefaultFiles = []string{"/etc/ca-certificates.conf"}

// Config says what Main makes private. The zero value means the defaults.
type Config struct {
	// Overlays are directories given a copy-on-write overlay; nil means
	// DefaultOverlays. Missing directories are skipped.
	Overlays []string
	// Files are regular files replaced by a bind-mounted private copy; nil
	// means DefaultFiles. Missing files are skipped.
	Files []string
	// Tmpfs are existing directories hidden under an empty private tmpfs,
	// e.g. /home for tests that walk every user's home.
	Tmpfs []string
	// KeepHooks keeps /etc/ca-certificates/update.d hooks. By default they
	// are removed inside the overlay: Debian's jks-keystore hook runs dpkg
	// triggers, which write the host's dpkg database.
	KeepHooks bool
}

func (c Config) withDefaults() Config {
	if c.Overlays == nil {
		c.Overlays = DefaultOverlays
	}
	if c.Files == nil {
		c.Files = DefaultFiles
	}
	return c
}

// Main runs m, inside a private mount namespace when it can (see the package
// doc), and exits with its code. It never returns.
func Main(m *testing.M, cfg Config) {
	if mode := os.Getenv(envHelper); mode != "" {
		os.Exit(runHelper(mode))
	}
	os.Exit(run(m, cfg.withDefaults()))
}

// Inside reports whether this process is the namespaced child with its
// private trust directories set up and verified.
func Inside() bool { return os.Getenv(envInside) != "" && insideVerified }

// insideVerified is set once by the child after its checks pass, before any
// test runs; tests only read it.
var insideVerified bool

// missing are configured directories that did not exist; set before tests run.
var missing []string

// Missing returns the configured directories and files that did not exist
// and were therefore not made private. Tests must not create them.
func Missing() []string { return append([]string(nil), missing...) }

// Scratch returns a directory on the namespace's private tmpfs; it vanishes
// with the namespace. Only valid Inside.
func Scratch() string { return os.Getenv(envInside) }

// E2E reports whether CERTAGENT_E2E=1 is set: skips become failures.
func E2E() bool { return testenv.E2E() }

// Skipf skips t, or fails it under CERTAGENT_E2E=1 so CI cannot pass by
// skipping what it was meant to run (testenv.Skipf).
func Skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	testenv.Skipf(t, format, args...)
}

// Require skips t (or fails it under CERTAGENT_E2E=1) unless it runs Inside
// a verified private mount namespace.
func Require(t testing.TB) {
	t.Helper()
	if !Inside() {
		Skipf(t, "nstest: needs root and a private mount namespace (%s)", whyNotInside())
	}
}

// whyNotInside explains, for skip messages, why we are not inside.
func whyNotInside() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	if reason := os.Getenv("CERTAGENT_NSTEST_WHY"); reason != "" {
		return reason
	}
	return "TestMain does not call nstest.Main, or the namespace could not be created"
}

// Tool returns path if it is an executable file, otherwise it skips t (or
// fails it under CERTAGENT_E2E=1) naming the Debian package that provides it.
func Tool(t testing.TB, path, pkg string) string {
	t.Helper()
	return testenv.RequireTool(t, path, pkg)
}

// HostPID returns the pid of the process that stayed in the host's mount
// namespace (0 outside). /proc/HostPID()/root/... shows the host's files.
func HostPID() int {
	var pid int
	fmt.Sscan(os.Getenv(envHostPID), &pid)
	return pid
}

// HostPath returns the path under which this namespaced process sees the
// host's version of p.
func HostPath(p string) string { return fmt.Sprintf("/proc/%d/root%s", HostPID(), p) }
