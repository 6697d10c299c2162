package firefoxpolicy

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

func newStore(t *testing.T) (*Store, string, string) {
	t.Helper()
	dir := t.TempDir()
	s := New(Options{
		PolicyFile: filepath.Join(dir, "etc/firefox/policies/policies.json"),
		CertDir:    filepath.Join(dir, "share/certagent/firefox"),
		SearchDirs: []string{filepath.Join(dir, "lib/mozilla/certificates")},
	})
	return s, dir, s.policy
}

func install(cas ...*trusttest.CA) []trust.Change {
	var out []trust.Change
	for _, c := range cas {
		out = append(out, trust.Change{Op: trust.OpInstall, FP: c.FP, Cert: c.Cert})
	}
	return out
}

func remove(fps ...trust.Fingerprint) []trust.Change {
	var out []trust.Change
	for _, fp := range fps {
		out = append(out, trust.Change{Op: trust.OpRemove, FP: fp})
	}
	return out
}

// retire is the agent's removal of retired roots: copies we did not write
// go too (Change.Foreign).
func retire(fps ...trust.Fingerprint) []trust.Change {
	out := remove(fps...)
	for i := range out {
		out[i].Foreign = true
	}
	return out
}

func requireOK(t *testing.T, res []trust.Result) {
	t.Helper()
	for _, r := range res {
		require.Equal(t, trust.StatusOK, r.Status, "%s: %s %v", r.Change, r.Reason, r.Err)
	}
}

func readJSON(t *testing.T, p string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	var v map[string]any
	require.NoError(t, json.Unmarshal(b, &v))
	return v
}

// TestMergesWithTheAdminsPolicies: our entries join the administrator's,
// every other key survives, a no-op pass does not rewrite the file, and
// removal leaves exactly the administrator's policy.
func TestMergesWithTheAdminsPolicies(t *testing.T) {
	s, dir, policy := newStore(t)
	ctx := context.Background()
	corp := trusttest.NewCA(t, trusttest.WithCommonName("corp root"))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "lib/mozilla/certificates"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "lib/mozilla/certificates/corp.der"), corp.X509.Raw, 0o644))
	admin := `{"policies": {"DisableTelemetry": true, "Homepage": {"URL": "https://intranet/"},
	  "Certificates": {"ImportEnterpriseRoots": true, "Install": ["corp.der", "missing.pem"]}}, "comment": "by the admin"}`
	require.NoError(t, os.MkdirAll(filepath.Dir(policy), 0o755))
	require.NoError(t, os.WriteFile(policy, []byte(admin), 0o644))
	var want map[string]any
	require.NoError(t, json.Unmarshal([]byte(admin), &want))

	inv, err := s.List(ctx)
	require.NoError(t, err)
	require.True(t, inv.Has(trust.Target{}, corp.FP), "the admin's relative entry is resolved and listed")

	a, b := trusttest.NewCA(t), trusttest.NewCA(t)
	requireOK(t, s.Apply(ctx, install(a, b)))
	got := readJSON(t, policy)
	pol := got["policies"].(map[string]any)
	assert.Equal(t, true, pol["DisableTelemetry"])
	assert.Equal(t, want["policies"].(map[string]any)["Homepage"], pol["Homepage"])
	assert.Equal(t, "by the admin", got["comment"])
	certs := pol["Certificates"].(map[string]any)
	assert.Equal(t, true, certs["ImportEnterpriseRoots"])
	assert.Equal(t, []any{"corp.der", "missing.pem", s.ourPath(a.FP), s.ourPath(b.FP)}, certs["Install"])
	for _, c := range []*trusttest.CA{a, b} {
		pem, err := os.ReadFile(s.ourPath(c.FP))
		require.NoError(t, err)
		assert.Equal(t, c.PEM(), pem)
		st, _ := os.Stat(s.ourPath(c.FP))
		assert.Equal(t, os.FileMode(0o644), st.Mode().Perm())
	}
	st1, err := os.Stat(policy)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), st1.Mode().Perm())

	requireOK(t, s.Apply(ctx, install(a, b)))
	st2, err := os.Stat(policy)
	require.NoError(t, err)
	assert.True(t, os.SameFile(st1, st2) && st1.ModTime().Equal(st2.ModTime()), "a no-op pass rewrote the policy")

	requireOK(t, s.Apply(ctx, remove(a.FP, b.FP)))
	assert.Equal(t, want, readJSON(t, policy), "removal must leave exactly the admin's policy")
	assert.NoFileExists(t, s.ourPath(a.FP))
}

