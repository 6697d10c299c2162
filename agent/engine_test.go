package agent

import (
	"context"
	"crypto/elliptic"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/dir"
	"github.com/certagent/certagent/trust/trusttest"
)

func TestSyncInstallsOnlyAcceptableAvailableRoots(t *testing.T) {
	r := newRig(t)
	names := map[trust.Fingerprint]string{}
	mk := func(name string, status api.BindingStatus, opts ...trusttest.Option) *trusttest.CA {
		ca := trusttest.NewCA(t, append([]trusttest.Option{trusttest.WithCommonName(name)}, opts...)...)
		r.plane.add(ca, status)
		names[ca.FP] = name
		return ca
	}
	mk("available", api.StatusAvailable)
	mk("legacy-active", api.StatusActive)
	mk("inactive", api.StatusInactive)
	mk("pending", api.StatusPendingDeployment)
	mk("pending-deletion", api.StatusPendingDeletion)
	mk("expired", api.StatusAvailable, trusttest.Expired())
	mk("not-yet-valid", api.StatusAvailable, trusttest.NotYetValid())
	mk("not-ca", api.StatusAvailable, trusttest.NotCA())
	mk("weak-rsa", api.StatusAvailable, trusttest.WithRSA(1024))
	mk("weak-curve", api.StatusAvailable, trusttest.WithECDSA(elliptic.P224()))
	mk("sha1", api.StatusAvailable, trusttest.WithRSA(2048), trusttest.WithSHA1())
	mk("md5", api.StatusAvailable, trusttest.WithRSA(2048), trusttest.WithMD5())
	mk("rsa-2048", api.StatusAvailable, trusttest.WithRSA(2048))
	mk("ed25519", api.StatusAvailable, trusttest.WithEd25519())

	a := r.agent()
	rep := r.sync(a)
	assert.False(t, rep.Failed(), "report failed: %+v", rep)
	assert.Equal(t, "ok", rep.Fetch.Status)
	assert.True(t, rep.Fetch.Authoritative)

	want := []string{
		"multi alice available", "multi alice ed25519", "multi alice legacy-active", "multi alice rsa-2048",
		"multi bob available", "multi bob ed25519", "multi bob legacy-active", "multi bob rsa-2048",
		"one - available", "one - ed25519", "one - legacy-active", "one - rsa-2048",
	}
	assert.Equal(t, want, r.holdings(names))

	rejected := map[string]string{}
	for _, rj := range rep.Rejected {
		rejected[names[rj.FP]] = rj.Reason
	}
	for name, reason := range map[string]string{
		"expired": "expired", "not-yet-valid": "not valid until", "not-ca": "not a CA",
		"weak-rsa": "weak key", "weak-curve": "weak key", "sha1": "SHA-1", "md5": "MD5",
	} {
		assert.Contains(t, rejected[name], reason, "rejection of %s", name)
	}
	assert.Len(t, rep.Rejected, 7)
	assert.Len(t, rep.Withheld, 3, "inactive, pending and pending-deletion are withheld")

	l := r.ledger()
	var wantLedger []string
	for _, h := range want {
		wantLedger = append(wantLedger, h+"=installed")
	}
	assert.Equal(t, wantLedger, ledgerStates(l, names))
	st, err := os.Stat(r.cfg.LedgerPath())
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "ledger mode")
	// One batch per store: one refresh each.
	assert.Equal(t, 1, r.fake("one").Refreshes())
	assert.Equal(t, 1, r.fake("multi").Refreshes())

	snap := a.Snapshot()
	assert.Len(t, snap.Desired, 4)
	assert.Equal(t, "ok", snap.LastPollStatus)
	assert.False(t, snap.ServerDate.IsZero(), "server date recorded")
	persisted, err := LoadSnapshot(r.cfg.StatusPath())
	require.NoError(t, err)
	assert.Len(t, persisted.Desired, 4)
}

