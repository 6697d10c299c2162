package runtimes

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

func TestFindingTrusts(t *testing.T) {
	fp := trusttest.RandomFingerprint(t)
	has := Source{fps: map[trust.Fingerprint]bool{fp: true}}
	lacks := Source{fps: map[trust.Fingerprint]bool{}}
	broken := Source{Err: "permission denied"}
	policyHas := Source{Policy: true, fps: map[trust.Fingerprint]bool{fp: true}}
	policyLacks := Source{Policy: true, fps: map[trust.Fingerprint]bool{}}
	tests := []struct {
		name              string
		rule              Rule
		sources           []Source
		wantOK, wantKnown bool
	}{
		{"any: one holds", RuleAny, []Source{lacks, has}, true, true},
		{"any: none holds", RuleAny, []Source{lacks, lacks}, false, true},
		{"any: one unreadable, none holds", RuleAny, []Source{lacks, broken}, false, false},
		{"any: one unreadable, one holds", RuleAny, []Source{broken, has}, true, true},
		{"any: nothing", RuleAny, nil, false, false},
		{"all: every profile", RuleAll, []Source{has, has}, true, true},
		{"all: one profile lacks", RuleAll, []Source{has, lacks}, false, true},
		{"all: no database", RuleAll, nil, false, false},
		{"all: unreadable", RuleAll, []Source{has, broken}, false, false},
		{"policy holds", RulePolicyOrAll, []Source{policyHas, lacks}, true, true},
		{"policy lacks, profiles hold", RulePolicyOrAll, []Source{policyLacks, has, has}, true, true},
		{"policy lacks, a profile lacks", RulePolicyOrAll, []Source{policyLacks, has, lacks}, false, true},
		{"policy lacks, no profile", RulePolicyOrAll, []Source{policyLacks}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, known := Finding{Rule: tt.rule, Sources: tt.sources}.Trusts(fp)
			if ok != tt.wantOK || known != tt.wantKnown {
				t.Errorf("got %v %v, want %v %v", ok, known, tt.wantOK, tt.wantKnown)
			}
		})
	}
}

// TestProbeReadsWhatEachRuntimeLoads runs the probe over a made-up machine:
// programs found by a fake LookPath, their answers recorded from the real
// ones, and CA files on disk; each verdict comes from the file the runtime
// would read.
func TestProbeReadsWhatEachRuntimeLoads(t *testing.T) {
	dir := t.TempDir()
	ours, other := trusttest.NewCA(t), trusttest.NewCA(t)
	write := func(name string, cas ...*trusttest.CA) string {
		p := filepath.Join(dir, name)
		var b []byte
		for _, c := range cas {
			b = append(b, c.Cert.PEM()...)
		}
		require.NoError(t, os.WriteFile(p, b, 0o644))
		return p
	}
	system := write("system.pem", other)
	bundle := write("bundle.pem", other, ours)
	certifi := write("certifi.pem", other)
	home := filepath.Join(dir, "home")
	require.NoError(t, os.MkdirAll(filepath.Join(home, ".aws"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(home, ".aws", "config"), []byte("[default]\nregion = eu-west-1\nca_bundle = "+bundle+"\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(home, ".curlrc"), []byte("# mine\ncacert = \""+bundle+"\"\n"), 0o644))

	installed := map[string]bool{"node": true, "python3": true, "git": true, "curl": true, "aws": true, "gcloud": true}
	answers := map[string]string{
		"node -p":    `{"openssl":false,"version":"v20.20.2"}`,
		"python3 -c": `{"requests": "` + system + `", "certifi": "` + certifi + `", "pip": "23.0.1", "pip_vendored": "` + certifi + `"}`,
		"python3 -m": "global.index-url='https://pypi.corp'\n",
		"git config": "",
	}
	run := platform.RunnerFunc(func(_ context.Context, c platform.Cmd) ([]byte, error) {
		key := filepath.Base(c.Path) + " " + c.Args[0]
		a, ok := answers[key]
		if !ok {
			return nil, errors.New("unexpected " + key)
		}
		if key == "git config" {
			return nil, &platform.CmdError{Cmd: c, ExitCode: 1, Err: errors.New("exit status 1")}
		}
		return []byte(a), nil
	})
	env := map[string]string{"NODE_EXTRA_CA_CERTS": bundle, "PIP_CERT": ""}
	found := Probe(context.Background(), ProbeOptions{
		LookPath: func(n string) (string, error) {
			if installed[n] {
				return "/usr/bin/" + n, nil
			}
			return "", errors.New("not found")
		},
		Runner:       run,
		Getenv:       func(n string) (string, string) { return env[n], "test" },
		SystemBundle: system,
		Home:         home,
	})
	got := make(map[string]bool)
	var names []string
	for _, f := range found {
		ok, known := f.Trusts(ours.FP)
		names = append(names, f.Runtime)
		if f.Runtime == "gcloud" {
			assert.False(t, known, "gcloud's bundled roots cannot be read: unknown, not assumed")
			continue
		}
		require.True(t, known, "%s: %+v", f.Runtime, f.Sources)
		got[f.Runtime] = ok
	}
	assert.Equal(t, []string{"node", "python requests", "python certifi", "pip", "aws", "gcloud", "git", "curl"}, names)
	assert.Equal(t, map[string]bool{
		"node":            true,  // NODE_EXTRA_CA_CERTS names the bundle
		"python requests": false, // requests' default is the system file
		"python certifi":  false,
		"pip":             false, // pip.conf has no cert: the vendored certifi
		"aws":             true,  // ~/.aws/config ca_bundle
		"git":             false, // the OS store
		"curl":            true,  // ~/.curlrc cacert
	}, got)
}

func TestWiredSettingsReadsTheProfileScript(t *testing.T) {
	f := newFixture(t, true)
	assert.Empty(t, WiredSettings(f.root))
	ca := trusttest.NewCA(t)
	res, err := trust.Install(context.Background(), f.store, ca.Cert)
	require.NoError(t, err)
	require.NoError(t, trust.FirstError(res))
	got := WiredSettings(f.root)
	require.Len(t, got, len(Vars))
	for _, v := range Vars {
		assert.Equal(t, f.store.BundlePath(), got[v.Name])
	}
	// Not ours: nothing.
	p := filepath.Join(f.root, ProfileScript)
	require.NoError(t, os.WriteFile(p, []byte(strings.Replace(string(must(os.ReadFile(p))), header, "# mine", 1)), 0o644))
	assert.Empty(t, WiredSettings(f.root))
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
