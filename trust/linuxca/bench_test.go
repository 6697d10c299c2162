package linuxca

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/truststore"

	"github.com/certagent/certagent/internal/nstest"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

// BenchmarkInstallTenRootsFullStore is the same comparison on the full
// distribution store (about 150 roots), where each update-ca-certificates
// run costs most of a second. It takes minutes, so it runs only with
// CERTAGENT_BENCH_FULL=1, and only before anything made the store minimal:
//
//	CERTAGENT_BENCH_FULL=1 go test -run '^$' -bench FullStore -benchtime 5x ./trust/linuxca/
func BenchmarkInstallTenRootsFullStore(b *testing.B) {
	if os.Getenv("CERTAGENT_BENCH_FULL") != "1" {
		b.Skip("set CERTAGENT_BENCH_FULL=1 to run the full-store comparison")
	}
	nstest.Require(b)
	nstest.Tool(b, nstest.UpdateCACertificates, "ca-certificates")
	if n, err := nstest.CountPEM(nstest.DebianBundle); err != nil || n < 100 {
		b.Skipf("the store is not the full one (%d roots, %v)", n, err)
	}
	benchTenRoots(b)
}

// BenchmarkInstallTenRoots compares one pass of our system store installing
// ten roots with ten calls of smallstep/truststore.Install on the same
// namespaced (minimal) Debian store.
//
//	sudo go test -run '^$' -bench InstallTenRoots ./trust/linuxca/
func BenchmarkInstallTenRoots(b *testing.B) {
	nstest.Require(b)
	nstest.Tool(b, nstest.UpdateCACertificates, "ca-certificates")
	nstest.MinimalDebianStore(b)
	benchTenRoots(b)
}

// benchTenRoots times, in each round, our store installing ten new roots
// and removing them (one trust.Install, one trust.Uninstall) against
// truststore.Install and truststore.Uninstall called for each of the same
// roots. Rounds alternate which side goes first, so a neighbour's load falls
// on both, and each round's ratio is logged. It reports seconds per round
// for each side (s-install/op, s-remove/op), the ratios of the sums (x),
// refreshes/op (how many times update-ca-certificates ran per install and
// removal) and what our install costs outside the commands it runs (our
// own Go code: writing the anchors, reading the store, verifying).
//
// Every round mints ten roots the store has never seen. Reinstalling the
// same ones would measure something else: truststore's removal leaves each
// root's links in /etc/ssl/certs dangling, and when the same file comes back
// update-ca-certificates finds its link already there, counts "0 added" and
// skips its link sweep and c_rehash (and its hooks see no "+" line: Java's
// keystore would not get the root). Those leftovers are deleted between
// rounds, untimed, so each side starts from the same store.
func benchTenRoots(b *testing.B) {
	ctx := context.Background()
	var inTool time.Duration // time spent inside the commands our store ran
	s := New(Options{Runner: platform.RunnerFunc(func(ctx context.Context, c platform.Cmd) ([]byte, error) {
		t0 := time.Now()
		defer func() { inTool += time.Since(t0) }()
		return (&platform.ExecRunner{}).Run(ctx, c)
	})})
	log := shimPath(b)

	var ours, theirs struct{ install, remove, installGo time.Duration }
	ourRound := func(cas []*trusttest.CA) (install, remove time.Duration) {
		inTool = 0
		t0 := time.Now()
		res, err := trust.Install(ctx, s, trusttest.Certs(cas...)...)
		if err == nil {
			err = trust.FirstError(res)
		}
		if err != nil {
			b.Fatal(err)
		}
		install = time.Since(t0)
		ours.installGo += install - inTool
		fps := make([]trust.Fingerprint, len(cas))
		for j, c := range cas {
			fps[j] = c.FP
		}
		t0 = time.Now()
		res, err = trust.Uninstall(ctx, s, fps...)
		if err == nil {
			err = trust.FirstError(res)
		}
		if err != nil {
			b.Fatal(err)
		}
		return install, time.Since(t0)
	}
	theirRound := func(cas []*trusttest.CA) (install, remove time.Duration) {
		t0 := time.Now()
		for _, c := range cas {
			if err := truststore.Install(c.X509); err != nil {
				b.Fatal(err)
			}
		}
		install = time.Since(t0)
		t0 = time.Now()
		for _, c := range cas {
			if err := truststore.Uninstall(c.X509); err != nil {
				b.Fatal(err)
			}
		}
		remove = time.Since(t0)
		if err := s.unlinkDangling(); err != nil {
			b.Fatal(err)
		}
		return install, remove
	}

	b.StopTimer() // the sums below are the measurement; ns/op is meaningless
	for i := 0; i < b.N; i++ {
		cas := trusttest.NewCAs(b, 10)
		var oi, or, ti, tr time.Duration
		if i%2 == 0 {
			oi, or = ourRound(cas)
			ti, tr = theirRound(cas)
		} else {
			ti, tr = theirRound(cas)
			oi, or = ourRound(cas)
		}
		ours.install, ours.remove = ours.install+oi, ours.remove+or
		theirs.install, theirs.remove = theirs.install+ti, theirs.remove+tr
		b.Logf("round %d (load %s): install certagent %.3f s, truststore %.3f s: %.1fx; remove certagent %.3f s, truststore %.3f s: %.1fx",
			i+1, loadAvg(), oi.Seconds(), ti.Seconds(), ti.Seconds()/oi.Seconds(), or.Seconds(), tr.Seconds(), tr.Seconds()/or.Seconds())
	}
	n := float64(b.N)
	runs, _ := os.ReadFile(log)
	b.ReportMetric(ours.install.Seconds()/n, "certagent-s-install/op")
	b.ReportMetric(float64(ours.installGo.Microseconds())/1000/n, "certagent-ms-install-outside-tools/op")
	b.ReportMetric(theirs.install.Seconds()/n, "truststore-s-install/op")
	b.ReportMetric(theirs.install.Seconds()/ours.install.Seconds(), "install-x")
	b.ReportMetric(ours.remove.Seconds()/n, "certagent-s-remove/op")
	b.ReportMetric(theirs.remove.Seconds()/n, "truststore-s-remove/op")
	b.ReportMetric(theirs.remove.Seconds()/ours.remove.Seconds(), "remove-x")
	b.ReportMetric(float64(s.Refreshes())/n/2, "certagent-refreshes/op")
	b.ReportMetric(float64(bytes.Count(runs, []byte("\n")))/n/2, "truststore-refreshes/op")
}

