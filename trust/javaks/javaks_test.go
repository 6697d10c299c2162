package javaks

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/internal/nstest"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

func TestMain(m *testing.M) { nstest.Main(m, nstest.Config{}) }

const sampleList = `Keystore type: PKCS12
Keystore provider: SUN

Your keystore contains 3 entries

Alias name: debian:ac_raiz_fnmt-rcm.pem
Creation date: Jun 24, 2025
Entry type: trustedCertEntry

Owner: OU=AC RAIZ FNMT-RCM, O=FNMT-RCM, C=ES
Issuer: OU=AC RAIZ FNMT-RCM, O=FNMT-RCM, C=ES
Certificate fingerprints:
	 SHA1: EC:50:35:07:B2:15:C4:95:62:19:E2:A8:9A:5B:42:99:2C:4C:2C:20
	 SHA256: EB:C5:57:0C:29:01:8C:4D:67:B1:AA:12:7B:AF:12:F7:03:B4:61:1E:BC:17:B7:DA:B5:57:38:94:17:9B:93:FA


*******************************************
*******************************************


Alias name: mykey
Creation date: Jun 24, 2025
Entry type: PrivateKeyEntry
Certificate chain length: 1
Certificate[1]:
Owner: CN=me
Certificate fingerprints:
	 SHA256: 00:C5:57:0C:29:01:8C:4D:67:B1:AA:12:7B:AF:12:F7:03:B4:61:1E:BC:17:B7:DA:B5:57:38:94:17:9B:93:FA


Alias name: certagent-11c5570c29018c4d67b1aa127baf12f703b4611ebc17b7dab5573894179b93fa
Entry type: trustedCertEntry

Owner: CN=ours
Certificate fingerprints:
	 SHA256: 11:C5:57:0C:29:01:8C:4D:67:B1:AA:12:7B:AF:12:F7:03:B4:61:1E:BC:17:B7:DA:B5:57:38:94:17:9B:93:FA
`

func TestParseList(t *testing.T) {
	as, err := parseList([]byte(sampleList))
	require.NoError(t, err)
	require.Len(t, as, 2, "the key entry is not a root")
	assert.Equal(t, "debian:ac_raiz_fnmt-rcm.pem", as[0].name)
	assert.Equal(t, "EB:C5:57:0C:29:01:8C:4D:67:B1:AA:12:7B:AF:12:F7:03:B4:61:1E:BC:17:B7:DA:B5:57:38:94:17:9B:93:FA", as[0].fp.String())
	assert.Equal(t, "OU=AC RAIZ FNMT-RCM, O=FNMT-RCM, C=ES", as[0].subject)
	assert.True(t, isOurs(as, as[1].fp))
	assert.False(t, isOurs(as, as[0].fp))

	_, err = parseList([]byte("Alias name: x\nEntry type: trustedCertEntry\nSHA256: ZZ\n"))
	assert.Error(t, err)
}

func mkfile(t *testing.T, p string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte("keystore"), 0o644))
}

func TestDiscover(t *testing.T) {
	root := t.TempDir()
	jvm := filepath.Join(root, "jvm")
	system := filepath.Join(root, "etc/ssl/certs/java/cacerts")
	mkfile(t, system)
	mkfile(t, filepath.Join(jvm, "jdk-17/lib/security/cacerts"))
	mkfile(t, filepath.Join(jvm, "jdk-8/jre/lib/security/cacerts"))
	require.NoError(t, os.MkdirAll(filepath.Join(jvm, "debian-jdk/lib/security"), 0o755))
	require.NoError(t, os.Symlink(system, filepath.Join(jvm, "debian-jdk/lib/security/cacerts")))
	require.NoError(t, os.Symlink(filepath.Join(jvm, "jdk-17"), filepath.Join(jvm, "default-java")))
	require.NoError(t, os.MkdirAll(filepath.Join(jvm, "broken/lib/security"), 0o755))
	require.NoError(t, os.Symlink(filepath.Join(root, "nowhere"), filepath.Join(jvm, "broken/lib/security/cacerts")))
	// The alternatives link and JAVA_HOME point outside the JVM dir.
	alt := filepath.Join(root, "opt/jdk-21")
	mkfile(t, filepath.Join(alt, "lib/security/cacerts"))
	mkfile(t, filepath.Join(alt, "bin/java"))
	kt := filepath.Join(alt, "bin/keytool")
	mkfile(t, kt)
	require.NoError(t, os.Chmod(kt, 0o755))
	link := filepath.Join(root, "alternatives-java")
	require.NoError(t, os.Symlink(filepath.Join(alt, "bin/java"), link))
	home := filepath.Join(root, "home/me/jdk")
	mkfile(t, filepath.Join(home, "lib/security/cacerts"))

	s := New(Options{JVMDirs: []string{jvm, filepath.Join(root, "missing")}, JavaLink: link, JavaHome: home, SystemStores: []string{system}, Keytool: "/kt"})
	kss, skips := s.discover()
	var got []string
	for _, k := range kss {
		got = append(got, strings.TrimPrefix(k.path, root)+" "+strings.TrimPrefix(k.keytool, root))
	}
	sort.Strings(got)
	assert.Equal(t, []string{
		"/home/me/jdk/lib/security/cacerts /kt",
		"/jvm/jdk-17/lib/security/cacerts /kt",
		"/jvm/jdk-8/jre/lib/security/cacerts /kt",
		"/opt/jdk-21/lib/security/cacerts /opt/jdk-21/bin/keytool",
	}, got)
	require.Len(t, skips, 1)
	assert.Equal(t, filepath.Join(jvm, "debian-jdk/lib/security/cacerts"), skips[0].Target.Path)
	assert.Contains(t, skips[0].Reason, "follows the system store")
}

