package linuxca

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
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
// run costs seconds. It takes minutes, so it runs only with
// CERTAGENT_BENCH_FULL=1, and only before anything made the store minimal:
//
//	CERTAGENT_BENCH_FULL=1 go test -run '^$' -bench FullStore -benchtime 1x ./trust/linuxca/
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
// namespaced (minimal) Debian store. Both report refreshes/op: how many
// times update-ca-certificates ran.
//
//	sudo go test -run '^$' -bench InstallTenRoots ./trust/linuxca/
func BenchmarkInstallTenRoots(b *testing.B) {
	nstest.Require(b)
	nstest.Tool(b, nstest.UpdateCACertificates, "ca-certificates")
	nstest.MinimalDebianStore(b)
	benchTenRoots(b)
}

func benchTenRoots(b *testing.B) {
	cas := trusttest.NewCAs(b, 10)
	ctx := context.Background()

	b.Run("certagent", func(b *testing.B) {
		cr := &platform.CountingRunner{Runner: &platform.ExecRunner{}}
		s := New(Options{Runner: cr})
		var removal time.Duration // timed apart: ns/op is the install
		for i := 0; i < b.N; i++ {
			res, err := trust.Install(ctx, s, trusttest.Certs(cas...)...)
			if err == nil {
				err = trust.FirstError(res)
			}
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			fps := make([]trust.Fingerprint, len(cas))
			for j, c := range cas {
				fps[j] = c.FP
			}
			t0 := time.Now()
			if _, err := trust.Uninstall(ctx, s, fps...); err != nil {
				b.Fatal(err)
			}
			removal += time.Since(t0)
			b.StartTimer()
		}
		b.ReportMetric(float64(s.Refreshes())/float64(b.N)/2, "refreshes/op")
		b.ReportMetric(float64(removal.Nanoseconds())/float64(b.N), "ns-remove/op")
	})

	b.Run("truststore", func(b *testing.B) {
		log := shimPath(b)
		var removal time.Duration
		for i := 0; i < b.N; i++ {
			for _, c := range cas {
				if err := truststore.Install(c.X509); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			t0 := time.Now()
			for _, c := range cas {
				if err := truststore.Uninstall(c.X509); err != nil {
					b.Fatal(err)
				}
			}
			removal += time.Since(t0)
			b.StartTimer()
		}
		runs, _ := os.ReadFile(log)
		b.ReportMetric(float64(bytes.Count(runs, []byte("\n")))/float64(b.N)/2, "refreshes/op")
		b.ReportMetric(float64(removal.Nanoseconds())/float64(b.N), "ns-remove/op")
	})
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
