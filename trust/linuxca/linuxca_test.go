package linuxca

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

func TestDetect(t *testing.T) {
	tests := []struct {
		osRelease string
		want      string
	}{
		{"ID=debian\n", "debian"},
		{"ID=ubuntu\nID_LIKE=debian\n", "debian"},
		{"ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n", "debian"},
		{"ID=fedora\n", "fedora"},
		{"ID=\"rhel\"\nID_LIKE=\"fedora\"\n", "fedora"},
		{"ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n", "fedora"},
		{"ID=\"amzn\"\nID_LIKE=\"centos rhel fedora\"\n", "fedora"},
		{"ID=arch\n", "arch"},
		{"ID=manjaro\nID_LIKE=arch\n", "arch"},
		{"ID=\"opensuse-tumbleweed\"\nID_LIKE=\"opensuse suse\"\n", "suse"},
		{"ID=\"sles\"\nID_LIKE=\"suse\"\n", "suse"},
		{"ID=alpine\n", "alpine"},
		{"ID=gentoo\n", "gentoo"},
		{"ID=nixos\n", "nixos"},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.osRelease, "\n", " "), func(t *testing.T) {
			osr, err := platform.ParseOSRelease([]byte(tt.osRelease))
			require.NoError(t, err)
			f, err := Detect(osr)
			require.NoError(t, err)
			assert.Equal(t, tt.want, f.Name)
		})
	}
	_, err := Detect(platform.OSRelease{ID: "plan9"})
	assert.ErrorIs(t, err, trust.ErrUnavailable)
	assert.Contains(t, err.Error(), "bundle:PATH")
}

func TestFamiliesAreComplete(t *testing.T) {
	for _, f := range Families {
		t.Run(f.Name, func(t *testing.T) {
			assert.NotEmpty(t, f.IDs)
			if f.Unsupported != "" {
				return
			}
			for _, p := range append([]string{f.AnchorDir, f.Bundle}, f.Tools...) {
				assert.True(t, filepath.IsAbs(p), "%q is not absolute", p)
			}
			assert.NotEmpty(t, f.Tools)
			assert.True(t, strings.HasPrefix(f.Ext, "."))
			assert.True(t, f.consumes("certagent-ab"+f.Ext), "the tool would not read our own files")
			assert.NotEmpty(t, f.Package)
		})
	}
}

func TestUnsupported(t *testing.T) {
	dir := t.TempDir()
	osr := filepath.Join(dir, "os-release")
	require.NoError(t, os.WriteFile(osr, []byte("ID=nixos\n"), 0o644))
	runner := &platform.CountingRunner{Runner: platform.RunnerFunc(func(context.Context, platform.Cmd) ([]byte, error) {
		return nil, errors.New("no tool may run")
	})}
	s := New(Options{OSRelease: osr, Runner: runner})
	err := s.Check(context.Background())
	require.ErrorIs(t, err, trust.ErrUnavailable)
	assert.Contains(t, err.Error(), "read-only /nix/store")
	_, err = s.List(context.Background())
	assert.ErrorIs(t, err, trust.ErrUnavailable)
	ca := trusttest.NewCA(t)
	res := s.Apply(context.Background(), []trust.Change{{Op: trust.OpInstall, FP: ca.FP, Cert: ca.Cert}})
	assert.Equal(t, trust.StatusFailed, res[0].Status)
	assert.Zero(t, runner.Count())

	s = New(Options{OSRelease: filepath.Join(dir, "missing")})
	assert.ErrorIs(t, s.Check(context.Background()), trust.ErrUnavailable)

	fam := Families[0]
	fam.Tools = []string{filepath.Join(dir, "no-such-tool")}
	s = New(Options{Family: &fam})
	err = s.Check(context.Background())
	require.ErrorIs(t, err, trust.ErrUnavailable)
	assert.Contains(t, err.Error(), "install the ca-certificates package")
}