// TestThisMachine: on Debian every JDK's cacerts links to the system store's
// Java keystore, so each is skipped and none is written.
func TestThisMachine(t *testing.T) {
	if _, err := os.Stat("/etc/ssl/certs/java/cacerts"); err != nil {
		nstest.Skipf(t, "no Debian Java keystore here: install default-jdk-headless (scripts/install-deps.sh)")
	}
	inv, err := New(Options{}).List(context.Background())
	require.NoError(t, err)
	for _, sk := range inv.Skipped {
		assert.Contains(t, sk.Reason, "follows the system store")
	}
	for _, tg := range inv.Targets {
		l, err := os.Lstat(filepath.Join(filepath.Dir(tg.Path)))
		require.NoError(t, err)
		_ = l
		assert.NotEqual(t, "/etc/ssl/certs/java/cacerts", tg.Path)
	}
}

// testJDK makes a JVM dir with one JDK whose cacerts is a copy of the
// machine's Java keystore (or, with small, an empty PKCS12 made by keytool).
func testJDK(t *testing.T) (jvm, cacerts string) {
	t.Helper()
	nstest.Tool(t, defaultKeytool, "default-jdk-headless")
	src := "/etc/ssl/certs/java/cacerts"
	in, err := os.Open(src)
	if err != nil {
		nstest.Skipf(t, "no Java keystore to copy: %v", err)
	}
	defer in.Close()
	jvm = t.TempDir()
	cacerts = filepath.Join(jvm, "test-jdk/lib/security/cacerts")
	require.NoError(t, os.MkdirAll(filepath.Dir(cacerts), 0o755))
	out, err := os.Create(cacerts)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
	return jvm, cacerts
}

// TestKeytoolAndJavaClient: a real Java HTTPS client rejects the test
// server, trusts it once the adapter imported the root into the JDK's
// keystore (a copy of the real one), and rejects it after removal; a pass
// with nothing to change starts no JVM.
func TestKeytoolAndJavaClient(t *testing.T) {
	jvm, cacerts := testJDK(t)
	nstest.Tool(t, nstest.JavaPath, "default-jdk-headless")
	t.Parallel()
	cr := &platform.CountingRunner{Runner: &platform.ExecRunner{}}
	s := New(Options{JVMDirs: []string{jvm}, JavaLink: "-", Runner: cr})
	ctx := context.Background()
	require.NoError(t, s.Check(ctx))
	ca := trusttest.NewCA(t, trusttest.WithCommonName("certagent java test CA"))
	srv := nstest.Serve(t, ca)
	assert.False(t, nstest.JavaTrusts(t, srv, cacerts, "changeit"), "java trusts the CA before install")

	res, err := trust.Install(ctx, s, ca.Cert)
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.NoError(t, trust.FirstError(res))
	assert.True(t, nstest.JavaTrusts(t, srv, cacerts, "changeit"), "java does not trust the installed CA")

	n := cr.Count()
	inv, err := s.List(ctx)
	require.NoError(t, err)
	require.True(t, inv.Has(trust.Target{Path: cacerts}, ca.FP))
	assert.Greater(t, len(inv.Entries), 100, "the copied distribution roots are listed")
	res, err = trust.Install(ctx, s, ca.Cert)
	require.NoError(t, err)
	assert.Empty(t, res)
	assert.Equal(t, n, cr.Count(), "a pass with nothing to change ran keytool")

	res, err = trust.Uninstall(ctx, s, ca.FP)
	require.NoError(t, err)
	require.NoError(t, trust.FirstError(res))
	assert.False(t, nstest.JavaTrusts(t, srv, cacerts, "changeit"), "java trusts the CA after removal")
}

