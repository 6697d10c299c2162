package linuxca

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/internal/atomicfile"
	"github.com/certagent/certagent/internal/nstest"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

// p11kitModules holds the p11-kit trust module's config; the p11-kit rows
// point it at their test anchors inside the namespace.
const p11kitModules = "/usr/share/p11-kit/modules"

func TestMain(m *testing.M) {
	nstest.Main(m, nstest.Config{Overlays: append(append([]string(nil), nstest.DefaultOverlays...), p11kitModules)})
}

func hashFile(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return sha256.Sum256(b)
}

// debianStore returns the real system store of this (Debian) machine inside
// the namespace, counting the commands it runs.
func debianStore(t *testing.T) (*Store, *platform.CountingRunner) {
	t.Helper()
	nstest.Require(t)
	nstest.Tool(t, nstest.UpdateCACertificates, "ca-certificates")
	cr := &platform.CountingRunner{Runner: &platform.ExecRunner{}}
	s := New(Options{Runner: cr})
	require.NoError(t, s.Check(context.Background()))
	require.Equal(t, "debian", s.Family().Name, "these tests need a Debian-family host")
	return s, cr
}

// assertNothingOfOurs checks /etc/ssl/certs holds no link or file of ours.
func assertNothingOfOurs(t *testing.T) {
	t.Helper()
	ents, err := os.ReadDir(nstest.DebianCertsDir)
	require.NoError(t, err)
	for _, e := range ents {
		assert.NotContains(t, e.Name(), trust.Tag, "left behind in %s", nstest.DebianCertsDir)
		if e.Type()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(filepath.Join(nstest.DebianCertsDir, e.Name()))
			assert.NotContains(t, target, trust.Tag, "%s links to %s", e.Name(), target)
		}
	}
}

// TestFullDebianStore runs once against the full distribution store (it must
// stay the first test that touches it: the others make it minimal). curl and
// a fresh Go process reject, trust, reject; afterwards the namespace's bundle
// is byte-identical to the host's again and the host's never changed.
func TestFullDebianStore(t *testing.T) {
	s, _ := debianStore(t)
	n, err := nstest.CountPEM(nstest.DebianBundle)
	require.NoError(t, err)
	require.Greater(t, n, 100, "the full store has been made minimal already; this test must run first")
	host := hashFile(t, nstest.HostPath(nstest.DebianBundle))
	require.Equal(t, host, hashFile(t, nstest.DebianBundle))

	ca := trusttest.NewCA(t, trusttest.WithCommonName("certagent full-store test CA"))
	srv := nstest.Serve(t, ca)
	assert.False(t, nstest.CurlTrusts(t, srv), "curl before install")
	assert.False(t, nstest.GoClientTrusts(t, srv), "go before install")

	ctx := context.Background()
	start := time.Now()
	res, err := trust.Install(ctx, s, ca.Cert)
	require.NoError(t, err)
	require.NoError(t, trust.FirstError(res))
	t.Logf("install with the full store: %v", time.Since(start))
	assert.True(t, nstest.CurlTrusts(t, srv), "curl after install")
	assert.True(t, nstest.GoClientTrusts(t, srv), "go after install")
	assert.Equal(t, host, hashFile(t, nstest.HostPath(nstest.DebianBundle)), "the host's bundle changed")

	start = time.Now()
	res, err = trust.Uninstall(ctx, s, ca.FP)
	require.NoError(t, err)
	require.NoError(t, trust.FirstError(res))
	t.Logf("uninstall with the full store: %v", time.Since(start))
	assert.False(t, nstest.CurlTrusts(t, srv), "curl after uninstall")
	assert.False(t, nstest.GoClientTrusts(t, srv), "go after uninstall")
	assert.Equal(t, host, hashFile(t, nstest.DebianBundle), "after the removal the bundle is the host's again")
	assertNothingOfOurs(t)
}

