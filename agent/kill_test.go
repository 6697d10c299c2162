package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/internal/atomicfile"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/bundle"
	"github.com/certagent/certagent/trust/dir"
	"github.com/certagent/certagent/trust/firefoxpolicy"
	"github.com/certagent/certagent/trust/trusttest"
)

// The kill-at-every-write test: a pass that installs and removes is killed
// (os.Exit at the Nth step of internal/atomicfile: temporary file created,
// written, synced, renamed; file removed, directory synced) for every N
// the pass reaches, in a re-executed test binary. After each kill no
// loader may find a file it should not (Go's SSL_CERT_DIR loader reads
// every file of a directory, dot-files included), and the next pass must
// leave the stores holding exactly the desired roots and no stray file.

const (
	killChildEnv = "CERTAGENT_TEST_KILL_CHILD"
	killURLEnv   = "CERTAGENT_TEST_KILL_URL"
	// killRunsEnv repeats the whole enumeration (100 for the soak run).
	killRunsEnv = "CERTAGENT_TEST_KILL_RUNS"
)

// killWorld is the file layout of one kill run under base.
type killWorld struct{ base string }

func (w killWorld) state() string  { return filepath.Join(w.base, "state") }
func (w killWorld) roots() string  { return filepath.Join(w.base, "roots") }
func (w killWorld) bundle() string { return filepath.Join(w.base, "bundle", "ca.pem") }
func (w killWorld) system() string { return filepath.Join(w.base, "system.pem") }
func (w killWorld) policy() string {
	return filepath.Join(w.base, "firefox", "policies", "policies.json")
}
func (w killWorld) ffCerts() string { return filepath.Join(w.base, "firefox", "certs") }

func (w killWorld) config(url string) *Config {
	return &Config{
		ControlPlaneURL: url, AccountID: testAccount, APIToken: testToken,
		PollInterval: time.Minute, RemoveRetired: true, StateDir: w.state(), LogLevel: "info",
		Stores: []string{"dir:" + w.roots(), "bundle:" + w.bundle(), "firefox-policy"},
	}
}

func (w killWorld) open(spec string) (trust.Store, error) {
	switch spec {
	case "dir:" + w.roots():
		return dir.New(w.roots()), nil
	case "bundle:" + w.bundle():
		return bundle.New(w.bundle(), bundle.WithSystemRoots(w.system())), nil
	case "firefox-policy":
		return firefoxpolicy.New(firefoxpolicy.Options{PolicyFile: w.policy(), CertDir: w.ffCerts(), SearchDirs: []string{}}), nil
	}
	return nil, fmt.Errorf("kill world: no store %q: %w", spec, trust.ErrUnavailable)
}

func (w killWorld) sync(t testing.TB, url string) *PassReport {
	t.Helper()
	a, err := New(w.config(url), Deps{OpenStore: w.open})
	require.NoError(t, err)
	rep, err := a.SyncOnce(context.Background(), false)
	require.NoError(t, err)
	return rep
}

// killChild is the re-executed pass (TestMain runs it instead of the
// tests when killChildEnv is set); it returns the exit code.
func killChild(base, url string) int {
	w := killWorld{base}
	a, err := New(w.config(url), Deps{OpenStore: w.open})
	if err != nil {
		fmt.Fprintln(os.Stderr, "kill child:", err)
		return 1
	}
	rep, err := a.SyncOnce(context.Background(), false)
	if err != nil || rep.Failed() {
		fmt.Fprintf(os.Stderr, "kill child: the pass failed: %v %+v\n", err, rep)
		return 1
	}
	return 0
}

func TestKillAtEveryWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary once per write step")
	}
	runs := 1
	if v := os.Getenv(killRunsEnv); v != "" {
		var err error
		runs, err = strconv.Atoi(v)
		require.NoError(t, err)
	}
	cas := trusttest.NewCAs(t, 4)
	A, B, C, S := cas[0], cas[1], cas[2], cas[3] // S is the bundle's "system" root
	names := map[trust.Fingerprint]string{A.FP: "A", B.FP: "B", C.FP: "C", S.FP: "S"}
	// The seed answer installs A and B; the next withdraws A and adds C.
	seedPlane, plane := newFakePlane(t), newFakePlane(t)
	seedPlane.add(A, api.StatusAvailable)
	seedPlane.add(B, api.StatusAvailable)
	plane.setStatus(plane.add(A, api.StatusAvailable), api.StatusInactive)
	plane.add(B, api.StatusAvailable)
	plane.add(C, api.StatusAvailable)
	// Store names hold absolute paths (and the ledger and the policy name
	// them), so every world is seeded in place rather than copied.
	seedWorld := func() killWorld {
		w := killWorld{t.TempDir()}
		require.NoError(t, os.WriteFile(w.system(), S.PEM(), 0o644))
		require.False(t, w.sync(t, seedPlane.URL()).Failed())
		return w
	}

	exe, err := os.Executable()
	require.NoError(t, err)
	total := 0
	for run := 0; run < runs; run++ {
		steps := 0
		for k := 1; ; k++ {
			w := seedWorld()
			cmd := exec.Command(exe)
			cmd.Env = append(os.Environ(), killChildEnv+"="+w.base, killURLEnv+"="+plane.URL(), atomicfile.CrashEnv+"="+strconv.Itoa(k))
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			crashed := errors.As(err, &ee) && ee.ExitCode() == atomicfile.CrashExitCode
			if err != nil && !crashed {
				t.Fatalf("step %d: the child failed: %v\n%s", k, err, out)
			}
			if crashed {
				// What loaders see right after the kill.
				checkLoadable(t, w, k, names, map[trust.Fingerprint]bool{A.FP: true, B.FP: true, C.FP: true})
				rep := w.sync(t, plane.URL())
				require.False(t, rep.Failed(), "step %d: the pass after the kill failed: %+v", k, rep.Results)
			}
			checkConverged(t, w, k, names, B, C, S)
			if !crashed {
				steps = k - 1
				break
			}
		}
		require.Greater(t, steps, 10, "the pass has that many write steps")
		total += steps
		if run == 0 {
			t.Logf("the pass has %d write steps; each was killed once per run", steps)
		}
	}
	t.Logf("%d run(s), %d kills, every one recovered exactly", runs, total)
}

// checkLoadable: right after a kill, each directory a loader reads holds
// only final files (ours, or the seed's), each complete; temporary files
// are in the private directory, which loaders do not descend into.
func checkLoadable(t *testing.T, w killWorld, k int, names map[trust.Fingerprint]string, allowed map[trust.Fingerprint]bool) {
	t.Helper()
	for _, e := range readDirNames(t, w.roots()) {
		if e == atomicfile.TempDirName {
			continue
		}
		// As Go's SSL_CERT_DIR loader would: every entry is read.
		b, err := os.ReadFile(filepath.Join(w.roots(), e))
		require.NoError(t, err, "step %d", k)
		certs, err := trust.ParsePEM(b)
		require.NoError(t, err, "step %d: %s in the dir store does not parse", k, e)
		require.Len(t, certs, 1, "step %d: %s", k, e)
		assert.Equal(t, dir.FileName(certs[0].FP), e, "step %d: a loader reads %s", k, e)
		assert.True(t, allowed[certs[0].FP], "step %d: %s holds %s", k, e, names[certs[0].FP])
	}
	for _, d := range []struct{ dir, file string }{
		{filepath.Dir(w.bundle()), filepath.Base(w.bundle())},
		{filepath.Dir(w.policy()), filepath.Base(w.policy())},
		{w.state(), ""},
	} {
		for _, e := range readDirNames(t, d.dir) {
			if e == atomicfile.TempDirName || e == d.file || (d.file == "" && (e == "ledger.json" || e == "status.json" || e == "lock" || e == "device_id")) {
				continue
			}
			t.Errorf("step %d: stray %s in %s", k, e, d.dir)
		}
	}
	b, err := os.ReadFile(w.bundle())
	require.NoError(t, err)
	_, err = trust.ParsePEM(b)
	require.NoError(t, err, "step %d: the bundle is whole", k)
	_, err = LoadLedger(filepath.Join(w.state(), "ledger.json"))
	require.NoError(t, err, "step %d: the ledger is whole", k)
}

