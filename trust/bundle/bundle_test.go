package bundle

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

// fixture is a bundle store over a system bundle file minted for the test.
type fixture struct {
	store   *Store
	sysPath string
	system  []*trusttest.CA
}

func newFixture(t testing.TB, nSystem int) *fixture {
	t.Helper()
	d := t.TempDir()
	f := &fixture{sysPath: filepath.Join(d, "etc", "ca-certificates.crt")}
	f.system = trusttest.NewCAs(t, nSystem, trusttest.WithOrganization("Public CA"))
	f.writeSystem(t, f.system...)
	f.store = New(filepath.Join(d, "out", "bundle.pem"), WithSystemRoots(filepath.Join(d, "missing.pem"), f.sysPath))
	return f
}

func (f *fixture) writeSystem(t testing.TB, cas ...*trusttest.CA) {
	t.Helper()
	// Distro bundles carry comments between blocks; they are not copied.
	var b bytes.Buffer
	for _, c := range cas {
		b.WriteString("# " + c.X509.Subject.CommonName + "\n")
		b.Write(c.PEM())
	}
	require.NoError(t, os.MkdirAll(filepath.Dir(f.sysPath), 0o755))
	require.NoError(t, os.WriteFile(f.sysPath, b.Bytes(), 0o644))
}

func TestConformance(t *testing.T) {
	trusttest.Run(t, func(t *testing.T) trust.Store {
		return newFixture(t, 3).store
	}, trusttest.Options{
		Plant:            plantByHand,
		PlantedRemovable: true,
		Parallel:         true,
	})
}

