package nss

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/internal/nstest"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

func TestMain(m *testing.M) { nstest.Main(m, nstest.Config{}) }

var nextUID atomic.Int64

// newUser makes a user that exists only for this test: a uid no account
// has and a home on the namespace's tmpfs, owned by that uid.
func newUser(t testing.TB, name string) platform.User {
	t.Helper()
	uid := 42000 + int(nextUID.Add(1))
	home, err := os.MkdirTemp(nstest.Scratch(), "home-"+name+"-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(home, 0o755))
	require.NoError(t, os.Chown(home, uid, uid))
	return platform.User{Name: fmt.Sprintf("%s%d", name, uid), UID: uid, GID: uid, Home: home, Shell: "/bin/sh"}
}

// certutil runs the real certutil as u (nil: root), outside the adapter.
func certutil(t testing.TB, u *platform.User, stdin []byte, args ...string) string {
	t.Helper()
	out, err := (&platform.ExecRunner{}).Run(context.Background(), platform.Cmd{Path: DefaultCertutil, Args: args, As: u, Stdin: stdin})
	require.NoError(t, err, "%s", out)
	return string(out)
}

// newDB creates an empty NSS database in dir as u.
func newDB(t testing.TB, u *platform.User, dir string) {
	t.Helper()
	out, err := (&platform.ExecRunner{}).Run(context.Background(), platform.Cmd{Path: "/bin/mkdir", Args: []string{"-p", dir}, As: u})
	require.NoError(t, err, "%s", out)
	certutil(t, u, nil, "-N", "-d", "sql:"+dir, "--empty-password")
}

func requireReal(t *testing.T) {
	t.Helper()
	nstest.Require(t)
	nstest.Tool(t, DefaultCertutil, "libnss3-tools")
}

func usersFunc(us ...platform.User) func() ([]platform.User, error) {
	return func() ([]platform.User, error) { return us, nil }
}

// TestRealCertutil: install, list, no-change pass, foreign root, removal,
// with the real certutil run as the database's owner.
func TestRealCertutil(t *testing.T) {
	requireReal(t)
	t.Parallel()
	alice := newUser(t, "alice")
	chromeDB := filepath.Join(alice.Home, ".pki/nssdb")
	profile := filepath.Join(alice.Home, ".mozilla/firefox/abc.default-release")
	newDB(t, &alice, chromeDB)
	newDB(t, &alice, profile)
	require.NoError(t, os.WriteFile(filepath.Join(alice.Home, ".mozilla/firefox/profiles.ini"), []byte("[Profile0]\nName=default\nIsRelative=1\nPath=abc.default-release\n"), 0o644))
	bob := newUser(t, "bob") // no database at all

	cr := &platform.CountingRunner{Runner: &platform.ExecRunner{}}
	s := New(Options{Users: usersFunc(alice, bob), SystemDB: "-", Runner: cr})
	ctx := context.Background()
	require.NoError(t, s.Check(ctx))
	inv, err := s.List(ctx)
	require.NoError(t, err)
	assert.Len(t, inv.Targets, 2)
	require.Len(t, inv.Skipped, 1)
	assert.Equal(t, trust.Skip{Target: trust.Target{User: bob.Name}, Reason: "no NSS database"}, inv.Skipped[0])

	ca := trusttest.NewCA(t)
	res, err := trust.Install(ctx, s, ca.Cert)
	require.NoError(t, err)
	require.Len(t, res, 2)
	require.NoError(t, trust.FirstError(res))
	for _, db := range []string{chromeDB, profile} {
		assert.Equal(t, alice.UID, ownerOf(t, filepath.Join(db, "cert9.db")), "%s changed owner", db)
		out := certutil(t, &alice, nil, "-L", "-d", "sql:"+db, "-n", nickname(ca.FP))
		assert.Contains(t, out, "Trusted CA", "trust flags in %s", db)
	}

	// Nothing to change: no command at all, List included.
	n := cr.Count()
	inv, err = s.List(ctx)
	require.NoError(t, err)
	for _, tg := range inv.Targets {
		assert.True(t, inv.Has(tg, ca.FP))
	}
	res, err = trust.Install(ctx, s, ca.Cert)
	require.NoError(t, err)
	assert.Empty(t, res)
	assert.Equal(t, n, cr.Count(), "a pass with nothing to change ran certutil")

	// A root someone else added (with their own nickname) is listed as
	// theirs, survives removal of ours, and goes when named exactly.
	foreign := trusttest.NewCA(t, trusttest.WithCommonName("Cloudflare for Teams ECC Certificate Authority"))
	certutil(t, &alice, foreign.PEM(), "-A", "-d", "sql:"+chromeDB, "-n", "Cloudflare for Teams ECC Certificate Authority - Cloudflare, Inc.", "-t", "CT,C,C")
	inv, err = s.List(ctx)
	require.NoError(t, err)
	tgChrome := trust.Target{User: alice.Name, Path: chromeDB}
	require.True(t, inv.Has(tgChrome, foreign.FP))
	for _, e := range inv.Entries {
		assert.Equal(t, e.FP == ca.FP, e.Tagged, "%s %s", e.Target, e.FP.Short())
	}
	res, err = trust.Uninstall(ctx, s, ca.FP)
	require.NoError(t, err)
	require.Len(t, res, 2)
	require.NoError(t, trust.FirstError(res))
	requireOK(t, s.Apply(ctx, []trust.Change{{Op: trust.OpRemove, FP: foreign.FP, Target: tgChrome}}))
	inv, err = s.List(ctx)
	require.NoError(t, err)
	assert.Empty(t, inv.Entries)
	assert.Equal(t, alice.UID, ownerOf(t, filepath.Join(chromeDB, "cert9.db")))
}

func requireOK(t *testing.T, res []trust.Result) {
	t.Helper()
	for _, r := range res {
		require.Equal(t, trust.StatusOK, r.Status, "%s: %s %v", r.Change, r.Reason, r.Err)
	}
}

// TestSharedNickname: two roots under one nickname (same subject, as a
// renewed root has) are never deleted by nickname.
func TestSharedNickname(t *testing.T) {
	requireReal(t)
	t.Parallel()
	u := newUser(t, "erin")
	db := filepath.Join(u.Home, ".pki/nssdb")
	newDB(t, &u, db)
	old := trusttest.NewCA(t, trusttest.WithCommonName("Same Subject"), trusttest.WithOrganization("Org"))
	renewed := trusttest.NewCA(t, trusttest.WithCommonName("Same Subject"), trusttest.WithOrganization("Org"), trusttest.WithFreshKey())
	certutil(t, &u, old.PEM(), "-A", "-d", "sql:"+db, "-n", "Same Subject - Org", "-t", "C,,")
	certutil(t, &u, renewed.PEM(), "-A", "-d", "sql:"+db, "-n", "Same Subject - Org", "-t", "C,,")
	s := New(Options{Users: usersFunc(u), SystemDB: "-"})
	ctx := context.Background()
	inv, err := s.List(ctx)
	require.NoError(t, err)
	tg := trust.Target{User: u.Name, Path: db}
	require.True(t, inv.Has(tg, old.FP))
	require.True(t, inv.Has(tg, renewed.FP))
	res := s.Apply(ctx, []trust.Change{{Op: trust.OpRemove, FP: old.FP, Target: tg}})
	assert.Equal(t, trust.StatusSkipped, res[0].Status, "%v", res[0].Err)
	inv, err = s.List(ctx)
	require.NoError(t, err)
	assert.True(t, inv.Has(tg, renewed.FP), "the renewed root must survive")
}

// TestConformance runs trust/trusttest against real databases of two users
// and a system database.
func TestConformance(t *testing.T) {
	requireReal(t)
	t.Parallel()
	trusttest.Run(t, func(t *testing.T) trust.Store {
		a, b := newUser(t, "carol"), newUser(t, "dave")
		newDB(t, &a, filepath.Join(a.Home, ".pki/nssdb"))
		newDB(t, &b, filepath.Join(b.Home, ".local/share/pki/nssdb"))
		sys, err := os.MkdirTemp(nstest.Scratch(), "sysdb-")
		require.NoError(t, err)
		newDB(t, nil, sys)
		return New(Options{Users: usersFunc(a, b), SystemDB: sys})
	}, trusttest.Options{
		Plant: func(t *testing.T, st trust.Store, c *trust.Cert) {
			inv, err := st.List(context.Background())
			require.NoError(t, err)
			for _, tg := range inv.Targets {
				var u *platform.User
				if tg.User != "" {
					us, _ := st.(*Store).users()
					for i := range us {
						if us[i].Name == tg.User {
							u = &us[i]
						}
					}
				}
				certutil(t, u, c.PEM(), "-A", "-d", "sql:"+tg.Path, "-n", "someone else "+c.FP.Short(), "-t", "C,,")
			}
		},
		PlantedRemovable: true,
		Parallel:         true,
		Rounds:           2,
	})
}

// TestChromium: headless Debian chromium, run as the user with the user's
// HOME, rejects the test server before install, loads it after, and rejects
// it again after removal. Chromium 156 makes ~/.local/share/pki/nssdb itself
// on its first certificate check, so frank's install lands there; gina never
// ran a check, so the adapter creates ~/.pki/nssdb for her (Chromium has a
// profile directory) and chromium reads it.
func TestChromium(t *testing.T) {
	requireReal(t)
	nstest.Tool(t, nstest.ChromiumPath, "chromium")
	ca := trusttest.NewCA(t, trusttest.WithCommonName("certagent chromium test CA"))
	srv := nstest.Serve(t, ca)
	chromiumUser := func(t *testing.T, name string) platform.User {
		u := newUser(t, name)
		out, err := (&platform.ExecRunner{}).Run(context.Background(), platform.Cmd{Path: "/bin/mkdir", Args: []string{"-p", filepath.Join(u.Home, ".config/chromium/Default")}, As: &u})
		require.NoError(t, err, "%s", out)
		return u
	}
	check := func(t *testing.T, u platform.User) bool {
		return nstest.ChromiumTrustsAs(t, srv, u.UID, u.GID, u.Home)
	}
	install := func(t *testing.T, s *Store) trust.Target {
		res, err := trust.Install(context.Background(), s, ca.Cert)
		require.NoError(t, err)
		require.Len(t, res, 1, "one database")
		require.NoError(t, trust.FirstError(res))
		return res[0].Change.Target
	}

	t.Run("own database", func(t *testing.T) {
		t.Parallel()
		u := chromiumUser(t, "frank")
		s := New(Options{Users: usersFunc(u), SystemDB: "-"})
		assert.False(t, check(t, u), "chromium trusts the CA before install")
		tg := install(t, s)
		t.Logf("installed into %s", tg.Path)
		assert.Equal(t, u.UID, ownerOf(t, filepath.Join(tg.Path, "cert9.db")))
		assert.True(t, check(t, u), "chromium does not trust the installed CA")
		res, err := trust.Uninstall(context.Background(), s, ca.FP)
		require.NoError(t, err)
		require.NoError(t, trust.FirstError(res))
		assert.False(t, check(t, u), "chromium trusts the CA after removal")
	})
	t.Run("created database", func(t *testing.T) {
		t.Parallel()
		u := chromiumUser(t, "gina")
		s := New(Options{Users: usersFunc(u), SystemDB: "-"})
		tg := install(t, s)
		db := filepath.Join(u.Home, ".pki/nssdb")
		require.Equal(t, db, tg.Path)
		assert.Equal(t, u.UID, ownerOf(t, db))
		assert.Equal(t, u.UID, ownerOf(t, filepath.Join(db, "cert9.db")))
		assert.True(t, check(t, u), "chromium does not read the database we created")
	})
}

// TestRealBatchAndPersistedListing: installing 9 roots into one database
// runs certutil 3 times (list, one batch of 9 adds, one confirming list: our
// nicknames name their fingerprints, so nothing is exported), and another
// Store over the same CacheFile (a one-shot `certagent sync` next to the
// daemon) lists without running certutil at all, until the database
// changes.
func TestRealBatchAndPersistedListing(t *testing.T) {
	requireReal(t)
	t.Parallel()
	carol := newUser(t, "carol")
	dbDir := filepath.Join(carol.Home, ".pki/nssdb")
	newDB(t, &carol, dbDir)
	cache := filepath.Join(t.TempDir(), "nss-cache.json")
	ctx := context.Background()

	cr := &platform.CountingRunner{Runner: &platform.ExecRunner{}}
	s := New(Options{Users: usersFunc(carol), SystemDB: "-", Runner: cr, CacheFile: cache})
	cas := trusttest.NewCAs(t, 9)
	certs := make([]*trust.Cert, len(cas))
	for i, ca := range cas {
		certs[i] = ca.Cert
	}
	res, err := trust.Install(ctx, s, certs...)
	require.NoError(t, err)
	require.Len(t, res, 9)
	require.NoError(t, trust.FirstError(res))
	assert.LessOrEqual(t, cr.Count(), int64(3), "certutil runs to install 9 roots into one database (list, one batch, one confirming list)")
	for _, ca := range cas {
		out := certutil(t, &carol, nil, "-L", "-d", "sql:"+dbDir, "-n", nickname(ca.FP))
		assert.Contains(t, out, "Trusted CA")
	}
	st, err := os.Stat(cache)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	// Another process: nothing runs while cert9.db keeps its stamp.
	cr2 := &platform.CountingRunner{Runner: &platform.ExecRunner{}}
	s2 := New(Options{Users: usersFunc(carol), SystemDB: "-", Runner: cr2, CacheFile: cache})
	inv, err := s2.List(ctx)
	require.NoError(t, err)
	for _, ca := range cas {
		assert.True(t, inv.Has(trust.Target{User: carol.Name, Path: dbDir}, ca.FP))
	}
	assert.Zero(t, cr2.Count(), "a listing with the database unchanged ran certutil")

	// The database changes behind our back: the next listing sees it.
	certutil(t, &carol, nil, "-D", "-d", "sql:"+dbDir, "-n", nickname(cas[0].FP))
	s3 := New(Options{Users: usersFunc(carol), SystemDB: "-", Runner: &platform.ExecRunner{}, CacheFile: cache})
	inv, err = s3.List(ctx)
	require.NoError(t, err)
	assert.False(t, inv.Has(trust.Target{User: carol.Name, Path: dbDir}, cas[0].FP), "a stale listing survived a change")

	// A cache file others could write is not believed.
	require.NoError(t, os.Chmod(cache, 0o666))
	cr4 := &platform.CountingRunner{Runner: &platform.ExecRunner{}}
	s4 := New(Options{Users: usersFunc(carol), SystemDB: "-", Runner: cr4, CacheFile: cache})
	_, err = s4.List(ctx)
	require.NoError(t, err)
	assert.NotZero(t, cr4.Count(), "a world-writable cache file was believed")
}

// BenchmarkNineRootsTwentyUsers installs 9 roots into 20 users' NSS
// databases: the store (databases in parallel, one confirming listing
// each) against the naive loop a script would run (one certutil -A per
// user and root, nothing verified). Each iteration starts from fresh,
// empty databases.
//
//	sudo go test -run '^$' -bench NineRootsTwentyUsers ./trust/nss/
func BenchmarkNineRootsTwentyUsers(b *testing.B) {
	nstest.Require(b)
	nstest.Tool(b, DefaultCertutil, "libnss3-tools")
	cas := trusttest.NewCAs(b, 9)
	certs := trusttest.Certs(cas...)
	ctx := context.Background()
	fresh := func(b *testing.B) ([]platform.User, []string) {
		b.Helper()
		var us []platform.User
		var dbs []string
		for range 20 {
			u := newUser(b, "u")
			d := filepath.Join(u.Home, ".pki/nssdb")
			newDB(b, &u, d)
			us, dbs = append(us, u), append(dbs, d)
		}
		return us, dbs
	}
	b.Run("store", func(b *testing.B) {
		var runs int64
		for b.Loop() {
			b.StopTimer()
			us, _ := fresh(b)
			cr := &platform.CountingRunner{Runner: &platform.ExecRunner{}}
			s := New(Options{Users: usersFunc(us...), SystemDB: "-", Runner: cr})
			b.StartTimer()
			res, err := trust.Install(ctx, s, certs...)
			if err == nil {
				err = trust.FirstError(res)
			}
			if err != nil {
				b.Fatal(err)
			}
			runs += cr.Count()
		}
		b.ReportMetric(float64(runs)/float64(b.N), "certutil/op")
	})
	b.Run("naive-loop", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			us, dbs := fresh(b)
			b.StartTimer()
			for i, u := range us {
				for _, c := range certs {
					out, err := (&platform.ExecRunner{}).Run(ctx, platform.Cmd{Path: DefaultCertutil,
						Args: []string{"-A", "-d", "sql:" + dbs[i], "-n", nickname(c.FP), "-t", "C,,"}, As: &u, Stdin: c.PEM()})
					if err != nil {
						b.Fatalf("%v: %s", err, out)
					}
				}
			}
		}
		b.ReportMetric(9*20, "certutil/op")
	})
}