// TestDebianStoreTrust proves the adapter on the minimal store with real
// clients, for two roots in one pass, and that a pass with nothing to change
// runs no command at all.
func TestDebianStoreTrust(t *testing.T) {
	s, cr := debianStore(t)
	nstest.MinimalDebianStore(t)
	ctx := context.Background()
	a := trusttest.NewCA(t, trusttest.WithCommonName("certagent e2e CA A"))
	b := trusttest.NewCA(t, trusttest.WithCommonName("certagent e2e CA B"), trusttest.WithRSA(2048))
	srvA, srvB := nstest.Serve(t, a), nstest.Serve(t, b)
	assert.False(t, nstest.CurlTrusts(t, srvA))
	assert.False(t, nstest.GoClientTrusts(t, srvB))

	r0 := s.Refreshes()
	res, err := trust.Install(ctx, s, a.Cert, b.Cert)
	require.NoError(t, err)
	require.NoError(t, trust.FirstError(res))
	assert.Equal(t, 1, s.Refreshes()-r0, "two roots, one refresh")
	for _, srv := range []*nstest.Server{srvA, srvB} {
		assert.True(t, nstest.CurlTrusts(t, srv))
		assert.True(t, nstest.GoClientTrusts(t, srv))
	}
	for _, c := range []*trusttest.CA{a, b} {
		st, err := os.Stat(filepath.Join(nstest.DebianAnchorDir, "certagent-"+c.FP.Hex()+".crt"))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o644), st.Mode().Perm())
	}

	n := cr.Count()
	res, err = trust.Install(ctx, s, a.Cert, b.Cert)
	require.NoError(t, err)
	assert.Empty(t, res)
	assert.Empty(t, s.Apply(ctx, nil))
	requireOK(t, s.Apply(ctx, install(a, b)))
	assert.Equal(t, n, cr.Count(), "a pass with nothing to change ran a command")

	res, err = trust.Uninstall(ctx, s, a.FP, b.FP)
	require.NoError(t, err)
	require.NoError(t, trust.FirstError(res))
	for _, srv := range []*nstest.Server{srvA, srvB} {
		assert.False(t, nstest.CurlTrusts(t, srv))
		assert.False(t, nstest.GoClientTrusts(t, srv))
	}
	assertNothingOfOurs(t)
}

// TestSameSubjectRootStaysFindable: two roots with one subject share an
// OpenSSL hash, so /etc/ssl/certs links them as <hash>.0 and <hash>.1, and
// OpenSSL's CApath lookup stops at the first missing number. Removing the
// one at .0 (without --fresh, so no rehash runs) must leave the other
// findable through CApath alone.
func TestSameSubjectRootStaysFindable(t *testing.T) {
	s, _ := debianStore(t)
	nstest.MinimalDebianStore(t)
	openssl := nstest.Tool(t, "/usr/bin/openssl", "openssl")
	ctx := context.Background()
	cas := trusttest.NewCAs(t, 2, trusttest.WithCommonName("certagent same-subject CA"), trusttest.WithFreshKey())
	requireOK(t, s.Apply(ctx, install(cas...)))

	// Which one the rehash numbered .0 depends on the directory's order.
	var first, second *trusttest.CA
	ents, err := os.ReadDir(nstest.DebianCertsDir)
	require.NoError(t, err)
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(nstest.DebianCertsDir, e.Name()))
		if err != nil || !strings.HasSuffix(e.Name(), ".0") {
			continue
		}
		for i, ca := range cas {
			if target == trust.Tag+"-"+ca.FP.Hex()+".pem" {
				first, second = ca, cas[1-i]
			}
		}
	}
	require.NotNil(t, first, "no <hash>.0 link names one of our roots")
	leaves := map[*trusttest.CA]*trusttest.CA{first: first.Issue(t), second: second.Issue(t)}
	for ca, leaf := range leaves {
		assert.True(t, capathTrusts(t, openssl, leaf), "before the removal, %s", ca.X509.Subject)
	}

	requireOK(t, s.Apply(ctx, remove(first.FP)))
	assert.False(t, capathTrusts(t, openssl, leaves[first]), "the removed root")
	assert.True(t, capathTrusts(t, openssl, leaves[second]), "the root that shares its subject with the removed one")

	requireOK(t, s.Apply(ctx, remove(second.FP)))
	assert.False(t, capathTrusts(t, openssl, leaves[second]))
	assertNothingOfOurs(t)
}

