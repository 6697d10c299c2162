package dir

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

func TestConformance(t *testing.T) {
	trusttest.Run(t, func(t *testing.T) trust.Store {
		// A folder that does not exist yet: the first install creates it.
		return New(filepath.Join(t.TempDir(), "roots"))
	}, trusttest.Options{
		Plant: func(t *testing.T, s trust.Store, c *trust.Cert) {
			// As an administrator would: a hand-named file.
			write(t, s.(*Store).Path(), "corp-"+c.FP.Short()+".crt", c.PEM())
		},
		PlantedRemovable: true,
		Parallel:         true,
	})
}

func write(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, data, 0o644))
	return p
}

func apply(t *testing.T, s *Store, changes ...trust.Change) []trust.Result {
	t.Helper()
	res := s.Apply(context.Background(), changes)
	require.Len(t, res, len(changes))
	return res
}

func install(ca *trusttest.CA) trust.Change {
	return trust.Change{Op: trust.OpInstall, FP: ca.FP, Cert: ca.Cert}
}

func remove(fp trust.Fingerprint) trust.Change { return trust.Change{Op: trust.OpRemove, FP: fp} }

// retire is the agent's removal of a retired root: copies we did not write
// go too.
func retire(fp trust.Fingerprint) trust.Change {
	return trust.Change{Op: trust.OpRemove, FP: fp, Foreign: true}
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

func TestInstallWritesTaggedFile(t *testing.T) {
	base := t.TempDir()
	s := New(filepath.Join(base, "a", "b"))
	ca := trusttest.NewCA(t)
	require.Equal(t, trust.StatusOK, apply(t, s, install(ca))[0].Status)

	p := filepath.Join(s.Path(), "certagent-"+ca.FP.Hex()+".pem")
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, ca.PEM(), data)
	if runtime.GOOS != "windows" {
		st, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, FileMode, st.Mode().Perm(), "file mode")
		st, err = os.Stat(s.Path())
		require.NoError(t, err)
		assert.Equal(t, DirMode, st.Mode().Perm(), "folder mode")
	}
	des, err := os.ReadDir(s.Path())
	require.NoError(t, err)
	assert.Len(t, des, 1, "no temporary files left behind")
	assert.Equal(t, "dir:"+s.Path(), s.Name())
}

func TestListFindsEveryCertificate(t *testing.T) {
	d := t.TempDir()
	s := New(d)
	ours, pemCA, derCA, upper, linked := trusttest.NewCA(t), trusttest.NewCA(t), trusttest.NewCA(t), trusttest.NewCA(t), trusttest.NewCA(t)
	require.Equal(t, trust.StatusOK, apply(t, s, install(ours))[0].Status)
	write(t, d, "retired.pem", pemCA.PEM())
	write(t, d, "windows-export.cer", derCA.X509.Raw) // DER
	write(t, d, "UPPER.CRT", upper.PEM())
	write(t, d, "notes.txt", pemCA.PEM()) // not a certificate file name
	write(t, d, ".hidden.pem", pemCA.PEM())
	require.NoError(t, os.Mkdir(filepath.Join(d, "sub.pem"), 0o755))
	if runtime.GOOS != "windows" {
		target := write(t, t.TempDir(), "elsewhere.pem", linked.PEM())
		require.NoError(t, os.Symlink(target, filepath.Join(d, "linked.pem")))
	}

	got := entries(t, s)
	assert.True(t, got[ours.FP].Tagged, "our file is Tagged")
	for _, c := range []*trusttest.CA{pemCA, derCA, upper} {
		e, ok := got[c.FP]
		require.True(t, ok, "%s not listed", c.X509.Subject.CommonName)
		assert.False(t, e.Tagged)
		assert.Equal(t, c.X509.Subject.CommonName, e.Subject)
	}
	if runtime.GOOS != "windows" {
		assert.Contains(t, got, linked.FP, "symlinks are followed")
		assert.Len(t, got, 5)
	}
}