func TestBadPolicyChangesNothing(t *testing.T) {
	for name, content := range map[string]string{
		"not json":             "{policies",
		"policies not object":  `{"policies": []}`,
		"certificates a list":  `{"policies": {"Certificates": ["x"]}}`,
		"install not a list":   `{"policies": {"Certificates": {"Install": "x.pem"}}}`,
		"install not strings":  `{"policies": {"Certificates": {"Install": [1]}}}`,
		"top level not object": `[1,2]`,
	} {
		t.Run(name, func(t *testing.T) {
			s, _, policy := newStore(t)
			require.NoError(t, os.MkdirAll(filepath.Dir(policy), 0o755))
			require.NoError(t, os.WriteFile(policy, []byte(content), 0o644))
			ca := trusttest.NewCA(t)
			res := s.Apply(context.Background(), install(ca))
			require.Equal(t, trust.StatusFailed, res[0].Status)
			assert.ErrorIs(t, res[0].Err, ErrBadPolicy)
			b, _ := os.ReadFile(policy)
			assert.Equal(t, content, string(b))
			assert.NoFileExists(t, s.ourPath(ca.FP))
			_, err := s.List(context.Background())
			assert.ErrorIs(t, err, ErrBadPolicy)
		})
	}
}

func TestRemoveForeignEntry(t *testing.T) {
	s, dir, policy := newStore(t)
	ctx := context.Background()
	retired := trusttest.NewCA(t, trusttest.WithCommonName("retired"))
	other := trusttest.NewCA(t)
	single := filepath.Join(dir, "warp.pem")
	both := filepath.Join(dir, "both.pem")
	require.NoError(t, os.WriteFile(single, retired.PEM(), 0o644))
	require.NoError(t, os.WriteFile(both, append(other.PEM(), retired.PEM()...), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Dir(policy), 0o755))
	require.NoError(t, os.WriteFile(policy, []byte(`{"policies":{"Certificates":{"Install":["`+single+`","`+both+`"]}}}`), 0o644))
	// Not named as retired (Foreign unset): no entry of ours, so the
	// policy keeps every entry of theirs.
	res := s.Apply(ctx, remove(retired.FP))
	assert.Equal(t, trust.StatusOK, res[0].Status)
	assert.Equal(t, trust.ReasonOthersCopies, res[0].Reason)
	got := readJSON(t, policy)["policies"].(map[string]any)["Certificates"].(map[string]any)["Install"]
	assert.Equal(t, []any{single, both}, got, "a removal without Foreign dropped someone else's entry")

	res = s.Apply(ctx, retire(retired.FP))
	assert.Equal(t, trust.StatusSkipped, res[0].Status)
	assert.Contains(t, res[0].Reason, "both.pem")
	got = readJSON(t, policy)["policies"].(map[string]any)["Certificates"].(map[string]any)["Install"]
	assert.Equal(t, []any{both}, got, "the single-root entry goes, the bundle stays")
	assert.FileExists(t, single, "their file is theirs")
}

// TestListOwnCopies: Install holds one entry per writer, so List says so
// and tags only ours. The plan relies on it: a root we installed whose
// entry was dropped, still named by the administrator's own entry, must be
// forgotten (or written again), never removed through their entry.
func TestListOwnCopies(t *testing.T) {
	s, dir, policy := newStore(t)
	ca := trusttest.NewCA(t)
	theirs := filepath.Join(dir, "acme.pem")
	require.NoError(t, os.WriteFile(theirs, ca.PEM(), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Dir(policy), 0o755))
	require.NoError(t, os.WriteFile(policy, []byte(`{"policies":{"Certificates":{"Install":["`+theirs+`"]}}}`), 0o644))
	inv, err := s.List(context.Background())
	require.NoError(t, err)
	assert.True(t, inv.OwnCopies, "one Install entry per writer")
	require.Len(t, inv.Entries, 1)
	assert.Equal(t, ca.FP, inv.Entries[0].FP)
	assert.False(t, inv.Entries[0].Tagged, "the administrator's entry is not ours")
}