// capathTrusts reports whether openssl verify accepts leaf through the hash
// links in /etc/ssl/certs alone (no bundle file, no store).
func capathTrusts(t *testing.T, openssl string, leaf *trusttest.CA) bool {
	t.Helper()
	dir, err := os.MkdirTemp(nstest.Scratch(), "leaf-")
	require.NoError(t, err)
	f := filepath.Join(dir, "leaf.pem")
	require.NoError(t, os.WriteFile(f, leaf.PEM(), 0o644))
	out, err := exec.Command(openssl, "verify", "-no-CAfile", "-no-CAstore", "-CApath", nstest.DebianCertsDir, f).CombinedOutput()
	t.Logf("openssl verify: %s", bytes.TrimSpace(out))
	return err == nil
}

// TestRetiredWARPRoot: a retired root that WARP installed under its own name
// is found by List and removed by its exact fingerprint; a neighbour file is
// untouched.
func TestRetiredWARPRoot(t *testing.T) {
	s, _ := debianStore(t)
	nstest.MinimalDebianStore(t)
	ctx := context.Background()
	retired := trusttest.NewCA(t, trusttest.WithCommonName("Cloudflare for Teams ECC Certificate Authority"))
	other := trusttest.NewCA(t, trusttest.WithCommonName("corporate root"))
	warpFile := filepath.Join(nstest.DebianAnchorDir, "managed-warp.crt")
	otherFile := filepath.Join(nstest.DebianAnchorDir, "corporate.crt")
	require.NoError(t, os.WriteFile(warpFile, retired.PEM(), 0o644))
	require.NoError(t, os.WriteFile(otherFile, other.PEM(), 0o644))
	t.Cleanup(func() {
		os.Remove(otherFile)
		os.Remove(warpFile)
		exec.Command(nstest.UpdateCACertificates, "--fresh").Run()
	})
	runTool(t, nstest.UpdateCACertificates)
	srv := nstest.Serve(t, retired)
	require.True(t, nstest.CurlTrusts(t, srv), "WARP's root is trusted to begin with")

	inv, err := s.List(ctx)
	require.NoError(t, err)
	require.True(t, inv.Has(trust.Target{}, retired.FP))
	requireOK(t, s.Apply(ctx, retire(retired.FP)))
	assert.NoFileExists(t, warpFile)
	assert.FileExists(t, otherFile)
	assert.False(t, nstest.CurlTrusts(t, srv))
	assert.False(t, nstest.GoClientTrusts(t, srv))
}