// checkConverged: the stores hold exactly B and C (the bundle also S), the
// ledger says so, and no file is left that we did not mean to leave.
func checkConverged(t *testing.T, w killWorld, k int, names map[trust.Fingerprint]string, B, C, S *trusttest.CA) {
	t.Helper()
	fpNames := func(certs []*trust.Cert) []string {
		var out []string
		for _, c := range certs {
			out = append(out, names[c.FP])
		}
		sort.Strings(out)
		return out
	}
	want := []string{dir.FileName(B.FP), dir.FileName(C.FP)}
	sort.Strings(want)
	assert.Equal(t, want, readDirNames(t, w.roots()), "step %d: dir store", k)
	b, err := os.ReadFile(w.bundle())
	require.NoError(t, err)
	certs, err := trust.ParsePEM(b)
	require.NoError(t, err)
	assert.Equal(t, []string{"B", "C", "S"}, fpNames(certs), "step %d: bundle", k)
	assert.Equal(t, []string{"ca.pem"}, readDirNames(t, filepath.Dir(w.bundle())), "step %d: bundle dir", k)
	assert.Equal(t, []string{"policies.json"}, readDirNames(t, filepath.Dir(w.policy())), "step %d: policy dir", k)
	var pol struct {
		Policies struct {
			Certificates struct{ Install []string }
		}
	}
	pb, err := os.ReadFile(w.policy())
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(pb, &pol))
	var ffNames []string
	for _, p := range pol.Policies.Certificates.Install {
		fb, err := os.ReadFile(p)
		require.NoError(t, err, "step %d: the policy names %s", k, p)
		cs, err := trust.ParsePEM(fb)
		require.NoError(t, err)
		ffNames = append(ffNames, fpNames(cs)...)
	}
	sort.Strings(ffNames)
	assert.Equal(t, []string{"B", "C"}, ffNames, "step %d: firefox policy", k)
	assert.Equal(t, want, readDirNames(t, w.ffCerts()), "step %d: firefox certificate dir", k)
	// The device id is made on the first pass that can check in (the
	// fake plane answers the check-in with 404, so no secret is kept).
	assert.Equal(t, []string{"device_id", "ledger.json", "lock", "status.json"}, readDirNames(t, w.state()), "step %d: state dir", k)
	l, err := LoadLedger(filepath.Join(w.state(), "ledger.json"))
	require.NoError(t, err)
	var entries []string
	for _, e := range l.Entries {
		entries = append(entries, fmt.Sprintf("%s %s=%s", strings.SplitN(e.Store, ":", 2)[0], names[e.FP], e.State))
	}
	sort.Strings(entries)
	assert.Equal(t, []string{
		"bundle B=installed", "bundle C=installed", "dir B=installed", "dir C=installed",
		"firefox-policy B=installed", "firefox-policy C=installed",
	}, entries, "step %d: ledger", k)
}

func readDirNames(t *testing.T, d string) []string {
	t.Helper()
	ents, err := os.ReadDir(d)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// TestLeftoversOfOlderVersionsAreSwept: a killed write of an earlier
// version left .BASE.tmp-N next to its target, where Go's SSL_CERT_DIR
// loader reads it (a withdrawn root stayed trusted). The first pass sweeps
// those (ours only) and the new private directory's leftovers.
func TestLeftoversOfOlderVersionsAreSwept(t *testing.T) {
	plane := newFakePlane(t)
	cas := trusttest.NewCAs(t, 2)
	A, B := cas[0], cas[1]
	w := killWorld{t.TempDir()}
	require.NoError(t, os.WriteFile(w.system(), B.PEM(), 0o644))
	plane.add(A, api.StatusAvailable)
	require.False(t, w.sync(t, plane.URL()).Failed())

	plant := func(p string, b []byte) string {
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, b, 0o644))
		return p
	}
	ours := []string{
		plant(filepath.Join(w.roots(), "."+dir.FileName(B.FP)+".tmp-123456"), B.PEM()),
		plant(filepath.Join(w.roots(), atomicfile.TempDirName, dir.FileName(B.FP)+".tmp-99"), B.PEM()),
		plant(filepath.Join(filepath.Dir(w.bundle()), ".ca.pem.tmp-42"), B.PEM()),
		plant(filepath.Join(w.state(), ".ledger.json.tmp-7"), []byte("{")),
		plant(filepath.Join(w.state(), atomicfile.TempDirName, "status.json.tmp-8"), []byte("{")),
		plant(filepath.Join(filepath.Dir(w.policy()), ".policies.json.tmp-5"), []byte("{")),
	}
	theirs := []string{
		plant(filepath.Join(w.roots(), ".someone-else.pem.tmp-1"), B.PEM()),
		plant(filepath.Join(w.roots(), ".certagent-notahexname.pem.tmp-1"), B.PEM()),
		plant(filepath.Join(filepath.Dir(w.bundle()), ".other.pem.tmp-2"), B.PEM()),
	}
	rep := w.sync(t, plane.URL())
	require.False(t, rep.Failed())
	for _, p := range ours {
		assert.NoFileExists(t, p, "our leftover is swept")
	}
	for _, p := range theirs {
		assert.FileExists(t, p, "someone else's file stays")
	}
	assert.NoDirExists(t, filepath.Join(w.roots(), atomicfile.TempDirName))
	assert.NoDirExists(t, filepath.Join(w.state(), atomicfile.TempDirName))
}