func TestSyncRemovesAfterDeactivateAndDelete(t *testing.T) {
	r := newRig(t)
	cas := trusttest.NewCAs(t, 3)
	names := map[trust.Fingerprint]string{cas[0].FP: "A", cas[1].FP: "B", cas[2].FP: "F"}
	idA := r.plane.add(cas[0], api.StatusAvailable)
	idB := r.plane.add(cas[1], api.StatusAvailable)
	// F is someone else's root, trusted before we came: never ours.
	r.fake("one").Plant(t0, cas[2].Cert)

	a := r.agent()
	r.sync(a)
	assert.Equal(t, []string{"multi alice A", "multi alice B", "multi bob A", "multi bob B", "one - A", "one - B", "one - F"}, r.holdings(names))

	// Deactivate B: pending_deletion is no longer deployed.
	r.plane.setStatus(idB, api.StatusPendingDeletion)
	rep := r.sync(a)
	assert.Equal(t, []string{"multi alice A", "multi bob A", "one - A", "one - F"}, r.holdings(names))
	removed := 0
	for _, res := range rep.Results {
		if res.Op == trust.OpRemove {
			assert.Equal(t, trust.StatusOK, res.Status)
			removed++
		}
	}
	assert.Equal(t, 3, removed)

	// B finishes deactivating and is deleted; A is deactivated and deleted.
	r.plane.setStatus(idB, api.StatusInactive)
	r.plane.remove(idB)
	r.plane.setStatus(idA, api.StatusInactive)
	r.plane.remove(idA)
	rep = r.sync(a)
	assert.Empty(t, rep.Desired)
	assert.Equal(t, []string{"one - F"}, r.holdings(names), "the foreign root stays")
	assert.Empty(t, r.ledger().Entries)
}

func TestSyncRemovesRetiredRootFromDirStore(t *testing.T) {
	for _, removeRetired := range []bool{true, false} {
		t.Run(map[bool]string{true: "remove_retired", false: "remove_retired false"}[removeRetired], func(t *testing.T) {
			r := newRig(t)
			dirPath := filepath.Join(t.TempDir(), "anchors")
			require.NoError(t, os.MkdirAll(dirPath, 0o755))
			spec := "dir:" + dirPath
			r.cfg.Stores = []string{spec}
			retired := trusttest.NewCA(t, trusttest.WithCommonName("old vendor root"))
			other := trusttest.NewCA(t, trusttest.WithCommonName("someone else's root"))
			// Planted by hand, under names certagent would never write.
			require.NoError(t, os.WriteFile(filepath.Join(dirPath, "old-vendor.crt"), retired.PEM(), 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(dirPath, "other.pem"), other.PEM(), 0o644))
			r.cfg.RetiredFingerprints = []trust.Fingerprint{retired.FP}
			r.cfg.RemoveRetired = removeRetired
			wanted := trusttest.NewCA(t)
			r.plane.add(wanted, api.StatusAvailable)

			rep := r.sync(r.agent())
			_, errRetired := os.Stat(filepath.Join(dirPath, "old-vendor.crt"))
			if removeRetired {
				assert.ErrorIs(t, errRetired, os.ErrNotExist, "retired root should be gone")
				var sawRetired bool
				for _, res := range rep.Results {
					if res.Retired && res.Op == trust.OpRemove && res.Status == trust.StatusOK {
						sawRetired = true
					}
				}
				assert.True(t, sawRetired, "report names the retired removal")
				assert.Len(t, r.agent().Snapshot().RetiredRemoved, 1, "status remembers retired removals across restarts")
			} else {
				assert.NoError(t, errRetired, "remove_retired false keeps it")
			}
			_, err := os.Stat(filepath.Join(dirPath, "other.pem"))
			assert.NoError(t, err, "a foreign root is never removed")
			ok, err := trust.Contains(context.Background(), r.stores[spec], wanted.FP)
			require.NoError(t, err)
			assert.True(t, ok)
		})
	}
}

func TestBuiltinRetiredFingerprint(t *testing.T) {
	fps := BuiltinRetired()
	require.Len(t, fps, 1)
	assert.Equal(t, RetiredCloudflareTeamsECC, fps[0].String())
	assert.Equal(t, "f5e156c4897877ad793a1e83fa7783f19cb0c61b582c2f5011b337727c623def", fps[0].Hex())
	cfg := &Config{RemoveRetired: true}
	assert.True(t, cfg.Retired()[fps[0]])
	cfg.RemoveRetired = false
	assert.Nil(t, cfg.Retired())
}