// sim is a stand-in for a refresh tool: it rebuilds the bundle from the
// distribution's roots plus every file the family's tool reads, and records
// the commands it was given.
type sim struct {
	t      *testing.T
	fam    Family
	distro []byte

	mu   sync.Mutex
	cmds []string
}

func newSim(t *testing.T, fam Family) (*sim, *Store, *platform.CountingRunner) {
	dir := t.TempDir()
	fam.AnchorDir = filepath.Join(dir, "anchors")
	fam.Bundle = filepath.Join(dir, "extracted", "bundle.pem")
	tool := filepath.Join(dir, "bin", filepath.Base(fam.Tools[0]))
	require.NoError(t, os.MkdirAll(filepath.Dir(tool), 0o755))
	require.NoError(t, os.WriteFile(tool, []byte("#!/bin/sh\nexit 1\n"), 0o755))
	fam.Tools = []string{tool}
	require.NoError(t, os.MkdirAll(fam.AnchorDir, 0o755))
	require.NoError(t, os.MkdirAll(filepath.Dir(fam.Bundle), 0o755))
	sm := &sim{t: t, fam: fam, distro: trusttest.NewCA(t, trusttest.WithCommonName("distro root")).PEM()}
	require.NoError(t, os.WriteFile(fam.Bundle, sm.distro, 0o644))
	cr := &platform.CountingRunner{Runner: platform.RunnerFunc(sm.run)}
	return sm, New(Options{Family: &fam, Runner: cr, JavaHook: filepath.Join(dir, "no-hook")}), cr
}

func (sm *sim) run(_ context.Context, c platform.Cmd) ([]byte, error) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	sm.cmds = append(sm.cmds, strings.TrimSpace(filepath.Base(c.Path)+" "+strings.Join(c.Args, " ")))
	bundle := append([]byte(nil), sm.distro...)
	ents, err := os.ReadDir(sm.fam.AnchorDir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !sm.fam.consumes(e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(sm.fam.AnchorDir, e.Name()))
		if err != nil {
			return nil, err
		}
		for _, c := range parseCerts(b) {
			bundle = append(bundle, c.PEM()...)
		}
	}
	return []byte("ok\n"), os.WriteFile(sm.fam.Bundle, bundle, 0o644)
}