// plantByHand appends c to the bundle as an administrator editing it would,
// creating the bundle through the store first if it does not exist.
func plantByHand(t *testing.T, st trust.Store, c *trust.Cert) {
	s := st.(*Store)
	if _, err := os.Stat(s.Path()); err != nil {
		tmp := trusttest.NewCA(t)
		res := s.Apply(context.Background(), []trust.Change{
			{Op: trust.OpInstall, FP: tmp.FP, Cert: tmp.Cert},
			{Op: trust.OpRemove, FP: tmp.FP},
		})
		require.NoError(t, trust.FirstError(res))
	}
	fh, err := os.OpenFile(s.Path(), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = fh.Write(append([]byte("\n# added by the admin\n"), c.PEM()...))
	require.NoError(t, err)
	require.NoError(t, fh.Close())
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

func requireOK(t testing.TB, res []trust.Result) {
	t.Helper()
	for _, r := range res {
		require.Equal(t, trust.StatusOK, r.Status, "%s: %s %v", r.Change, r.Reason, r.Err)
	}
}

func entries(t *testing.T, s *Store) map[trust.Fingerprint]trust.Entry {
	t.Helper()
	inv, err := s.List(context.Background())
	require.NoError(t, err)
	out := make(map[trust.Fingerprint]trust.Entry)
	for _, e := range inv.Entries {
		out[e.FP] = e
	}
	return out
}

func TestLayout(t *testing.T) {
	f := newFixture(t, 3)
	ours := trusttest.NewCAs(t, 2)
	requireOK(t, f.store.Apply(context.Background(), install(ours...)))

	data, err := os.ReadFile(f.store.Path())
	require.NoError(t, err)
	text := string(data)
	assert.True(t, strings.HasPrefix(text, headerLine+"\n"))
	assert.Contains(t, text, systemBegin+": "+f.sysPath+"\n")
	for _, c := range ours {
		assert.Contains(t, text, "# certagent: "+c.FP.Hex()+"\n# subject: "+c.X509.Subject.CommonName+"\n-----BEGIN CERTIFICATE-----")
	}
	st, err := os.Stat(f.store.Path())
	require.NoError(t, err)
	assert.Equal(t, FileMode, st.Mode().Perm())

	// Every certificate parses back, system roots first, in order.
	certs, err := trust.ParsePEM(data)
	require.NoError(t, err)
	require.Len(t, certs, 5)
	for i, c := range f.system {
		assert.Equal(t, c.FP, certs[i].FP, "system root %d", i)
	}
	got := entries(t, f.store)
	for _, c := range f.system {
		assert.False(t, got[c.FP].Tagged, "system root tagged")
		assert.Equal(t, c.X509.Subject.CommonName, got[c.FP].Subject)
	}
	for _, c := range ours {
		assert.True(t, got[c.FP].Tagged)
	}
	assert.Equal(t, "bundle:"+f.store.Path(), f.store.Name())
	assert.Equal(t, f.sysPath, f.store.SystemRootsFile())
}

// TestNoChangeWritesNothing proves a pass with nothing to change leaves the
// very same file: same inode, same modification time.
func TestNoChangeWritesNothing(t *testing.T) {
	f := newFixture(t, 5)
	ours := trusttest.NewCAs(t, 3)
	ctx := context.Background()
	requireOK(t, f.store.Apply(ctx, install(ours...)))
	before, err := os.Stat(f.store.Path())
	require.NoError(t, err)

	// Installing present roots (in another order), removing absent ones,
	// and a refresh with unchanged system roots.
	requireOK(t, f.store.Apply(ctx, install(ours[2], ours[0], ours[1])))
	requireOK(t, f.store.Apply(ctx, remove(trusttest.RandomFingerprint(t))))
	wrote, err := f.store.Refresh(ctx)
	require.NoError(t, err)
	assert.False(t, wrote)

	after, err := os.Stat(f.store.Path())
	require.NoError(t, err)
	assert.True(t, os.SameFile(before, after), "the bundle was replaced (new inode)")
	assert.Equal(t, before.ModTime(), after.ModTime())
}

func TestSystemRootsChange(t *testing.T) {
	f := newFixture(t, 3)
	ctx := context.Background()
	ours := trusttest.NewCA(t)
	requireOK(t, f.store.Apply(ctx, install(ours)))

	// The distro distrusts system[0] and adds a new root.
	added := trusttest.NewCA(t, trusttest.WithCommonName("New Public Root"))
	f.writeSystem(t, f.system[1], f.system[2], added)
	got := entries(t, f.store)
	assert.Contains(t, got, f.system[0].FP, "List shows the file as it is until the next write")

	wrote, err := f.store.Refresh(ctx)
	require.NoError(t, err)
	assert.True(t, wrote)
	got = entries(t, f.store)
	assert.NotContains(t, got, f.system[0].FP, "a distrusted system root stays in the bundle")
	assert.Contains(t, got, added.FP)
	assert.True(t, got[ours.FP].Tagged, "our root survives the refresh")
	wrote, err = f.store.Refresh(ctx)
	require.NoError(t, err)
	assert.False(t, wrote, "a second refresh wrote again")

	// Apply picks the system roots up too.
	f.writeSystem(t, f.system...)
	requireOK(t, f.store.Apply(ctx, install(trusttest.NewCA(t))))
	assert.Contains(t, entries(t, f.store), f.system[0].FP)
}

func TestRefreshBeforeFirstWrite(t *testing.T) {
	f := newFixture(t, 1)
	wrote, err := f.store.Refresh(context.Background())
	require.NoError(t, err)
	assert.False(t, wrote)
	assert.NoFileExists(t, f.store.Path())
	var _ trust.Refresher = f.store
}

func TestRemovingSystemRootIsSkipped(t *testing.T) {
	f := newFixture(t, 2)
	ctx := context.Background()
	requireOK(t, f.store.Apply(ctx, install(trusttest.NewCA(t))))
	res := f.store.Apply(ctx, remove(f.system[0].FP))
	assert.Equal(t, trust.StatusSkipped, res[0].Status)
	assert.Contains(t, res[0].Reason, f.sysPath)
	assert.Contains(t, entries(t, f.store), f.system[0].FP)

	// A root that is both a system root and ours: our copy goes, the
	// system one stays, and the result says so.
	requireOK(t, f.store.Apply(ctx, install(f.system[1])))
	assert.True(t, entries(t, f.store)[f.system[1].FP].Tagged)
	res = f.store.Apply(ctx, remove(f.system[1].FP))
	assert.Equal(t, trust.StatusSkipped, res[0].Status)
	e := entries(t, f.store)[f.system[1].FP]
	assert.False(t, e.Tagged, "our copy was not removed")
}

func TestRefusesForeignFile(t *testing.T) {
	f := newFixture(t, 1)
	ctx := context.Background()
	other := trusttest.NewCA(t)
	require.NoError(t, os.MkdirAll(filepath.Dir(f.store.Path()), 0o755))
	require.NoError(t, os.WriteFile(f.store.Path(), other.PEM(), 0o600))

	assert.ErrorIs(t, f.store.Check(ctx), trust.ErrUnavailable)
	res := f.store.Apply(ctx, install(trusttest.NewCA(t)))
	assert.Equal(t, trust.StatusFailed, res[0].Status)
	assert.ErrorIs(t, res[0].Err, ErrNotOurs)
	data, err := os.ReadFile(f.store.Path())
	require.NoError(t, err)
	assert.Equal(t, other.PEM(), data, "a file we did not write was changed")
	_, err = f.store.Refresh(ctx)
	assert.ErrorIs(t, err, ErrNotOurs)
	// Listing it is fine: it is what the path holds.
	assert.Contains(t, entries(t, f.store), other.FP)
}

func TestRefusesSystemBundle(t *testing.T) {
	f := newFixture(t, 2)
	s := New(f.sysPath, WithSystemRoots(f.sysPath))
	ctx := context.Background()
	assert.ErrorIs(t, s.Check(ctx), trust.ErrUnavailable)
	res := s.Apply(ctx, install(trusttest.NewCA(t)))
	assert.Equal(t, trust.StatusFailed, res[0].Status)
	assert.Contains(t, res[0].Err.Error(), "system bundle")
}

func TestNoSystemRoots(t *testing.T) {
	d := t.TempDir()
	s := New(filepath.Join(d, "b.pem"), WithSystemRoots())
	ca := trusttest.NewCA(t)
	requireOK(t, s.Apply(context.Background(), install(ca)))
	data, err := os.ReadFile(s.Path())
	require.NoError(t, err)
	assert.Contains(t, string(data), noSourceNote)
	assert.Len(t, entries(t, s), 1)
	assert.Equal(t, "", s.SystemRootsFile())
	require.NoError(t, s.Check(context.Background()))
}

// TestHostileSubject: a subject is untrusted text; it must not be able to
// forge a marker or a PEM boundary in the comment line.
func TestHostileSubject(t *testing.T) {
	f := newFixture(t, 1)
	victim := trusttest.NewCA(t)
	evil := trusttest.NewCA(t, trusttest.WithCommonName("x\n# certagent: "+victim.FP.Hex()+"\n-----BEGIN CERTIFICATE-----\n"))
	ctx := context.Background()
	requireOK(t, f.store.Apply(ctx, install(evil)))
	got := entries(t, f.store)
	assert.Len(t, got, 2)
	assert.True(t, got[evil.FP].Tagged)
	data, err := os.ReadFile(f.store.Path())
	require.NoError(t, err)
	assert.NotContains(t, string(data), "\n# certagent: "+victim.FP.Hex())
}

func TestCRLFAndOtherBlocksKept(t *testing.T) {
	f := newFixture(t, 1)
	ctx := context.Background()
	ours := trusttest.NewCA(t)
	requireOK(t, f.store.Apply(ctx, install(ours)))
	data, err := os.ReadFile(f.store.Path())
	require.NoError(t, err)
	// An editor on Windows saved it with CRLF and someone added a CRL.
	data = bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n"))
	data = append(data, "-----BEGIN X509 CRL-----\r\nAAEC\r\n-----END X509 CRL-----\r\n"...)
	require.NoError(t, os.WriteFile(f.store.Path(), data, 0o644))

	got := entries(t, f.store)
	assert.True(t, got[ours.FP].Tagged)
	requireOK(t, f.store.Apply(ctx, install(trusttest.NewCA(t))))
	data, err = os.ReadFile(f.store.Path())
	require.NoError(t, err)
	assert.Contains(t, string(data), "-----BEGIN X509 CRL-----\nAAEC\n-----END X509 CRL-----\n")
}

func TestCorruptBundle(t *testing.T) {
	f := newFixture(t, 1)
	ctx := context.Background()
	requireOK(t, f.store.Apply(ctx, install(trusttest.NewCA(t))))
	data, err := os.ReadFile(f.store.Path())
	require.NoError(t, err)
	broken := append(append([]byte(nil), data...), "-----BEGIN CERTIFICATE-----\n!!!\n"...)
	require.NoError(t, os.WriteFile(f.store.Path(), broken, 0o644))

	_, err = f.store.List(ctx)
	assert.ErrorContains(t, err, "never ends")
	res := f.store.Apply(ctx, install(trusttest.NewCA(t)))
	assert.Equal(t, trust.StatusFailed, res[0].Status)
	after, err := os.ReadFile(f.store.Path())
	require.NoError(t, err)
	assert.Equal(t, broken, after, "a corrupt bundle was rewritten")
}

// TestToolsTrustIt uses the bundle the way REQUESTS_CA_BUNDLE users do: as
// the whole root pool of a TLS client.
func TestToolsTrustIt(t *testing.T) {
	f := newFixture(t, 2)
	ca := trusttest.NewCA(t)
	requireOK(t, f.store.Apply(context.Background(), install(ca)))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t).TLSCertificate()}}
	srv.StartTLS()
	defer srv.Close()

	data, err := os.ReadFile(f.store.Path())
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(data))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()

	requireOK(t, f.store.Apply(context.Background(), remove(ca.FP)))
	data, err = os.ReadFile(f.store.Path())
	require.NoError(t, err)
	pool = x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(data))
	hc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	_, err = hc.Get(srv.URL)
	assert.Error(t, err, "removed root still trusted")
}