func TestFailStaticRemovesNothing(t *testing.T) {
	modes := []failMode{fail500, fail401, fail403, failHTML, failTruncated, failEmpty, failTimeout, failNullResult, failBadPEM, failBadFP, failSuccessF}
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			cas := trusttest.NewCAs(t, 2)
			names := map[trust.Fingerprint]string{cas[0].FP: "A", cas[1].FP: "B"}
			idA := r.plane.add(cas[0], api.StatusAvailable)
			r.plane.add(cas[1], api.StatusAvailable)
			a := r.agent()
			r.sync(a)
			holdings := r.holdings(names)
			require.Len(t, holdings, 6)
			ledgerBefore, err := os.ReadFile(r.cfg.LedgerPath())
			require.NoError(t, err)

			// Were the agent to believe this answer, A would go.
			r.plane.setStatus(idA, api.StatusInactive)
			r.plane.setMode(mode)
			for _, ag := range []*Agent{a, r.agent()} { // the running agent, and one just restarted
				ctx := context.Background()
				if mode == failTimeout {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
					defer cancel()
				}
				rep, err := ag.SyncOnce(ctx, false)
				require.NoError(t, err)
				assert.True(t, rep.Failed(), "a bad answer is a failed pass")
				assert.False(t, rep.Fetch.Authoritative)
				assert.NotEmpty(t, rep.Fetch.Error)
				if mode == fail401 || mode == fail403 {
					assert.Equal(t, "auth_error", rep.Fetch.Status)
				}
				assert.Equal(t, holdings, r.holdings(names), "stores changed on %s", mode)
				ledgerAfter, err := os.ReadFile(r.cfg.LedgerPath())
				require.NoError(t, err)
				assert.Equal(t, string(ledgerBefore), string(ledgerAfter), "ledger changed on %s", mode)
				assert.NotEmpty(t, ag.Snapshot().LastError)
				assert.Len(t, rep.Desired, 2, "the desired set stays what it was")
			}

			// A valid answer afterwards does remove A.
			r.plane.setMode(failNone)
			r.sync(a)
			assert.Equal(t, []string{"multi alice B", "multi bob B", "one - B"}, r.holdings(names))
		})
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	r := newRig(t)
	ca := trusttest.NewCA(t)
	r.plane.add(ca, api.StatusAvailable)
	rep, err := r.agent().SyncOnce(context.Background(), true)
	require.NoError(t, err)
	assert.Equal(t, 3, rep.Changes)
	planned := 0
	for _, res := range rep.Results {
		if res.Status == StatusPlanned {
			planned++
			assert.Equal(t, trust.OpInstall, res.Op)
		}
	}
	assert.Equal(t, 3, planned)
	assert.Equal(t, 0, r.applies(), "dry run called Apply")
	entries, err := os.ReadDir(r.cfg.StateDir)
	require.NoError(t, err)
	assert.Empty(t, entries, "dry run wrote to the state dir")
}

func TestPurgeRemovesOnlyOurRoots(t *testing.T) {
	r := newRig(t)
	cas := trusttest.NewCAs(t, 2)
	names := map[trust.Fingerprint]string{cas[0].FP: "A", cas[1].FP: "F"}
	r.plane.add(cas[0], api.StatusAvailable)
	r.fake("multi").Plant(tA, cas[1].Cert)
	r.sync(r.agent())
	require.Len(t, r.holdings(names), 4)

	// Purge needs no control plane.
	r.plane.setMode(fail500)
	rep, err := Purge(context.Background(), r.cfg, Deps{OpenStore: r.open})
	require.NoError(t, err)
	assert.True(t, rep.StateRemoved)
	assert.Equal(t, []string{"multi alice F"}, r.holdings(names))
	for _, f := range []string{r.cfg.LedgerPath(), r.cfg.StatusPath()} {
		_, err := os.Stat(f)
		assert.ErrorIs(t, err, os.ErrNotExist, f)
	}
}

func TestPurgeKeepsLedgerWhenAStoreFails(t *testing.T) {
	r := newRig(t)
	ca := trusttest.NewCA(t)
	r.plane.add(ca, api.StatusAvailable)
	r.sync(r.agent())
	r.fake("multi").FailTarget(tB, nil)
	rep, err := Purge(context.Background(), r.cfg, Deps{OpenStore: r.open})
	require.Error(t, err)
	assert.False(t, rep.StateRemoved)
	require.Len(t, rep.Remaining, 1)
	assert.Equal(t, tB, rep.Remaining[0].Target)
	assert.Equal(t, StateRemoving, rep.Remaining[0].State)

	// Once the store works again, a second purge finishes.
	r.fake("multi").ClearFailures()
	_, err = Purge(context.Background(), r.cfg, Deps{OpenStore: r.open})
	require.NoError(t, err)
	assert.Empty(t, r.holdings(nil))
}

