package runtimes

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

// fixture is a store whose every path is under one temporary root, with a
// distro bundle of one root.
type fixture struct {
	root, sys string
	store     *Store
	sysCA     *trusttest.CA
}

func newFixture(t *testing.T, withSystem bool) *fixture {
	t.Helper()
	f := &fixture{root: t.TempDir()}
	f.sys = filepath.Join(f.root, "etc/ssl/certs/ca-certificates.crt")
	if withSystem {
		f.sysCA = trusttest.NewCA(t)
		require.NoError(t, os.MkdirAll(filepath.Dir(f.sys), 0o755))
		require.NoError(t, os.WriteFile(f.sys, f.sysCA.Cert.PEM(), 0o644))
	}
	f.store = New(Options{
		Dir:         filepath.Join(f.root, "usr/local/share/certagent/runtimes"),
		SystemRoots: []string{f.sys},
		Root:        f.root,
	})
	return f
}

func (f *fixture) read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.root, p))
	require.NoError(t, err)
	return string(b)
}

// tree lists every file under root with its content, for "restored as it
// was" checks.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[strings.TrimPrefix(p, root)] = string(b)
		return err
	}))
	return out
}

func TestConformance(t *testing.T) {
	trusttest.Run(t, func(t *testing.T) trust.Store {
		return newFixture(t, true).store
	}, trusttest.Options{
		Plant:            plantByHand,
		PlantedRemovable: true,
		Parallel:         true,
	})
}

// plantByHand appends c to the bundle as an administrator would.
func plantByHand(t *testing.T, st trust.Store, c *trust.Cert) {
	s := st.(*Store)
	tmp := trusttest.NewCA(t)
	ctx := context.Background()
	require.NoError(t, trust.FirstError(s.Apply(ctx, []trust.Change{{Op: trust.OpInstall, FP: tmp.FP, Cert: tmp.Cert}})))
	fh, err := os.OpenFile(s.BundlePath(), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = fh.Write(append([]byte("\n# added by the admin\n"), c.PEM()...))
	require.NoError(t, err)
	require.NoError(t, fh.Close())
	require.NoError(t, trust.FirstError(s.Apply(ctx, []trust.Change{{Op: trust.OpRemove, FP: tmp.FP}})))
}

func TestWiringFollowsOurRoots(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	// Someone else's files next to ours, and what must stay as it was.
	other := filepath.Join(f.root, "etc/profile.d/vte.sh")
	require.NoError(t, os.MkdirAll(filepath.Dir(other), 0o755))
	require.NoError(t, os.WriteFile(other, []byte("# vte\n"), 0o644))
	before := tree(t, f.root)

	a, b := trusttest.NewCA(t), trusttest.NewCA(t)
	res, err := trust.Install(ctx, f.store, a.Cert, b.Cert)
	require.NoError(t, err)
	require.NoError(t, trust.FirstError(res))

	bundle := f.store.BundlePath()
	prof := f.read(t, ProfileScript)
	for _, v := range Vars {
		assert.Contains(t, prof, `[ -n "${`+v.Name+`:-}" ] || export `+v.Name+"="+bundle)
		assert.Contains(t, f.read(t, EnvironmentD), v.Name+"=${"+v.Name+":-"+bundle+"}\n")
		assert.Contains(t, f.read(t, SystemManagerConf), "DefaultEnvironment="+v.Name+"="+bundle+"\n")
		assert.Contains(t, f.read(t, UserManagerConf), "DefaultEnvironment="+v.Name+"="+bundle+"\n")
	}
	assert.Contains(t, prof, "if [ -r "+bundle+" ]; then")
	assert.NotContains(t, prof, "SSL_CERT_FILE")
	assert.Equal(t, header+"\n[global]\ncert = "+bundle+"\n", f.read(t, PipConf))
	n, err := countIn(bundle, a.FP, b.FP, f.sysCA.FP)
	require.NoError(t, err)
	assert.Equal(t, 3, n, "the bundle holds the system root and both of ours")

	// One withdrawn: the wiring stays for the other.
	require.NoError(t, trust.FirstError(f.store.Apply(ctx, []trust.Change{{Op: trust.OpRemove, FP: a.FP}})))
	assert.FileExists(t, filepath.Join(f.root, ProfileScript))
	// The last one goes: everything is as it was.
	require.NoError(t, trust.FirstError(f.store.Apply(ctx, []trust.Change{{Op: trust.OpRemove, FP: b.FP}})))
	assert.Equal(t, before, tree(t, f.root))
	assert.NoFileExists(t, bundle)
}

func countIn(path string, fps ...trust.Fingerprint) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	certs, err := trust.ParsePEM(b)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range certs {
		for _, fp := range fps {
			if c.FP == fp {
				n++
			}
		}
	}
	return n, nil
}