func TestCorruptFilesAreReportedAndKept(t *testing.T) {
	d := t.TempDir()
	s := New(d)
	ca := trusttest.NewCA(t)
	garbage := write(t, d, "garbage.pem", []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"))
	empty := write(t, d, "empty.crt", nil)
	big := write(t, d, "huge.pem", make([]byte, MaxFileBytes+1))
	require.Equal(t, trust.StatusOK, apply(t, s, install(ca))[0].Status)

	inv, err := s.List(context.Background())
	require.NoError(t, err)
	assert.Len(t, inv.Entries, 1)
	skipped := map[string]string{}
	for _, sk := range inv.Skipped {
		skipped[sk.Target.Path] = sk.Reason
	}
	assert.Contains(t, skipped[garbage], "does not parse")
	assert.Contains(t, skipped[empty], "no certificate")
	assert.Contains(t, skipped[big], "larger than")

	// Removing ours, or an unknown root, leaves the broken files alone.
	requireOK(t, apply(t, s, remove(ca.FP), remove(trusttest.RandomFingerprint(t))))
	for _, p := range []string{garbage, empty, big} {
		assert.FileExists(t, p)
	}
}

func requireOK(t *testing.T, res []trust.Result) {
	t.Helper()
	for _, r := range res {
		require.Equal(t, trust.StatusOK, r.Status, "%s: %v", r.Change, r.Err)
	}
}

func TestMultiCertFileIsNeverRewritten(t *testing.T) {
	d := t.TempDir()
	s := New(d)
	a, b := trusttest.NewCA(t), trusttest.NewCA(t)
	both := append(a.PEM(), b.PEM()...)
	p := write(t, d, "corp-bundle.pem", both)

	got := entries(t, s)
	require.Contains(t, got, a.FP)
	require.Contains(t, got, b.FP)

	// Without Foreign the file is not ours and is left alone.
	res := apply(t, s, remove(a.FP))
	assert.Equal(t, trust.StatusOK, res[0].Status)
	assert.Equal(t, trust.ReasonOthersCopies, res[0].Reason)
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, both, data, "the shared file was rewritten")

	// Even a retired root is not cut out of a shared file.
	res = apply(t, s, retire(a.FP))
	assert.Equal(t, trust.StatusFailed, res[0].Status)
	assert.ErrorIs(t, res[0].Err, ErrForeignFile)
	assert.Contains(t, res[0].Err.Error(), "corp-bundle.pem")
	data, err = os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, both, data, "the shared file was rewritten")

	// Our own copy of a goes when a is withdrawn (we must not keep a
	// withdrawn root trusted); the shared file stays, and the result says
	// the root is still trusted through it.
	require.Equal(t, trust.StatusOK, apply(t, s, install(a))[0].Status)
	res = apply(t, s, remove(a.FP))
	assert.Equal(t, trust.StatusSkipped, res[0].Status)
	assert.Contains(t, res[0].Reason, "corp-bundle.pem")
	assert.NoFileExists(t, filepath.Join(d, FileName(a.FP)))
	data, err = os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, both, data, "the shared file was rewritten")
}

func TestSameRootInTwoFiles(t *testing.T) {
	d := t.TempDir()
	s := New(d)
	ca := trusttest.NewCA(t)
	foreign := write(t, d, "copy.pem", ca.PEM())
	assert.False(t, entries(t, s)[ca.FP].Tagged)

	// Installing writes our own tagged copy: listing is exact, and the root
	// stays trusted if the other copy's owner deletes theirs.
	require.Equal(t, trust.StatusOK, apply(t, s, install(ca))[0].Status)
	got := entries(t, s)
	assert.Len(t, got, 1, "one root, one entry")
	assert.True(t, got[ca.FP].Tagged)

	// Removing our root removes our file only: the other copy is its
	// owner's, and the root stays listed, untagged; the result says why
	// it is still there.
	res := apply(t, s, remove(ca.FP))
	require.Equal(t, trust.StatusSkipped, res[0].Status)
	assert.Contains(t, res[0].Reason, "still trusted through copy.pem")
	assert.NoFileExists(t, filepath.Join(d, FileName(ca.FP)))
	assert.FileExists(t, foreign, "someone else's copy is theirs")
	got = entries(t, s)
	require.Contains(t, got, ca.FP)
	assert.False(t, got[ca.FP].Tagged)

	// Only theirs left: an ordinary removal (our file vanished after the
	// plan was made) leaves their copy alone and says so.
	res = apply(t, s, remove(ca.FP))
	require.Equal(t, trust.StatusOK, res[0].Status)
	assert.Equal(t, trust.ReasonOthersCopies, res[0].Reason)
	assert.FileExists(t, foreign, "a removal without Foreign deleted someone else's copy")

	// A removal by exact fingerprint of a retired root (Foreign) removes
	// every single-certificate file holding it.
	require.Equal(t, trust.StatusOK, apply(t, s, retire(ca.FP))[0].Status)
	assert.NoFileExists(t, foreign)
	assert.Empty(t, entries(t, s))
}

func TestOurNameOtherContent(t *testing.T) {
	d := t.TempDir()
	s := New(d)
	ca, other := trusttest.NewCA(t), trusttest.NewCA(t)
	p := write(t, d, FileName(ca.FP), other.PEM())
	res := apply(t, s, install(ca))
	assert.Equal(t, trust.StatusFailed, res[0].Status)
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, other.PEM(), data)
	assert.False(t, entries(t, s)[other.FP].Tagged, "a file whose name does not match its content is not ours")

	// A corrupt file under our name is repaired by the next install.
	write(t, d, FileName(ca.FP), []byte("-----BEGIN CERTIFICATE-----\nMII"))
	require.Equal(t, trust.StatusOK, apply(t, s, install(ca))[0].Status)
	assert.True(t, entries(t, s)[ca.FP].Tagged)
}