func TestUnavailableStoreIsSkippedNotOK(t *testing.T) {
	r := newRig(t)
	r.cfg.Stores = []string{"one", "nss"}
	ca := trusttest.NewCA(t)
	r.plane.add(ca, api.StatusAvailable)
	rep := r.sync(r.agent())
	var skipped, ok int
	for _, res := range rep.Results {
		switch {
		case res.Store == "nss":
			assert.Equal(t, trust.StatusSkipped, res.Status)
			assert.Contains(t, res.Reason, "no store")
			skipped++
		case res.Status == trust.StatusOK:
			ok++
		}
	}
	assert.Equal(t, 1, skipped)
	assert.Equal(t, 1, ok)
	assert.False(t, rep.Failed(), "skipped is reported, not failed")
}

func TestFailedTargetIsReportedAndRetried(t *testing.T) {
	r := newRig(t)
	ca := trusttest.NewCA(t)
	r.plane.add(ca, api.StatusAvailable)
	r.fake("multi").FailTarget(tB, errors.New("database locked"))
	a := r.agent()
	rep := r.sync(a)
	assert.True(t, rep.Failed())
	var failed []TargetResult
	for _, res := range rep.Results {
		if res.Status == trust.StatusFailed {
			failed = append(failed, res)
		}
	}
	require.Len(t, failed, 1)
	assert.Equal(t, tB, failed[0].Target)
	assert.Contains(t, failed[0].Error, "database locked")
	e, ok := r.ledger().Get(LedgerKey{Store: "multi", Target: tB, FP: ca.FP})
	require.True(t, ok)
	assert.Equal(t, StateInstalling, e.State, "a failed install stays pending")

	r.fake("multi").ClearFailures()
	rep = r.sync(a)
	assert.False(t, rep.Failed())
	e, _ = r.ledger().Get(LedgerKey{Store: "multi", Target: tB, FP: ca.FP})
	assert.Equal(t, StateInstalled, e.State)
}

func TestCorruptLedgerRefusesThePass(t *testing.T) {
	r := newRig(t)
	r.plane.add(trusttest.NewCA(t), api.StatusAvailable)
	require.NoError(t, os.WriteFile(r.cfg.LedgerPath(), []byte(`{"version":1,"entries":[{"store":"one","fingerpr`), 0o600))
	_, err := r.agent().SyncOnce(context.Background(), false)
	require.ErrorIs(t, err, ErrLedgerCorrupt)
	assert.Equal(t, 0, r.applies())
}

func TestAuthoritativeEmptyAnswerRemovesWithdrawn(t *testing.T) {
	// Zero available certificates on a valid answer is an admin's
	// decision: withdrawn roots go.
	r := newRig(t)
	ca := trusttest.NewCA(t)
	id := r.plane.add(ca, api.StatusAvailable)
	a := r.agent()
	r.sync(a)
	r.plane.remove(id)
	rep := r.sync(a)
	assert.True(t, rep.Fetch.Authoritative)
	assert.Empty(t, r.holdings(nil))
}

func TestPolicyRejectingEverythingRemoves(t *testing.T) {
	// An available root that expires is removed on the next pass, even
	// from a 304: expiry is re-evaluated against the clock every pass.
	r := newRig(t)
	ca := trusttest.NewCA(t, trusttest.WithValidity(time.Now().Add(-time.Hour), time.Now().Add(time.Hour)))
	r.plane.add(ca, api.StatusAvailable)
	// The clock is read by the pass and by the check-in it starts in the
	// background, so it moves atomically.
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	a, err := New(r.cfg, Deps{OpenStore: r.open, Now: func() time.Time { return time.Unix(0, now.Load()) }})
	require.NoError(t, err)
	r.sync(a)
	require.Len(t, r.holdings(nil), 3)
	now.Add(int64(2 * time.Hour))
	rep := r.sync(a)
	assert.Equal(t, "not_modified", rep.Fetch.Status)
	require.Len(t, rep.Rejected, 1)
	assert.True(t, strings.HasPrefix(rep.Rejected[0].Reason, "expired"))
	assert.Empty(t, r.holdings(nil))
}