func TestOthersFilesAndValuesAreKept(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	pip := filepath.Join(f.root, PipConf)
	require.NoError(t, os.MkdirAll(filepath.Dir(pip), 0o755))
	require.NoError(t, os.WriteFile(pip, []byte("[global]\nindex-url = https://pypi.corp\n"), 0o644))
	before := tree(t, f.root)
	ca := trusttest.NewCA(t)
	res, err := trust.Install(ctx, f.store, ca.Cert)
	require.NoError(t, err)
	require.NoError(t, trust.FirstError(res), "someone else's pip.conf is left alone, not an error")
	assert.Equal(t, "[global]\nindex-url = https://pypi.corp\n", f.read(t, PipConf))
	ok, err := f.store.wire.wired(ctx, Settings(f.store.BundlePath(), true))
	require.NoError(t, err)
	assert.True(t, ok, "their pip.conf counts as done")
	_, err = trust.Uninstall(ctx, f.store, ca.FP)
	require.NoError(t, err)
	assert.Equal(t, before, tree(t, f.root))

	// A file of ours by name that someone else wrote is refused, and the
	// install is reported failed rather than done.
	prof := filepath.Join(f.root, ProfileScript)
	require.NoError(t, os.MkdirAll(filepath.Dir(prof), 0o755))
	require.NoError(t, os.WriteFile(prof, []byte("export FOO=1\n"), 0o644))
	res, err = trust.Install(ctx, f.store, ca.Cert)
	require.NoError(t, err)
	require.Len(t, res, 1)
	assert.Equal(t, trust.StatusFailed, res[0].Status)
	assert.ErrorContains(t, res[0].Err, "not written by certagent")
	assert.Equal(t, "export FOO=1\n", f.read(t, ProfileScript))
}

func TestWithoutSystemRootsOnlyAdditiveVariables(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	ca := trusttest.NewCA(t)
	res, err := trust.Install(ctx, f.store, ca.Cert)
	require.NoError(t, err)
	require.NoError(t, trust.FirstError(res))
	prof := f.read(t, ProfileScript)
	assert.Contains(t, prof, "NODE_EXTRA_CA_CERTS")
	for _, v := range Vars {
		if v.Replaces {
			assert.NotContains(t, prof, v.Name, "a bundle without the system roots must not replace a runtime's store")
		}
	}
	assert.NoFileExists(t, filepath.Join(f.root, PipConf))

	// The distro bundle appears: the replacing variables follow at the
	// next pass.
	sys := trusttest.NewCA(t)
	require.NoError(t, os.MkdirAll(filepath.Dir(f.sys), 0o755))
	require.NoError(t, os.WriteFile(f.sys, sys.Cert.PEM(), 0o644))
	wrote, err := f.store.Refresh(ctx)
	require.NoError(t, err)
	assert.True(t, wrote)
	assert.Contains(t, f.read(t, ProfileScript), "REQUESTS_CA_BUNDLE")
	assert.FileExists(t, filepath.Join(f.root, PipConf))
}