func TestNoPolicyFileForNothing(t *testing.T) {
	s, _, policy := newStore(t)
	requireOK(t, s.Apply(context.Background(), remove(trusttest.RandomFingerprint(t))))
	assert.NoFileExists(t, policy)
}

func TestConformance(t *testing.T) {
	trusttest.Run(t, func(t *testing.T) trust.Store {
		s, _, _ := newStore(t)
		return s
	}, trusttest.Options{
		Plant: func(t *testing.T, st trust.Store, c *trust.Cert) {
			s := st.(*Store)
			p := filepath.Join(t.TempDir(), "planted.pem")
			require.NoError(t, os.WriteFile(p, c.PEM(), 0o644))
			d, err := s.read()
			require.NoError(t, err)
			d.install = append(d.install, p)
			b, err := d.encode()
			require.NoError(t, err)
			require.NoError(t, os.MkdirAll(filepath.Dir(s.policy), 0o755))
			require.NoError(t, os.WriteFile(s.policy, b, 0o644))
		},
		PlantedRemovable: true,
		Parallel:         true,
	})
}

func FuzzPolicyMerge(f *testing.F) {
	f.Add([]byte(`{"policies":{"Certificates":{"Install":["a.pem"]}}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"policies":{"X":1}}`))
	ca := trusttest.NewCA(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		s, _, policy := newStore(t)
		require.NoError(t, os.MkdirAll(filepath.Dir(policy), 0o755))
		require.NoError(t, os.WriteFile(policy, in, 0o644))
		res := s.Apply(context.Background(), install(ca))
		after, _ := os.ReadFile(policy)
		if res[0].Status != trust.StatusOK {
			if string(after) != string(in) {
				t.Fatalf("a failed merge changed the file")
			}
			return
		}
		inv, err := s.List(context.Background())
		if err != nil || !inv.Has(trust.Target{}, ca.FP) {
			t.Fatalf("merged policy does not list our root: %v", err)
		}
	})
}

// TestFailedPolicyWriteIsNotOK: an install is ok only once policies.json
// names it. When the policy's directory cannot be made (here: a dangling
// link sits where a directory must go, so reading finds no policy but
// MkdirAll fails), every install and removal of the batch fails, nothing
// claims success, and the next batch fails the same way instead of
// "installing" again.
func TestFailedPolicyWriteIsNotOK(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "etc/firefox")
	require.NoError(t, os.MkdirAll(filepath.Dir(blocker), 0o755))
	require.NoError(t, os.Symlink(filepath.Join(dir, "nowhere/firefox"), blocker))
	s := New(Options{
		PolicyFile: filepath.Join(blocker, "policies/policies.json"),
		CertDir:    filepath.Join(dir, "share/certagent/firefox"),
		SearchDirs: []string{filepath.Join(dir, "lib/mozilla/certificates")},
	})
	cas := trusttest.NewCAs(t, 2)
	for round := 0; round < 2; round++ {
		res := s.Apply(context.Background(), append(install(cas[0]), remove(cas[1].FP)...))
		require.Len(t, res, 2)
		for _, r := range res {
			assert.Equal(t, trust.StatusFailed, r.Status, "round %d: %s", round, r.Change)
			assert.ErrorContains(t, r.Err, "file exists")
		}
	}
}

// TestRemoveVerifiedFromThePolicy: an ok install or removal is what the
// file on disk says.
func TestRemoveVerifiedFromThePolicy(t *testing.T) {
	s, _, policy := newStore(t)
	cas := trusttest.NewCAs(t, 1)
	requireOK(t, s.Apply(context.Background(), install(cas[0])))
	inv, err := s.List(context.Background())
	require.NoError(t, err)
	require.Len(t, inv.Entries, 1)
	b, err := os.ReadFile(policy)
	require.NoError(t, err)
	assert.Contains(t, string(b), s.ourPath(cas[0].FP))
	requireOK(t, s.Apply(context.Background(), remove(cas[0].FP)))
	b, err = os.ReadFile(policy)
	require.NoError(t, err)
	assert.NotContains(t, string(b), s.ourPath(cas[0].FP))
}