func TestParseHostile(t *testing.T) {
	tests := []struct {
		name, data string
		wantErr    bool
	}{
		{"empty", "", false},
		{"comments only", "# certagent: zz\n# hello\n", false},
		{"unterminated", "-----BEGIN CERTIFICATE-----\nAAAA\n", true},
		{"bad base64", "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", true},
		{"marker without block", "# certagent: " + strings.Repeat("ab", 32) + "\n", false},
		{"nested begin", "-----BEGIN CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c content
			err := parse([]byte(tt.data), &c)
			if tt.wantErr {
				assert.Error(t, err)
			} else {
				assert.NoError(t, err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	ca := trusttest.NewCA(f)
	f.Add([]byte(headerLine + "\n" + systemBegin + "\n" + string(ca.PEM()) + systemEnd + "\n# certagent: " + ca.FP.Hex() + "\n" + string(ca.PEM())))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\r\nAAAA\r\n-----END CERTIFICATE-----\r\n"))
	f.Add([]byte("-----BEGIN \n-----END \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c content
		if parse(data, &c) != nil {
			return
		}
		// Whatever parsed renders to something that parses to the same
		// blocks.
		src := &source{path: "/x", blocks: c.system}
		var c2 content
		require.NoError(t, parse(render(src, c.tagged, c.foreign, nil), &c2))
		assert.Equal(t, len(c.system), len(c2.system))
		assert.Equal(t, len(c.foreign), len(c2.foreign))
		assert.Equal(t, len(c.tagged), len(c2.tagged))
	})
}

// BenchmarkApplyNoChange is a pass over a bundle of 140 system roots and 15
// of ours that installs the 15 again: it must read, compare and write
// nothing.
func BenchmarkApplyNoChange(b *testing.B) {
	f := newFixture(b, 140)
	ours := trusttest.NewCAs(b, 15)
	ctx := context.Background()
	requireOK(b, f.store.Apply(ctx, install(ours...)))
	before, err := os.Stat(f.store.Path())
	require.NoError(b, err)
	changes := install(ours...)
	b.ReportAllocs()
	for b.Loop() {
		requireOK(b, f.store.Apply(ctx, changes))
	}
	b.StopTimer()
	after, err := os.Stat(f.store.Path())
	require.NoError(b, err)
	if !os.SameFile(before, after) || !before.ModTime().Equal(after.ModTime()) {
		b.Fatal("a no-change pass rewrote the bundle")
	}
}

// BenchmarkList lists the same bundle.
func BenchmarkList(b *testing.B) {
	f := newFixture(b, 140)
	ctx := context.Background()
	requireOK(b, f.store.Apply(ctx, install(trusttest.NewCAs(b, 15)...)))
	b.ReportAllocs()
	for b.Loop() {
		inv, err := f.store.List(ctx)
		if err != nil || len(inv.Entries) != 155 {
			b.Fatalf("List: %v, %d entries", err, len(inv.Entries))
		}
	}
}

func TestRemovalAloneCreatesNothing(t *testing.T) {
	f := newFixture(t, 2)
	requireOK(t, f.store.Apply(context.Background(), remove(trusttest.RandomFingerprint(t))))
	assert.NoFileExists(t, f.store.Path())
}

// TestRemoveKeepsTheirCopy: an administrator appended the same root by
// hand. Removing ours takes only our block; theirs stays (untagged), and
// List says each writer's block is its own so the plan never removes a
// root of ours through their copy.
func TestRemoveKeepsTheirCopy(t *testing.T) {
	f := newFixture(t, 1)
	ctx := context.Background()
	ca := trusttest.NewCA(t)
	requireOK(t, f.store.Apply(ctx, install(ca)))
	data, err := os.ReadFile(f.store.Path())
	require.NoError(t, err)
	require.Contains(t, string(data), "# certagent: "+ca.FP.Hex(), "our tag line")
	require.NoError(t, os.WriteFile(f.store.Path(), append(data, ca.PEM()...), 0o644))

	inv, err := f.store.List(ctx)
	require.NoError(t, err)
	assert.True(t, inv.OwnCopies)

	requireOK(t, f.store.Apply(ctx, remove(ca.FP)))
	got := entries(t, f.store)
	require.Contains(t, got, ca.FP, "the administrator's copy stays")
	assert.False(t, got[ca.FP].Tagged, "ours is gone")
	data, err = os.ReadFile(f.store.Path())
	require.NoError(t, err)
	assert.NotContains(t, string(data), "# certagent: "+ca.FP.Hex())

	// Now only theirs: an ordinary removal (ours vanished after the plan)
	// leaves it and says so; the bundle is not rewritten.
	before, err := os.ReadFile(f.store.Path())
	require.NoError(t, err)
	res := f.store.Apply(ctx, remove(ca.FP))
	requireOK(t, res)
	assert.Equal(t, trust.ReasonOthersCopies, res[0].Reason)
	after, err := os.ReadFile(f.store.Path())
	require.NoError(t, err)
	assert.Equal(t, before, after, "a removal without Foreign rewrote their copy")

	// A removal by exact fingerprint of a retired root (Foreign) takes it.
	retire := remove(ca.FP)
	retire[0].Foreign = true
	requireOK(t, f.store.Apply(ctx, retire))
	assert.NotContains(t, entries(t, f.store), ca.FP)
}

// BenchmarkRefreshNoChange is the refresh the agent runs every pass when
// neither the distro's roots nor the bundle changed.
func BenchmarkRefreshNoChange(b *testing.B) {
	f := newFixture(b, 140)
	ctx := context.Background()
	requireOK(b, f.store.Apply(ctx, install(trusttest.NewCAs(b, 15)...)))
	b.ReportAllocs()
	for b.Loop() {
		if wrote, err := f.store.Refresh(ctx); err != nil || wrote {
			b.Fatalf("Refresh: wrote %v, %v", wrote, err)
		}
	}
}

// Refresh skips its work while neither file changed, and still follows a
// change of the distro's roots or a bundle edited behind its back.
func TestRefreshFollowsChangesAfterSkipping(t *testing.T) {
	f := newFixture(t, 3)
	ctx := context.Background()
	ours := trusttest.NewCA(t)
	requireOK(t, f.store.Apply(ctx, install(ours)))
	wrote, err := f.store.Refresh(ctx)
	require.NoError(t, err)
	require.False(t, wrote, "up to date after Apply")
	wrote, err = f.store.Refresh(ctx)
	require.NoError(t, err)
	require.False(t, wrote, "still up to date")

	// Someone cuts the bundle short behind our back: the next Refresh
	// reads it again and rewrites it (putting our root back is the
	// planner's job, on the same pass).
	raw, err := os.ReadFile(f.store.Path())
	require.NoError(t, err)
	cut := bytes.Index(raw, []byte("# certagent: "+ours.FP.Hex()))
	require.Positive(t, cut, "our marker is in the bundle")
	require.NoError(t, os.WriteFile(f.store.Path(), raw[:cut], FileMode))
	wrote, err = f.store.Refresh(ctx)
	require.NoError(t, err)
	assert.True(t, wrote, "an edited bundle is noticed")
}