// loadAvg returns the 1-minute load average, for the round log.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// shimPath puts a directory first on PATH with a sudo that just runs its
// command (truststore prefixes sudo whenever it finds one; as root in the
// namespace it is not needed, and a real sudo may refuse) and an
// update-ca-certificates that logs each run. It returns the log's path.
func shimPath(b *testing.B) string {
	dir := b.TempDir()
	log := filepath.Join(dir, "runs.log")
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	write("sudo", "[ \"$1\" = -- ] && shift\nexec \"$@\"\n")
	write("update-ca-certificates", "echo run >> "+log+"\nexec "+nstest.UpdateCACertificates+" \"$@\"\n")
	b.Setenv("PATH", dir+":"+platform.DefaultPath)
	return log
}

// BenchmarkNoChangePass is the steady state: ten roots installed, and a pass
// (List, then trust.Install finding nothing to do) runs no command; it
// reports cmds/op, which must stay 0.
func BenchmarkNoChangePass(b *testing.B) {
	nstest.Require(b)
	nstest.Tool(b, nstest.UpdateCACertificates, "ca-certificates")
	nstest.MinimalDebianStore(b)
	cas := trusttest.NewCAs(b, 10)
	ctx := context.Background()
	cr := &platform.CountingRunner{Runner: &platform.ExecRunner{}}
	s := New(Options{Runner: cr})
	if _, err := trust.Install(ctx, s, trusttest.Certs(cas...)...); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		fps := make([]trust.Fingerprint, len(cas))
		for i, c := range cas {
			fps[i] = c.FP
		}
		trust.Uninstall(ctx, s, fps...)
	})
	n := cr.Count()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := trust.Install(ctx, s, trusttest.Certs(cas...)...)
		if err != nil || len(res) != 0 {
			b.Fatalf("a no-change pass made changes: %v %v", res, err)
		}
	}
	b.StopTimer()
	if got := cr.Count() - n; got != 0 {
		b.Fatalf("a pass with nothing to change ran %d commands", got)
	}
	b.ReportMetric(0, "cmds/op")
}