func TestDriftRepair(t *testing.T) {
	d := t.TempDir()
	s := New(d)
	ca := trusttest.NewCA(t)
	requireOK(t, apply(t, s, install(ca)))
	require.NoError(t, os.Remove(filepath.Join(d, FileName(ca.FP))))
	res, err := trust.Install(context.Background(), s, ca.Cert)
	require.NoError(t, err)
	require.Len(t, res, 1, "a deleted file is noticed and rewritten")
	assert.FileExists(t, filepath.Join(d, FileName(ca.FP)))
}

func TestCheck(t *testing.T) {
	d := t.TempDir()
	file := write(t, d, "file", []byte("x"))
	tests := []struct {
		name    string
		path    string
		wantErr bool
	}{
		{"existing folder", d, false},
		{"missing folder", filepath.Join(d, "new", "deeper"), false},
		{"a file", file, true},
		{"under a file", filepath.Join(file, "sub"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := New(tt.path).Check(context.Background())
			if tt.wantErr {
				assert.ErrorIs(t, err, trust.ErrUnavailable)
			} else {
				assert.NoError(t, err)
			}
		})
	}
	// Apply into an unusable path fails every change and does not panic.
	res := apply(t, New(filepath.Join(file, "sub")), install(trusttest.NewCA(t)))
	assert.Equal(t, trust.StatusFailed, res[0].Status)
}

func TestListMissingFolder(t *testing.T) {
	s := New(filepath.Join(t.TempDir(), "nope"))
	inv, err := s.List(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []trust.Target{{}}, inv.Targets)
	assert.Empty(t, inv.Entries)
}

// TestListFolderIsAFile: a folder that cannot be read is an error, not an
// empty store (an empty listing would make every root look missing).
func TestListFolderIsAFile(t *testing.T) {
	file := write(t, t.TempDir(), "x", []byte("x"))
	_, err := New(file).List(context.Background())
	assert.ErrorContains(t, err, "trust/dir: reading")
}

// seed fills d with n roots of ours and m foreign single-certificate files.
func seed(tb testing.TB, d string, n, m int) *Store {
	s := New(d)
	var changes []trust.Change
	for _, ca := range trusttest.NewCAs(tb, n) {
		changes = append(changes, install(ca))
	}
	for _, r := range s.Apply(context.Background(), changes) {
		if r.Status != trust.StatusOK {
			tb.Fatalf("seed: %s: %v", r.Change, r.Err)
		}
	}
	for i, ca := range trusttest.NewCAs(tb, m) {
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("foreign-%03d.crt", i)), ca.PEM(), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return s
}

func TestSeedCounts(t *testing.T) {
	s := seed(t, t.TempDir(), 15, 150)
	got := entries(t, s)
	assert.Len(t, got, 165)
	tagged := 0
	for _, e := range got {
		if e.Tagged {
			tagged++
		}
	}
	assert.Equal(t, 15, tagged)
}

// BenchmarkList lists a folder of 15 roots of ours and 150 foreign ones.
func BenchmarkList(b *testing.B) {
	s := seed(b, b.TempDir(), 15, 150)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		inv, err := s.List(ctx)
		if err != nil || len(inv.Entries) != 165 {
			b.Fatalf("List: %v, %d entries", err, len(inv.Entries))
		}
	}
}

// BenchmarkApplyNoChange is a pass that installs 15 present roots.
func BenchmarkApplyNoChange(b *testing.B) {
	d := b.TempDir()
	s := New(d)
	cas := trusttest.NewCAs(b, 15)
	var changes []trust.Change
	for _, ca := range cas {
		changes = append(changes, install(ca))
	}
	ctx := context.Background()
	s.Apply(ctx, changes)
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range s.Apply(ctx, changes) {
			if r.Status != trust.StatusOK {
				b.Fatal(errors.New(string(r.Status)))
			}
		}
	}
}

// TestCacheFollowsContent rewrites a file in place, same name and size: the
// parse cache is keyed by content, so the new certificate is what is listed.
func TestCacheFollowsContent(t *testing.T) {
	d := t.TempDir()
	s := New(d)
	a, b := trusttest.NewCA(t, trusttest.WithCommonName("A")), trusttest.NewCA(t, trusttest.WithCommonName("B"))
	write(t, d, "x.pem", a.PEM())
	require.Contains(t, entries(t, s), a.FP)
	write(t, d, "x.pem", b.PEM())
	got := entries(t, s)
	assert.Contains(t, got, b.FP)
	assert.NotContains(t, got, a.FP)
}
