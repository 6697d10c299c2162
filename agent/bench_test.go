package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust/trusttest"
)

// BenchmarkNoChangePass measures a converged pass: poll (304 over real
// HTTP on loopback), ledger read, inventory of every store, plan. No Apply
// and no file write happen (the tests prove it; here b fails if one does).
func BenchmarkNoChangePass(b *testing.B) {
	for _, bc := range []struct {
		name   string
		stores func(b *testing.B) []string
	}{
		{"fake-stores", func(*testing.B) []string { return []string{"one", "multi"} }},
		{"dir-store", func(b *testing.B) []string {
			return []string{"dir:" + filepath.Join(b.TempDir(), "anchors")}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := newRig(b)
			r.cfg.Stores = bc.stores(b)
			for _, ca := range trusttest.NewCAs(b, 3) {
				r.plane.add(ca, api.StatusAvailable)
			}
			a, err := New(r.cfg, Deps{OpenStore: r.open})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := a.SyncOnce(context.Background(), false); err != nil {
				b.Fatal(err)
			}
			st, err := os.Stat(r.cfg.LedgerPath())
			if err != nil {
				b.Fatal(err)
			}
			applies := r.applies()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				rep, err := a.SyncOnce(context.Background(), false)
				if err != nil || rep.Changes != 0 || rep.LedgerWritten {
					b.Fatalf("not a quiet pass: %v %+v", err, rep)
				}
			}
			b.StopTimer()
			st2, err := os.Stat(r.cfg.LedgerPath())
			if err != nil || !os.SameFile(st, st2) || !st.ModTime().Equal(st2.ModTime()) || r.applies() != applies {
				b.Fatal("a quiet pass wrote the ledger or called Apply")
			}
		})
	}
}