func runTool(t *testing.T, path string, args ...string) {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Env = []string{"PATH=" + platform.DefaultPath, "LANG=C"}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// TestConformance runs trust/trusttest against the real Debian store.
func TestConformance(t *testing.T) {
	nstest.Require(t)
	nstest.MinimalDebianStore(t)
	trusttest.Run(t, func(t *testing.T) trust.Store {
		s, _ := debianStore(t)
		t.Cleanup(func() { cleanOurs(t, s) })
		return s
	}, trusttest.Options{
		Plant: func(t *testing.T, st trust.Store, c *trust.Cert) {
			p := filepath.Join(nstest.DebianAnchorDir, "planted-"+c.FP.Short()+".crt")
			require.NoError(t, os.WriteFile(p, c.PEM(), 0o644))
			t.Cleanup(func() {
				if _, err := os.Stat(p); err == nil {
					os.Remove(p)
					runTool(t, nstest.UpdateCACertificates, "--fresh")
				}
			})
			runTool(t, nstest.UpdateCACertificates)
		},
		PlantedRemovable: true,
		Refreshes:        func(st trust.Store) int { return st.(*Store).Refreshes() },
		Rounds:           2,
	})
}

// cleanOurs removes every root of ours, so the next case starts empty.
func cleanOurs(t *testing.T, s *Store) {
	inv, err := s.List(context.Background())
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	var fps []trust.Fingerprint
	for _, e := range inv.Entries {
		if e.Tagged {
			fps = append(fps, e.FP)
		}
	}
	if len(fps) > 0 {
		if err := trust.FirstError(s.Apply(context.Background(), remove(fps...))); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

// TestP11KitRows drives the Fedora and Arch rows against Debian's real
// p11-kit: the trust module is pointed (inside the namespace) at the row's
// source directory, and the row's refresh tool is a script that runs the
// same `trust extract` those distributions' tools run. This checks our file
// layout (PEM or DER, the anchors subdirectory) and command sequence, not
// Fedora's or Arch's own scripts, which Debian does not ship.
func TestP11KitRows(t *testing.T) {
	nstest.Require(t)
	trustTool := nstest.Tool(t, "/usr/bin/trust", "p11-kit")
	module := filepath.Join(p11kitModules, "p11-kit-trust.module")
	orig, err := os.ReadFile(module)
	if err != nil {
		nstest.Skipf(t, "p11-kit trust module config: %v", err)
	}
	require.True(t, nstest.IsPrivate(p11kitModules), "%s must be a private overlay", p11kitModules)
	t.Cleanup(func() { os.WriteFile(module, orig, 0o644) })

	for _, name := range []string{"fedora", "arch"} {
		t.Run(name, func(t *testing.T) {
			var fam Family
			for _, f := range Families {
				if f.Name == name {
					fam = f
				}
			}
			base, err := os.MkdirTemp(nstest.Scratch(), name+"-")
			require.NoError(t, err)
			source := filepath.Join(base, "source")
			fam.AnchorDir = filepath.Join(source, "anchors")
			fam.Bundle = filepath.Join(base, "extracted", "tls-ca-bundle.pem")
			require.NoError(t, os.MkdirAll(fam.AnchorDir, 0o755))
			require.NoError(t, os.MkdirAll(filepath.Dir(fam.Bundle), 0o755))
			var conf strings.Builder
			for _, l := range strings.Split(string(orig), "\n") {
				if strings.HasPrefix(l, "x-init-reserved:") {
					l = "x-init-reserved: paths=" + source
				}
				conf.WriteString(l + "\n")
			}
			require.NoError(t, os.WriteFile(module, []byte(conf.String()), 0o644))
			script := filepath.Join(base, filepath.Base(fam.Tools[0]))
			require.NoError(t, os.WriteFile(script, []byte(fmt.Sprintf(
				"#!/bin/sh\n# %s %s, as far as the TLS bundle goes\nexec %s extract --overwrite --format=pem-bundle --filter=ca-anchors --purpose=server-auth %s\n",
				fam.Tools[0], strings.Join(fam.Args, " "), trustTool, fam.Bundle)), 0o755))
			fam.Tools = []string{script}

			cr := &platform.CountingRunner{Runner: &platform.ExecRunner{}}
			s := New(Options{Family: &fam, Runner: cr})
			ctx := context.Background()
			require.NoError(t, s.Check(ctx))
			ours := trusttest.NewCAs(t, 2)
			// A foreign root in DER form: p11-kit reads it, so do we.
			foreign := trusttest.NewCA(t, trusttest.WithCommonName("foreign DER root"))
			require.NoError(t, os.WriteFile(filepath.Join(fam.AnchorDir, "foreign.der"), foreign.X509.Raw, 0o644))

			res, err := trust.Install(ctx, s, trusttest.Certs(ours...)...)
			require.NoError(t, err)
			require.NoError(t, trust.FirstError(res))
			assert.EqualValues(t, 1, cr.Count())
			leaf := ours[1].Issue(t)
			assert.NoError(t, verifyWithBundle(t, fam.Bundle, leaf.X509), "p11-kit's bundle does not make our root trusted")
			inv, err := s.List(ctx)
			require.NoError(t, err)
			assert.True(t, inv.Has(trust.Target{}, foreign.FP), "the DER root in the anchors is listed")
			out, err := exec.Command(trustTool, "list", "--filter=ca-anchors").CombinedOutput()
			require.NoError(t, err)
			assert.Contains(t, string(out), ours[0].X509.Subject.CommonName, "p11-kit does not see our anchor")

			n := cr.Count()
			res, err = trust.Install(ctx, s, trusttest.Certs(ours...)...)
			require.NoError(t, err)
			assert.Empty(t, res)
			assert.Equal(t, n, cr.Count())

			res, err = trust.Uninstall(ctx, s, ours[1].FP, foreign.FP)
			require.NoError(t, err)
			require.NoError(t, trust.FirstError(res))
			assert.Error(t, verifyWithBundle(t, fam.Bundle, leaf.X509))
			inv, err = s.List(ctx)
			require.NoError(t, err)
			assert.True(t, inv.Has(trust.Target{}, ours[0].FP))
			assert.False(t, inv.Has(trust.Target{}, foreign.FP))
		})
	}
}

// TestP11KitSkipsOurTempDir: p11-kit (Fedora, Arch, SUSE) reads every file
// of its anchors directory, whatever its name or form. A write of ours in
// progress (or killed) sits in atomicfile's .certagent-tmp/ there; p11-kit
// must not take a certificate from it, even one whose name looks final,
// while one beside it is an anchor. The same for a subdirectory of any
// other name, which our scan then must not count either.
func TestP11KitSkipsOurTempDir(t *testing.T) {
	nstest.Require(t)
	trustTool := nstest.Tool(t, "/usr/bin/trust", "p11-kit")
	source := p11kitSource(t)
	anchors := filepath.Join(source, "anchors")
	write := func(p string, ca *trusttest.CA, mode os.FileMode) {
		t.Helper()
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o700))
		require.NoError(t, os.WriteFile(p, ca.PEM(), mode))
	}
	beside := trusttest.NewCA(t, trusttest.WithCommonName("p11-kit beside the temp dir"))
	write(filepath.Join(anchors, "certagent-"+beside.FP.Hex()+".pem"), beside, 0o644)
	inTemp := trusttest.NewCA(t, trusttest.WithCommonName("p11-kit in our temp dir"))
	write(filepath.Join(anchors, atomicfile.TempDirName, "certagent-"+inTemp.FP.Hex()+".pem.tmp-123"), inTemp, 0o600)
	finalName := trusttest.NewCA(t, trusttest.WithCommonName("p11-kit final name in our temp dir"))
	write(filepath.Join(anchors, atomicfile.TempDirName, "certagent-"+finalName.FP.Hex()+".pem"), finalName, 0o644)
	inSubdir := trusttest.NewCA(t, trusttest.WithCommonName("p11-kit in a subdirectory"))
	write(filepath.Join(anchors, "extra", "admin.pem"), inSubdir, 0o644)

	out, err := exec.Command(trustTool, "list", "--filter=ca-anchors").CombinedOutput()
	require.NoError(t, err, "%s", out)
	listed := string(out)
	assert.Contains(t, listed, beside.X509.Subject.CommonName, "p11-kit does not list the anchor beside the temp dir")
	for _, ca := range []*trusttest.CA{inTemp, finalName, inSubdir} {
		assert.NotContains(t, listed, ca.X509.Subject.CommonName, "p11-kit lists a certificate from a subdirectory")
	}

	// Our scan of the same directory agrees with p11-kit, for each of the
	// p11-kit rows.
	for _, name := range []string{"fedora", "arch", "suse"} {
		fam := p11kitFamily(t, name)
		fam.AnchorDir = anchors
		found, err := New(Options{Family: &fam}).scanAnchors()
		require.NoError(t, err)
		var got []string
		for _, a := range found {
			got = append(got, a.certs[0].Subject())
		}
		assert.Equal(t, []string{beside.X509.Subject.CommonName}, got, "%s: the anchors our scan finds", name)
	}
}

// p11kitSource points the p11-kit trust module (inside the namespace) at a
// new source directory with an anchors subdirectory, and returns it.
func p11kitSource(t *testing.T) string {
	t.Helper()
	module := filepath.Join(p11kitModules, "p11-kit-trust.module")
	orig, err := os.ReadFile(module)
	if err != nil {
		nstest.Skipf(t, "p11-kit trust module config: %v", err)
	}
	require.True(t, nstest.IsPrivate(p11kitModules), "%s must be a private overlay", p11kitModules)
	t.Cleanup(func() { os.WriteFile(module, orig, 0o644) })
	base, err := os.MkdirTemp(nstest.Scratch(), "p11kit-")
	require.NoError(t, err)
	source := filepath.Join(base, "source")
	require.NoError(t, os.MkdirAll(filepath.Join(source, "anchors"), 0o755))
	var conf strings.Builder
	for _, l := range strings.Split(string(orig), "\n") {
		if strings.HasPrefix(l, "x-init-reserved:") {
			l = "x-init-reserved: paths=" + source
		}
		conf.WriteString(l + "\n")
	}
	require.NoError(t, os.WriteFile(module, []byte(conf.String()), 0o644))
	return source
}

// p11kitFamily returns the distro row called name.
func p11kitFamily(t *testing.T, name string) Family {
	t.Helper()
	for _, f := range Families {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no family %q", name)
	return Family{}
}

func verifyWithBundle(t *testing.T, bundle string, leaf *x509.Certificate) error {
	t.Helper()
	b, err := os.ReadFile(bundle)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool})
	return err
}