// failBatch fails every `certutil -B` run, as an NSS without batch mode
// (or a broken batch) would.
type failBatch struct{ platform.Runner }

func (f failBatch) Run(ctx context.Context, c platform.Cmd) ([]byte, error) {
	if slices.Contains(c.Args, "-B") {
		return []byte("certutil: -B: unknown option"), errors.New("exit status 255")
	}
	return f.Runner.Run(ctx, c)
}

// When the batch fails, the roots go in one by one, and all are confirmed.
func TestRealBatchFallsBackToSingleAdds(t *testing.T) {
	requireReal(t)
	t.Parallel()
	dave := newUser(t, "dave")
	dbDir := filepath.Join(dave.Home, ".pki/nssdb")
	newDB(t, &dave, dbDir)
	s := New(Options{Users: usersFunc(dave), SystemDB: "-", Runner: failBatch{&platform.ExecRunner{}}})
	cas := trusttest.NewCAs(t, 3)
	res, err := trust.Install(context.Background(), s, trusttest.Certs(cas...)...)
	require.NoError(t, err)
	require.Len(t, res, 3)
	requireOK(t, res)
	for _, ca := range cas {
		assert.Contains(t, certutil(t, &dave, nil, "-L", "-d", "sql:"+dbDir, "-n", nickname(ca.FP)), "Trusted CA")
	}
}