func (sm *sim) commands() []string {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	out := sm.cmds
	sm.cmds = nil
	return out
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

// TestRecordedCommands pins, for every supported family, the exact command
// sequence of install, no-op and remove passes, and what lands on disk.
func TestRecordedCommands(t *testing.T) {
	want := map[string]struct{ install, remove string }{
		// Debian and Gentoo: the links of a removed anchor are deleted by
		// Apply itself, so no --fresh rebuild of every link.
		"debian": {"update-ca-certificates", "update-ca-certificates"},
		"fedora": {"update-ca-trust extract", "update-ca-trust extract"},
		"arch":   {"trust extract-compat", "trust extract-compat"},
		"suse":   {"update-ca-certificates", "update-ca-certificates"},
		"alpine": {"update-ca-certificates", "update-ca-certificates"},
		"gentoo": {"update-ca-certificates", "update-ca-certificates"},
	}
	for _, fam := range Families {
		if fam.Unsupported != "" {
			continue
		}
		t.Run(fam.Name, func(t *testing.T) {
			t.Parallel()
			w, ok := want[fam.Name]
			require.True(t, ok, "no expectation for family %s", fam.Name)
			sm, s, cr := newSim(t, fam)
			ctx := context.Background()
			require.NoError(t, s.Check(ctx))
			cas := trusttest.NewCAs(t, 3)

			requireOK(t, s.Apply(ctx, install(cas...)))
			assert.Equal(t, []string{w.install}, sm.commands(), "three installs, one refresh")
			for _, c := range cas {
				p := filepath.Join(sm.fam.AnchorDir, "certagent-"+c.FP.Hex()+fam.Ext)
				st, err := os.Stat(p)
				require.NoError(t, err)
				assert.Equal(t, os.FileMode(0o644), st.Mode().Perm())
				b, _ := os.ReadFile(p)
				assert.Equal(t, c.PEM(), b)
			}

			// A pass with nothing to change runs nothing.
			n := cr.Count()
			inv, err := s.List(ctx)
			require.NoError(t, err)
			for _, c := range cas {
				assert.True(t, inv.Has(trust.Target{}, c.FP))
			}
			res, err := trust.Install(ctx, s, trusttest.Certs(cas...)...)
			require.NoError(t, err)
			assert.Empty(t, res)
			requireOK(t, s.Apply(ctx, install(cas...)))
			assert.Equal(t, n, cr.Count(), "a no-change pass ran a command")

			requireOK(t, s.Apply(ctx, append(remove(cas[0].FP, cas[1].FP), install(cas[2])...)))
			assert.Equal(t, []string{w.remove}, sm.commands())
			inv, err = s.List(ctx)
			require.NoError(t, err)
			assert.False(t, inv.Has(trust.Target{}, cas[0].FP))
			assert.True(t, inv.Has(trust.Target{}, cas[2].FP))
		})
	}
}

func TestListReportsForeignAndDistroRoots(t *testing.T) {
	sm, s, _ := newSim(t, Families[0])
	ctx := context.Background()
	warp := trusttest.NewCA(t, trusttest.WithCommonName("Cloudflare for Teams ECC Certificate Authority"))
	require.NoError(t, os.WriteFile(filepath.Join(sm.fam.AnchorDir, "managed-warp.crt"), warp.PEM(), 0o644))
	// WARP's own .pem is not read by Debian's tool, so it is not reported.
	other := trusttest.NewCA(t)
	require.NoError(t, os.WriteFile(filepath.Join(sm.fam.AnchorDir, "managed-warp.pem"), other.PEM(), 0o644))
	// A file named like ours but holding another root is not ours.
	impostor := trusttest.NewCA(t)
	require.NoError(t, os.WriteFile(filepath.Join(sm.fam.AnchorDir, "certagent-"+warp.FP.Hex()+".crt"), impostor.PEM(), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(sm.fam.AnchorDir, "garbage.crt"), []byte("not a cert"), 0o644))

	inv, err := s.List(ctx)
	require.NoError(t, err)
	byFP := map[trust.Fingerprint]trust.Entry{}
	for _, e := range inv.Entries {
		byFP[e.FP] = e
	}
	require.Contains(t, byFP, warp.FP)
	assert.False(t, byFP[warp.FP].Tagged)
	assert.Equal(t, "Cloudflare for Teams ECC Certificate Authority", byFP[warp.FP].Subject)
	assert.NotContains(t, byFP, other.FP)
	require.Contains(t, byFP, impostor.FP)
	assert.False(t, byFP[impostor.FP].Tagged)
	distro, err := trust.ParseOnePEM(sm.distro)
	require.NoError(t, err)
	require.Contains(t, byFP, distro.FP, "the bundle's roots are listed")
	assert.False(t, byFP[distro.FP].Tagged)
}

func TestRemoveForeign(t *testing.T) {
	sm, s, _ := newSim(t, Families[0])
	ctx := context.Background()
	retired := trusttest.NewCA(t, trusttest.WithCommonName("retired"))
	keep := trusttest.NewCA(t)
	single := filepath.Join(sm.fam.AnchorDir, "Cloudflare_CA.crt")
	multi := filepath.Join(sm.fam.AnchorDir, "corp-bundle.crt")
	require.NoError(t, os.WriteFile(single, retired.PEM(), 0o644))
	require.NoError(t, os.WriteFile(multi, append(keep.PEM(), retired.PEM()...), 0o644))
	_, err := sm.run(ctx, platform.Cmd{Path: "/setup"})
	require.NoError(t, err)
	sm.commands()

	// Not named as retired (Foreign unset): we have no file of our own
	// for it, so nothing of theirs goes and no tool runs.
	res := s.Apply(ctx, remove(retired.FP))
	assert.Equal(t, trust.StatusOK, res[0].Status)
	assert.Equal(t, trust.ReasonOthersCopies, res[0].Reason)
	assert.FileExists(t, single, "a removal without Foreign deleted someone else's file")
	assert.FileExists(t, multi)
	assert.Empty(t, sm.commands())

	res = s.Apply(ctx, retire(retired.FP))
	assert.Equal(t, trust.StatusSkipped, res[0].Status, "the root stays trusted through the bundle file")
	assert.Contains(t, res[0].Reason, "corp-bundle.crt")
	assert.NoFileExists(t, single, "a file holding exactly the retired root goes")
	assert.FileExists(t, multi, "a file with other roots stays")
	assert.Equal(t, []string{"update-ca-certificates"}, sm.commands())

	// A distribution root is never removed.
	distro, err := trust.ParseOnePEM(sm.distro)
	require.NoError(t, err)
	res = s.Apply(ctx, remove(distro.FP))
	assert.Equal(t, trust.StatusSkipped, res[0].Status)
	assert.Contains(t, res[0].Reason, "distribution's roots")
	assert.Empty(t, sm.commands())
}

// TestOursBesideTheirs: removing our root leaves someone else's copy of the
// same root alone.
func TestOursBesideTheirs(t *testing.T) {
	sm, s, _ := newSim(t, Families[0])
	ctx := context.Background()
	ca := trusttest.NewCA(t)
	theirs := filepath.Join(sm.fam.AnchorDir, "their-copy.crt")
	require.NoError(t, os.WriteFile(theirs, ca.PEM(), 0o644))
	requireOK(t, s.Apply(ctx, install(ca)))
	inv, err := s.List(ctx)
	require.NoError(t, err)
	require.Len(t, inv.Entries, 2)
	res := s.Apply(ctx, remove(ca.FP))
	assert.Equal(t, trust.StatusSkipped, res[0].Status)
	assert.FileExists(t, theirs)
	assert.NoFileExists(t, filepath.Join(sm.fam.AnchorDir, "certagent-"+ca.FP.Hex()+".crt"))
}

// TestInterruptedPass: a crash between writing the file and refreshing, or
// between deleting it and refreshing, is finished by the next pass.
func TestInterruptedPass(t *testing.T) {
	sm, s, _ := newSim(t, Families[0])
	ctx := context.Background()
	ca := trusttest.NewCA(t)
	ours := filepath.Join(sm.fam.AnchorDir, "certagent-"+ca.FP.Hex()+".crt")
	require.NoError(t, os.WriteFile(ours, ca.PEM(), 0o644)) // written, never refreshed

	inv, err := s.List(ctx)
	require.NoError(t, err)
	assert.False(t, inv.Has(trust.Target{}, ca.FP), "a root the bundle lacks is not installed yet")
	res, err := trust.Install(ctx, s, ca.Cert)
	require.NoError(t, err)
	requireOK(t, res)
	assert.Equal(t, []string{"update-ca-certificates"}, sm.commands())

	require.NoError(t, os.Remove(ours)) // deleted, never refreshed
	require.NoError(t, os.Chtimes(sm.fam.AnchorDir, farFuture, farFuture))
	inv, err = s.List(ctx)
	require.NoError(t, err)
	assert.True(t, inv.Has(trust.Target{}, ca.FP), "the bundle still trusts it")
	requireOK(t, s.Apply(ctx, remove(ca.FP)))
	assert.Equal(t, []string{"update-ca-certificates"}, sm.commands())
	inv, err = s.List(ctx)
	require.NoError(t, err)
	assert.False(t, inv.Has(trust.Target{}, ca.FP))
}

func TestBadChanges(t *testing.T) {
	sm, s, _ := newSim(t, Families[0])
	a, b := trusttest.NewCA(t), trusttest.NewCA(t)
	res := s.Apply(context.Background(), []trust.Change{
		{Op: trust.OpInstall, FP: a.FP},
		{Op: trust.OpInstall, FP: a.FP, Cert: b.Cert},
		{Op: "replace", FP: a.FP, Cert: a.Cert},
		{Op: trust.OpInstall, FP: a.FP, Cert: a.Cert, Target: trust.Target{User: "alice"}},
	})
	for _, r := range res {
		assert.Equal(t, trust.StatusFailed, r.Status)
	}
	assert.ErrorIs(t, res[0].Err, ErrBadChange)
	assert.ErrorIs(t, res[3].Err, ErrUnknownTarget)
	assert.Empty(t, sm.commands())
	ents, _ := os.ReadDir(sm.fam.AnchorDir)
	assert.Empty(t, ents)
}

func TestRefreshFailureIsReported(t *testing.T) {
	fam := Families[0]
	dir := t.TempDir()
	fam.AnchorDir, fam.Bundle = filepath.Join(dir, "a"), filepath.Join(dir, "b.pem")
	fam.Tools = []string{"/bin/sh"}
	runner := platform.RunnerFunc(func(_ context.Context, c platform.Cmd) ([]byte, error) {
		return []byte("E: boom"), &platform.CmdError{Cmd: c, ExitCode: 1, Output: []byte("E: boom"), Err: errors.New("exit status 1")}
	})
	s := New(Options{Family: &fam, Runner: runner})
	ca := trusttest.NewCA(t)
	res := s.Apply(context.Background(), install(ca))
	require.Equal(t, trust.StatusFailed, res[0].Status)
	assert.Contains(t, res[0].Err.Error(), "E: boom")
	assert.Equal(t, 1, platform.ExitCode(res[0].Err))
}

// TestDebianJavaGap: removing an anchor on Debian also deletes the alias the
// jks-keystore hook made from it, through keytool.
func TestDebianJavaGap(t *testing.T) {
	dir := t.TempDir()
	fam := Families[0]
	fam.AnchorDir, fam.Bundle, fam.Tools = filepath.Join(dir, "a"), filepath.Join(dir, "b.pem"), []string{"/bin/sh"}
	hook, ks, kt := filepath.Join(dir, "jks-keystore"), filepath.Join(dir, "cacerts"), filepath.Join(dir, "keytool")
	for _, p := range []string{hook, ks, kt} {
		require.NoError(t, os.WriteFile(p, nil, 0o755))
	}
	var mu sync.Mutex
	var got []platform.Cmd
	runner := platform.RunnerFunc(func(_ context.Context, c platform.Cmd) ([]byte, error) {
		mu.Lock()
		got = append(got, c)
		mu.Unlock()
		if c.Path == kt {
			return []byte("keytool error: java.lang.Exception: Alias <x> does not exist"), &platform.CmdError{Cmd: c, ExitCode: 1, Err: errors.New("exit status 1")}
		}
		return nil, os.WriteFile(fam.Bundle, nil, 0o644)
	})
	s := New(Options{Family: &fam, Runner: runner, JavaHook: hook, JavaKeystore: ks, Keytool: kt})
	ca := trusttest.NewCA(t)
	require.NoError(t, os.MkdirAll(fam.AnchorDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(fam.AnchorDir, "certagent-"+ca.FP.Hex()+".crt"), ca.PEM(), 0o644))
	res := s.Apply(context.Background(), remove(ca.FP))
	requireOK(t, res)
	require.Len(t, got, 2)
	assert.Empty(t, got[0].Args, "a plain refresh: the removed anchor's links were deleted by Apply")
	assert.Equal(t, kt, got[1].Path)
	assert.Contains(t, got[1].Args, "debian:certagent-"+ca.FP.Hex()+".pem")
	assert.NotContains(t, strings.Join(got[1].Args, " "), "changeit", "the store password stays out of argv")
	assert.True(t, bytes.Contains([]byte(strings.Join(got[1].Env, "\n")), []byte("CERTAGENT_STOREPASS=changeit")))
}

// farFuture makes a directory look changed after the bundle was written.
var farFuture = time.Now().Add(time.Hour)

// After a removal, Apply deletes the links that dangle into the anchor
// directory and the hash links naming them, and nothing else: the
// administrator's link to an anchor that still exists, other hash links
// and regular files stay. A plain refresh then suffices.
func TestUnlinkDangling(t *testing.T) {
	sm, s, _ := newSim(t, Families[0])
	certs := filepath.Dir(sm.fam.Bundle)
	ca := trusttest.NewCA(t)
	ours := filepath.Join(sm.fam.AnchorDir, "certagent-"+ca.FP.Hex()+".crt")
	require.NoError(t, os.WriteFile(ours, ca.PEM(), 0o644))
	theirs := filepath.Join(sm.fam.AnchorDir, "admin.crt")
	require.NoError(t, os.WriteFile(theirs, trusttest.NewCA(t).PEM(), 0o644))
	link := func(target, name string) { require.NoError(t, os.Symlink(target, filepath.Join(certs, name))) }
	link(ours, "certagent-"+ca.FP.Hex()+".pem")
	link("certagent-"+ca.FP.Hex()+".pem", "5e82b473.0")
	link(theirs, "admin.pem")
	link("admin.pem", "0a1b2c3d.0")
	link("/usr/share/ca-certificates/mozilla/Some_Root.crt", "Some_Root.pem") // outside the anchor dir
	require.NoError(t, os.WriteFile(filepath.Join(certs, "regular.pem"), []byte("x"), 0o644))
	// Roots sharing a subject share a hash: ours was .1 of 9f8e7d6c, between
	// two others, so the third must move down to close the gap.
	link("certagent-"+ca.FP.Hex()+".pem", "9f8e7d6c.1")
	link("Some_Root.pem", "9f8e7d6c.0")
	link("admin.pem", "9f8e7d6c.2")

	requireOK(t, s.Apply(context.Background(), remove(ca.FP)))
	assert.Equal(t, []string{"update-ca-certificates"}, sm.commands())
	for name, want := range map[string]string{
		"certagent-" + ca.FP.Hex() + ".pem": "", "5e82b473.0": "",
		"admin.pem": theirs, "0a1b2c3d.0": "admin.pem", "Some_Root.pem": "/usr/share/ca-certificates/mozilla/Some_Root.crt",
		"9f8e7d6c.0": "Some_Root.pem", "9f8e7d6c.1": "admin.pem", "9f8e7d6c.2": "",
	} {
		got, _ := os.Readlink(filepath.Join(certs, name))
		assert.Equal(t, want, got, "%s: got link to %q, want %q", name, got, want)
	}
	_, err := os.Lstat(filepath.Join(certs, "regular.pem"))
	assert.NoError(t, err)
}

func TestHashLinkName(t *testing.T) {
	for _, tc := range []struct {
		name, prefix string
		n            int
		ok           bool
	}{
		{"5e82b473.0", "5e82b473.", 0, true},
		{"5e82b473.12", "5e82b473.", 12, true},
		{"5e82b473.r1", "5e82b473.r", 1, true},
		{"5e82b473.", "", 0, false},
		{"5e82b473.01", "", 0, false},
		{"5e82b473.x", "", 0, false},
		{"5E82B473.0", "", 0, false},
		{"5e82b47.0", "", 0, false},
		{"5e82b473.0.pem", "", 0, false},
		{"Some_Root.pem", "", 0, false},
		{"ca-certificates.crt", "", 0, false},
	} {
		prefix, n, ok := hashLinkName(tc.name)
		if prefix != tc.prefix || n != tc.n || ok != tc.ok {
			t.Errorf("hashLinkName(%q): got %q, %d, %v, want %q, %d, %v", tc.name, prefix, n, ok, tc.prefix, tc.n, tc.ok)
		}
	}
}