func TestRefreshRepairsWiring(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	ca := trusttest.NewCA(t)
	res, err := trust.Install(ctx, f.store, ca.Cert)
	require.NoError(t, err)
	require.NoError(t, trust.FirstError(res))
	wrote, err := f.store.Refresh(ctx)
	require.NoError(t, err)
	assert.False(t, wrote, "nothing to do writes nothing")
	want := f.read(t, EnvironmentD)
	// A later root changes the bundle only: sessions already running
	// keep pointing at the same file and see it without a new login.
	wiring := tree(t, filepath.Join(f.root, "etc"))
	more := trusttest.NewCA(t)
	res, err = trust.Install(ctx, f.store, more.Cert)
	require.NoError(t, err)
	require.NoError(t, trust.FirstError(res))
	assert.Equal(t, wiring, tree(t, filepath.Join(f.root, "etc")))
	n, err := countIn(f.store.BundlePath(), more.FP)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	require.NoError(t, os.Remove(filepath.Join(f.root, EnvironmentD)))
	wrote, err = f.store.Refresh(ctx)
	require.NoError(t, err)
	assert.True(t, wrote)
	assert.Equal(t, want, f.read(t, EnvironmentD))
}

func TestCheckRefusesUnsafePath(t *testing.T) {
	for _, dir := range []string{"/opt/my roots", "/opt/$HOME", "/opt/a\"b", "/opt/a;b", "relative/dir"} {
		t.Run(dir, func(t *testing.T) {
			s := New(Options{Dir: dir, Root: t.TempDir()})
			err := s.Check(context.Background())
			require.Error(t, err)
			assert.ErrorIs(t, err, trust.ErrUnavailable)
		})
	}
}

// recorder is a Runner that records commands and answers from a table.
type recorder struct {
	mu      sync.Mutex
	cmds    []string
	answers map[string]string
}

func (r *recorder) Run(_ context.Context, c platform.Cmd) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	line := strings.Join(append([]string{filepath.Base(c.Path)}, c.Args...), " ")
	r.cmds = append(r.cmds, line)
	return []byte(r.answers[line]), nil
}

func TestRunningManagerEnvironment(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "run/systemd/system"), 0o755))
	rec := &recorder{answers: map[string]string{
		// An admin already set AWS_CA_BUNDLE for every service: theirs stays.
		"systemctl show-environment": "LANG=C.UTF-8\nPATH=/usr/bin\nAWS_CA_BUNDLE=/etc/corp/aws.pem\n",
	}}
	w := &fileWiring{root: root, systemctl: "/usr/bin/systemctl", run: rec, log: hclog.NewNullLogger()}
	ctx := context.Background()
	set := Settings("/b.pem", true)
	require.NoError(t, w.wire(ctx, set))
	assert.Equal(t, []string{
		"systemctl show-environment",
		"systemctl set-environment NODE_EXTRA_CA_CERTS=/b.pem REQUESTS_CA_BUNDLE=/b.pem PIP_CERT=/b.pem CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE=/b.pem",
	}, rec.cmds)
	// Unchanged drop-in: the manager is not asked again.
	rec.cmds = nil
	require.NoError(t, w.wire(ctx, set))
	assert.Empty(t, rec.cmds)

	rec.answers["systemctl show-environment"] = "NODE_EXTRA_CA_CERTS=/b.pem\nREQUESTS_CA_BUNDLE=/b.pem\nPIP_CERT=/b.pem\nAWS_CA_BUNDLE=/etc/corp/aws.pem\nCLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE=/b.pem\n"
	require.NoError(t, w.unwire(ctx, "/b.pem"))
	assert.Equal(t, []string{
		"systemctl show-environment",
		"systemctl unset-environment CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE NODE_EXTRA_CA_CERTS PIP_CERT REQUESTS_CA_BUNDLE",
	}, rec.cmds)
}

