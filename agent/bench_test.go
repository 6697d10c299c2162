package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust"
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

// BenchmarkMakePlanConverged is the planner alone on a large machine: 15
// roots (the most an account can have) in 50 NSS databases, all present.
func BenchmarkMakePlanConverged(b *testing.B) {
	cas := trusttest.NewCAs(b, 15)
	var desired []*trust.Cert
	for _, ca := range cas {
		desired = append(desired, ca.Cert)
	}
	inv := &trust.Inventory{}
	l := NewLedger()
	now := time.Now().UTC()
	for i := 0; i < 50; i++ {
		t := trust.Target{User: fmt.Sprintf("user%02d", i), Path: fmt.Sprintf("/home/user%02d/.pki/nssdb", i)}
		inv.Targets = append(inv.Targets, t)
		for _, c := range desired {
			inv.Entries = append(inv.Entries, trust.Entry{FP: c.FP, Target: t})
			l.set(entryFor(LedgerKey{Store: "nss", Target: t, FP: c.FP}, c, StateInstalled, now))
			l.Certs[c.FP] = ledgerCert(c)
		}
	}
	l.normalize()
	in := PlanInput{Desired: desired, Authoritative: true, Ledger: l, Stores: []StoreState{{Name: "nss", Inv: inv}}, Now: now}
	b.ReportAllocs()
	for b.Loop() {
		if p := MakePlan(in); !p.Empty() {
			b.Fatal("not converged")
		}
	}
}

// BenchmarkWatchedPass measures a timer pass that the store watch lets
// skip the stores (quiet.go): no fetch (a live long-poll asks the control
// plane), ledger stamp, evaluation reused, marks compared, status kept.
func BenchmarkWatchedPass(b *testing.B) {
	r := newRig(b)
	for _, ca := range trusttest.NewCAs(b, 3) {
		r.plane.add(ca, api.StatusAvailable)
	}
	a, err := New(r.cfg, Deps{OpenStore: r.open})
	if err != nil {
		b.Fatal(err)
	}
	a.SetStoreWatch(newFakeWatch())
	ctx := context.Background()
	for range 2 {
		if _, err := a.pass(ctx, passOptions{fetch: true, reason: "interval"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rep, err := a.pass(ctx, passOptions{reason: "interval"})
		if err != nil || !rep.Watched {
			b.Fatalf("not a watched pass: %v %+v", err, rep)
		}
	}
}