// TestConformance runs trust/trusttest against keytool's recorded
// behaviour (fakeKeytool): a real JVM per call makes the suite take minutes
// on a small machine. CERTAGENT_JAVA_REAL_CONFORMANCE=1 runs it against the
// real keytool instead (about 4 minutes here).
func TestConformance(t *testing.T) {
	real := os.Getenv("CERTAGENT_JAVA_REAL_CONFORMANCE") == "1"
	var runner platform.Runner = &fakeKeytool{}
	kt := filepath.Join(t.TempDir(), "keytool")
	if real {
		kt = nstest.Tool(t, defaultKeytool, "default-jdk-headless")
		runner = &platform.ExecRunner{}
	} else {
		require.NoError(t, os.WriteFile(kt, []byte("#!/bin/sh\nexit 1\n"), 0o755))
	}
	t.Parallel()
	seed := trusttest.NewCA(t, trusttest.WithCommonName("seed"))
	trusttest.Run(t, func(t *testing.T) trust.Store {
		jvm := t.TempDir()
		ks := filepath.Join(jvm, "jdk/lib/security/cacerts")
		require.NoError(t, os.MkdirAll(filepath.Dir(ks), 0o755))
		s := New(Options{JVMDirs: []string{jvm}, JavaLink: "-", Keytool: kt, Runner: runner})
		// A keystore with one foreign root.
		_, err := s.keytoolIn(context.Background(), keystore{path: ks, keytool: kt}, seed.PEM(), "-importcert", "-noprompt", "-alias", "seed")
		require.NoError(t, err)
		return s
	}, trusttest.Options{
		Plant: func(t *testing.T, st trust.Store, c *trust.Cert) {
			s := st.(*Store)
			kss, _ := s.discover()
			for _, k := range kss {
				_, err := s.keytoolIn(context.Background(), k, c.PEM(), "-importcert", "-noprompt", "-alias", "planted-"+c.FP.Short())
				require.NoError(t, err)
			}
		},
		PlantedRemovable: true,
		Parallel:         true,
	})
}

// TestListOwnCopies: a keystore keeps one alias per writer, so List says
// so and tags only our alias. The plan relies on it: a root we installed
// whose alias was deleted, held on by an administrator's alias, must be
// forgotten (or written again), never removed through their alias.
func TestListOwnCopies(t *testing.T) {
	jvm := t.TempDir()
	ks := filepath.Join(jvm, "jdk/lib/security/cacerts")
	require.NoError(t, os.MkdirAll(filepath.Dir(ks), 0o755))
	kt := filepath.Join(t.TempDir(), "keytool")
	require.NoError(t, os.WriteFile(kt, []byte("#!/bin/sh\nexit 1\n"), 0o755))
	s := New(Options{JVMDirs: []string{jvm}, JavaLink: "-", Keytool: kt, Runner: &fakeKeytool{}})
	ca := trusttest.NewCA(t)
	_, err := s.keytoolIn(context.Background(), keystore{path: ks, keytool: kt}, ca.PEM(), "-importcert", "-noprompt", "-alias", "admins-own")
	require.NoError(t, err)

	inv, err := s.List(context.Background())
	require.NoError(t, err)
	assert.True(t, inv.OwnCopies, "one alias per writer")
	require.Len(t, inv.Entries, 1)
	assert.Equal(t, ca.FP, inv.Entries[0].FP)
	assert.False(t, inv.Entries[0].Tagged, "the administrator's alias is not ours")
}

// TestFakeMatchesKeytool checks the recorded behaviour against the real
// keytool on one keystore: the same listing parses to the same entries,
// and the same errors come back for a duplicate alias and a missing one.
func TestFakeMatchesKeytool(t *testing.T) {
	kt := nstest.Tool(t, defaultKeytool, "default-jdk-headless")
	t.Parallel()
	ca := trusttest.NewCA(t)
	ctx := context.Background()
	outs := map[string][]string{}
	for name, r := range map[string]platform.Runner{"real": &platform.ExecRunner{}, "fake": &fakeKeytool{}} {
		s := New(Options{Runner: r})
		k := keystore{path: filepath.Join(t.TempDir(), "cacerts"), keytool: kt}
		var got []string
		_, err := s.keytoolIn(ctx, k, ca.PEM(), "-importcert", "-noprompt", "-alias", aliasFor(ca.FP))
		require.NoError(t, err, name)
		out, err := s.keytoolIn(ctx, k, ca.PEM(), "-importcert", "-noprompt", "-alias", aliasFor(ca.FP))
		got = append(got, fmt.Sprint(platform.ExitCode(err), strings.Contains(string(out), "already exists")))
		out, err = s.keytool(ctx, k, "-list", "-v")
		require.NoError(t, err, name)
		as, err := parseList(out)
		require.NoError(t, err, name)
		for _, a := range as {
			got = append(got, a.name+" "+a.fp.Hex())
		}
		out, err = s.keytool(ctx, k, "-delete", "-alias", "nope")
		got = append(got, fmt.Sprint(platform.ExitCode(err), strings.Contains(string(out), "does not exist")))
		outs[name] = got
	}
	assert.Equal(t, outs["real"], outs["fake"])
	assert.Equal(t, []string{"1 true", aliasFor(ca.FP) + " " + ca.FP.Hex(), "1 true"}, outs["real"])
}