func TestLaunchdWiring(t *testing.T) {
	root := t.TempDir()
	rec := &recorder{answers: map[string]string{"launchctl getenv AWS_CA_BUNDLE": "/corp/aws.pem\n"}}
	w := &launchdWiring{root: root, launchctl: DefaultLaunchctl, run: rec, log: hclog.NewNullLogger()}
	ctx := context.Background()
	set := Settings("/usr/local/share/certagent/runtimes/ca-bundle.pem", true)
	ok, err := w.wired(ctx, set)
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, w.wire(ctx, set))
	for _, p := range []string{LaunchDaemonPlist, LaunchAgentPlist} {
		b, err := os.ReadFile(filepath.Join(root, p))
		require.NoError(t, err)
		assert.Contains(t, string(b), "<string>/bin/sh</string>")
		assert.Contains(t, string(b), `[ -n &#34;$(/bin/launchctl getenv NODE_EXTRA_CA_CERTS)&#34; ] || /bin/launchctl setenv NODE_EXTRA_CA_CERTS /usr/local/share/certagent/runtimes/ca-bundle.pem;`)
		assert.Contains(t, string(b), "<key>RunAtLoad</key>")
	}
	ok, err = w.wired(ctx, set)
	require.NoError(t, err)
	assert.True(t, ok)
	var sets []string
	for _, c := range rec.cmds {
		if strings.HasPrefix(c, "launchctl setenv") {
			sets = append(sets, c)
		}
	}
	assert.Equal(t, []string{
		"launchctl setenv NODE_EXTRA_CA_CERTS /usr/local/share/certagent/runtimes/ca-bundle.pem",
		"launchctl setenv REQUESTS_CA_BUNDLE /usr/local/share/certagent/runtimes/ca-bundle.pem",
		"launchctl setenv PIP_CERT /usr/local/share/certagent/runtimes/ca-bundle.pem",
		"launchctl setenv CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE /usr/local/share/certagent/runtimes/ca-bundle.pem",
	}, sets, "AWS_CA_BUNDLE was someone else's")

	rec.cmds = nil
	rec.answers["launchctl getenv NODE_EXTRA_CA_CERTS"] = "/usr/local/share/certagent/runtimes/ca-bundle.pem\n"
	require.NoError(t, w.unwire(ctx, "/usr/local/share/certagent/runtimes/ca-bundle.pem"))
	assert.Contains(t, rec.cmds, "launchctl unsetenv NODE_EXTRA_CA_CERTS")
	assert.NotContains(t, rec.cmds, "launchctl unsetenv AWS_CA_BUNDLE")
	assert.NoFileExists(t, filepath.Join(root, LaunchDaemonPlist))
	assert.NoFileExists(t, filepath.Join(root, LaunchAgentPlist))
}

// mapEnv is the Windows machine environment as a map.
type mapEnv struct {
	vars      map[string]string
	announced int
}

func (m *mapEnv) Get(n string) (string, bool, error) { v, ok := m.vars[n]; return v, ok, nil }
func (m *mapEnv) Set(n, v string) error              { m.vars[n] = v; return nil }
func (m *mapEnv) Delete(n string) error              { delete(m.vars, n); return nil }
func (m *mapEnv) Announce()                          { m.announced++ }