func TestStoreDroppedFromConfigIsCleanedUp(t *testing.T) {
	r := newRig(t)
	ca := trusttest.NewCA(t)
	foreign := trusttest.NewCA(t)
	r.plane.add(ca, api.StatusAvailable)
	r.fake("multi").Plant(tA, foreign.Cert)
	a := r.agent()
	r.sync(a)
	require.Len(t, r.holdings(nil), 4)

	cfg := *r.cfg
	cfg.Stores = []string{"one"}
	require.NoError(t, a.Reload(&cfg))
	rep := r.sync(a)
	removed := 0
	for _, res := range rep.Results {
		if res.Op == trust.OpRemove && res.Store == "multi" && res.Status == trust.StatusOK {
			removed++
		}
	}
	assert.Equal(t, 2, removed, "our roots leave the dropped store")
	ok, err := trust.Contains(context.Background(), r.stores["one"], ca.FP)
	require.NoError(t, err)
	assert.True(t, ok)
	inv, err := r.stores["multi"].List(context.Background())
	require.NoError(t, err)
	require.Len(t, inv.Entries, 1, "only the foreign root stays in the dropped store")
	assert.Equal(t, foreign.FP, inv.Entries[0].FP)
	for _, e := range r.ledger().Entries {
		assert.Equal(t, "one", e.Store)
	}
}

// TestWithdrawnRootOurFileGoneLeavesTheirs: our file for a root vanishes
// between planning and applying (someone deletes it) while an
// administrator's own file holds the same root. Withdrawing the root must
// not delete their file; a retired root planted under a foreign name in the
// same pass still goes.
func TestWithdrawnRootOurFileGoneLeavesTheirs(t *testing.T) {
	r := newRig(t)
	dirPath := filepath.Join(t.TempDir(), "anchors")
	require.NoError(t, os.MkdirAll(dirPath, 0o755))
	spec := "dir:" + dirPath
	r.cfg.Stores = []string{spec}
	ca := trusttest.NewCA(t, trusttest.WithCommonName("withdrawn root"))
	id := r.plane.add(ca, api.StatusAvailable)
	r.sync(r.agent())
	ours := filepath.Join(dirPath, dir.FileName(ca.FP))
	require.FileExists(t, ours, "the first pass writes our copy")

	theirs := filepath.Join(dirPath, "admin-copy.pem")
	require.NoError(t, os.WriteFile(theirs, ca.PEM(), 0o644))
	retired := trusttest.NewCA(t, trusttest.WithCommonName("managed warp"))
	warp := filepath.Join(dirPath, "managed-warp.crt")
	require.NoError(t, os.WriteFile(warp, retired.PEM(), 0o644))
	r.cfg.RetiredFingerprints = []trust.Fingerprint{retired.FP}
	r.cfg.RemoveRetired = true

	r.plane.setStatus(id, api.StatusInactive)
	r.plane.remove(id)
	raced := false
	r.hook = func(step string) error {
		if step == "apply:"+spec {
			// The plan saw our tagged file; it is gone by the time the
			// store applies the removal.
			raced = true
			return os.Remove(ours)
		}
		return nil
	}
	rep := r.sync(r.agent())
	require.True(t, raced, "the hook never ran before the store's apply")

	assert.FileExists(t, theirs, "withdrawing our root deleted the administrator's copy")
	assert.NoFileExists(t, warp, "the retired root planted under a foreign name stays")
	var withdrawn, retiredRemoved *TargetResult
	for i, res := range rep.Results {
		switch {
		case res.Op == trust.OpRemove && res.FP == ca.FP:
			withdrawn = &rep.Results[i]
		case res.Op == trust.OpRemove && res.FP == retired.FP:
			retiredRemoved = &rep.Results[i]
		}
	}
	require.NotNil(t, withdrawn, "no result for the withdrawn root")
	assert.Equal(t, trust.StatusOK, withdrawn.Status)
	assert.Equal(t, trust.ReasonOthersCopies, withdrawn.Reason)
	assert.False(t, withdrawn.Retired)
	require.NotNil(t, retiredRemoved, "no result for the retired root")
	assert.Equal(t, trust.StatusOK, retiredRemoved.Status)
	assert.True(t, retiredRemoved.Retired)
	assert.Empty(t, r.ledger().Entries, "nothing of ours is left to remember")

	// The next pass leaves their copy alone too.
	r.hook = nil
	r.sync(r.agent())
	assert.FileExists(t, theirs)
}