func TestMachineEnvWiring(t *testing.T) {
	env := &mapEnv{vars: map[string]string{"Path": `C:\Windows`, "REQUESTS_CA_BUNDLE": `C:\corp\ca.pem`}}
	before := map[string]string{"Path": `C:\Windows`, "REQUESTS_CA_BUNDLE": `C:\corp\ca.pem`}
	w := &machineEnvWiring{env: env, log: hclog.NewNullLogger()}
	ctx := context.Background()
	bundle := `C:\ProgramData\certagent\runtimes\ca-bundle.pem`
	// No system roots file on Windows: only the additive variable.
	set := Settings(bundle, false)
	require.NoError(t, w.wire(ctx, set))
	assert.Equal(t, bundle, env.vars["NODE_EXTRA_CA_CERTS"])
	assert.Equal(t, `C:\corp\ca.pem`, env.vars["REQUESTS_CA_BUNDLE"])
	var names []string
	for n := range env.vars {
		names = append(names, n)
	}
	sort.Strings(names)
	assert.Equal(t, []string{"NODE_EXTRA_CA_CERTS", "Path", "REQUESTS_CA_BUNDLE"}, names)
	assert.Equal(t, 1, env.announced)
	ok, err := w.wired(ctx, set)
	require.NoError(t, err)
	assert.True(t, ok)
	require.NoError(t, w.wire(ctx, set))
	assert.Equal(t, 1, env.announced, "nothing changed, nothing announced")
	require.NoError(t, w.unwire(ctx, bundle))
	assert.Equal(t, before, env.vars)
	assert.Equal(t, 2, env.announced)
}

// TestOtherPlatformsThroughTheStore runs the whole store with the macOS and
// Windows wiring, so their logic meets the bundle's as it does there.
func TestOtherPlatformsThroughTheStore(t *testing.T) {
	for _, name := range []string{"launchd", "machineenv"} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			env := &mapEnv{vars: map[string]string{}}
			var w wiring = &machineEnvWiring{env: env, log: hclog.NewNullLogger()}
			if name == "launchd" {
				w = &launchdWiring{root: root, launchctl: DefaultLaunchctl, run: &recorder{}, log: hclog.NewNullLogger()}
			}
			s := New(Options{Dir: filepath.Join(root, "rt"), SystemRoots: []string{}, Root: root, wiring: w})
			ctx := context.Background()
			ca := trusttest.NewCA(t)
			res, err := trust.Install(ctx, s, ca.Cert)
			require.NoError(t, err)
			require.NoError(t, trust.FirstError(res))
			ok, err := w.wired(ctx, Settings(s.BundlePath(), false))
			require.NoError(t, err)
			assert.True(t, ok)
			_, err = trust.Uninstall(ctx, s, ca.FP)
			require.NoError(t, err)
			assert.NoFileExists(t, s.BundlePath())
			assert.Empty(t, env.vars)
			assert.NoFileExists(t, filepath.Join(root, LaunchAgentPlist))
		})
	}
}

// TestLaunchdJobKeepsEarlierValues runs the job's command line, as launchd
// would at login, with a stand-in launchctl: a variable someone set stays,
// the others are set.
func TestLaunchdJobKeepsEarlierValues(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	dir := t.TempDir()
	state := filepath.Join(dir, "env")
	require.NoError(t, os.WriteFile(state, []byte("PIP_CERT=/corp/pip.pem\n"), 0o644))
	fake := filepath.Join(dir, "launchctl")
	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\ncase $1 in\n"+
		"getenv) sed -n \"s/^$2=//p\" "+state+" ;;\n"+
		"setenv) echo \"$2=$3\" >> "+state+" ;;\n"+
		"esac\n"), 0o755))
	w := &launchdWiring{launchctl: fake, log: hclog.NewNullLogger()}
	doc := string(w.plist(Settings("/b.pem", true)))
	start := strings.Index(doc, "<string>-c</string>\n\t\t<string>") + len("<string>-c</string>\n\t\t<string>")
	script := strings.NewReplacer("&#34;", `"`, "&amp;", "&", "&lt;", "<", "&gt;", ">").Replace(doc[start : start+strings.Index(doc[start:], "</string>")])
	out, err := exec.Command("/bin/sh", "-c", script).CombinedOutput()
	require.NoError(t, err, "%s", out)
	got, err := os.ReadFile(state)
	require.NoError(t, err)
	assert.Equal(t, "PIP_CERT=/corp/pip.pem\nNODE_EXTRA_CA_CERTS=/b.pem\nREQUESTS_CA_BUNDLE=/b.pem\nAWS_CA_BUNDLE=/b.pem\nCLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE=/b.pem\n", string(got))
}
