package trust_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

func TestChangeValidate(t *testing.T) {
	a, b := trusttest.NewCA(t), trusttest.NewCA(t)
	tests := []struct {
		name string
		c    trust.Change
		want string
	}{
		{"install", trust.Change{Op: trust.OpInstall, FP: a.FP, Cert: a.Cert}, ""},
		{"remove without cert", trust.Change{Op: trust.OpRemove, FP: a.FP}, ""},
		{"install without cert", trust.Change{Op: trust.OpInstall, FP: a.FP}, "no certificate"},
		{"install with empty cert", trust.Change{Op: trust.OpInstall, FP: a.FP, Cert: &trust.Cert{FP: a.FP}}, "no certificate"},
		{"install other cert", trust.Change{Op: trust.OpInstall, FP: a.FP, Cert: b.Cert}, "fingerprint is"},
		// A Cert whose FP field lies is caught: the DER decides.
		{"install lying cert", trust.Change{Op: trust.OpInstall, FP: a.FP, Cert: &trust.Cert{X509: b.X509, FP: a.FP}}, "fingerprint is"},
		{"zero fingerprint", trust.Change{Op: trust.OpRemove}, "zero fingerprint"},
		{"unknown op", trust.Change{Op: "purge", FP: a.FP}, "unknown operation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, trust.ErrBadChange)
			assert.ErrorContains(t, err, tt.want)
		})
	}
}

func TestHelpers(t *testing.T) {
	ctx := context.Background()
	alice, bob := trust.Target{User: "alice", Path: "/home/alice/.pki/nssdb"}, trust.Target{User: "bob"}
	s := trusttest.NewFake("nss", alice, bob)
	a, b := trusttest.NewCA(t), trusttest.NewCA(t)

	has, err := trust.Contains(ctx, s, a.FP)
	require.NoError(t, err)
	assert.False(t, has)

	s.Plant(bob, a.Cert)
	res, err := trust.Install(ctx, s, a.Cert, b.Cert)
	require.NoError(t, err)
	require.Len(t, res, 3, "bob already has a: three changes, not four")
	require.NoError(t, trust.FirstError(res))
	has, err = trust.Contains(ctx, s, a.FP)
	require.NoError(t, err)
	assert.True(t, has)

	res, err = trust.Uninstall(ctx, s, a.FP)
	require.NoError(t, err)
	assert.Len(t, res, 2)
	for _, r := range res {
		// Uninstall names exact roots for tools and tests: copies others
		// wrote go too.
		assert.True(t, r.Change.Foreign, "%s: Uninstall's removal lacks Foreign", r.Change)
	}
	assert.True(t, s.Holds(alice, b.FP))

	boom := errors.New("boom")
	s.SetListError(boom)
	_, err = trust.Install(ctx, s, a.Cert)
	assert.ErrorIs(t, err, boom)
	_, err = trust.Uninstall(ctx, s, a.FP)
	assert.ErrorIs(t, err, boom)
	_, err = trust.Contains(ctx, s, a.FP)
	assert.ErrorIs(t, err, boom)

	failed := []trust.Result{trust.OK(trust.Change{}), trust.Skipped(trust.Change{}, "why"), trust.Failed(trust.Change{Op: trust.OpInstall, FP: a.FP, Target: bob}, boom)}
	err = trust.FirstError(failed)
	assert.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "install "+a.FP.Short()+" user bob")
	assert.NoError(t, trust.FirstError(failed[:2]), "skipped is not an error, nor OK")
	assert.Equal(t, trust.StatusSkipped, failed[1].Status)
}

func TestTargetString(t *testing.T) {
	assert.Equal(t, "-", trust.Target{}.String())
	assert.Equal(t, "/etc/x", trust.Target{Path: "/etc/x"}.String())
	assert.Equal(t, "user alice", trust.Target{User: "alice"}.String())
	assert.Equal(t, "user alice /db", trust.Target{User: "alice", Path: "/db"}.String())
}

func TestSortEntriesAndJSON(t *testing.T) {
	a, b := trusttest.NewCA(t), trusttest.NewCA(t)
	lo, hi := a.FP, b.FP
	if string(hi[:]) < string(lo[:]) {
		lo, hi = hi, lo
	}
	es := []trust.Entry{
		{FP: hi, Target: trust.Target{User: "bob"}},
		{FP: hi, Target: trust.Target{User: "alice", Path: "/b"}},
		{FP: lo, Target: trust.Target{User: "alice", Path: "/b"}},
		{FP: lo, Target: trust.Target{User: "alice", Path: "/a"}},
	}
	trust.SortEntries(es)
	assert.Equal(t, []trust.Entry{
		{FP: lo, Target: trust.Target{User: "alice", Path: "/a"}},
		{FP: lo, Target: trust.Target{User: "alice", Path: "/b"}},
		{FP: hi, Target: trust.Target{User: "alice", Path: "/b"}},
		{FP: hi, Target: trust.Target{User: "bob"}},
	}, es)

	inv := trust.Inventory{Targets: []trust.Target{{}}, Entries: []trust.Entry{{FP: lo, Tagged: true}}}
	data, err := json.Marshal(inv)
	require.NoError(t, err)
	var back trust.Inventory
	require.NoError(t, json.Unmarshal(data, &back))
	assert.Equal(t, inv.Entries, back.Entries)
	assert.True(t, back.Has(trust.Target{}, lo))
	assert.False(t, back.Has(trust.Target{User: "x"}, lo))
}

func TestBatchByTarget(t *testing.T) {
	ca := trusttest.NewCA(t).Cert
	alice, bob, eve := trust.Target{User: "alice"}, trust.Target{User: "bob"}, trust.Target{User: "eve"}
	errUnknown := errors.New("unknown target")
	changes := []trust.Change{
		{Op: trust.OpInstall, FP: ca.FP, Target: bob, Cert: ca},
		{Op: trust.OpRemove, FP: ca.FP, Target: alice},
		{Op: trust.OpInstall, FP: ca.FP, Target: alice}, // no certificate
		{Op: trust.OpRemove, FP: ca.FP, Target: eve},
		{Op: trust.OpRemove, FP: ca.FP, Target: bob},
	}
	b := trust.NewBatch(changes)
	groups := b.ByTarget(func(t trust.Target) bool { return t != eve }, errUnknown)

	require.Len(t, groups, 2)
	assert.Equal(t, bob, groups[0].Target, "targets in first-seen order")
	assert.Equal(t, []int{0, 4}, groups[0].Slots)
	assert.Equal(t, alice, groups[1].Target)
	assert.Equal(t, []int{1}, groups[1].Slots)
	assert.True(t, groups[0].HasInstall())
	assert.False(t, groups[1].HasInstall())
	assert.ErrorIs(t, b.Results[2].Err, trust.ErrBadChange)
	assert.ErrorIs(t, b.Results[3].Err, errUnknown)
	for _, i := range []int{0, 1, 4} {
		assert.Empty(t, b.Results[i].Status, "grouped change %d is left for the caller", i)
		assert.False(t, b.Decided(i))
	}

	assert.NoError(t, trust.ValidateSingle(trust.Change{Op: trust.OpRemove, FP: ca.FP}, errUnknown))
	assert.ErrorIs(t, trust.ValidateSingle(changes[1], errUnknown), errUnknown)
}

func TestBatchConfirmAndFailRemaining(t *testing.T) {
	a, bCert := trusttest.NewCA(t).Cert, trusttest.NewCA(t).Cert
	changes := []trust.Change{
		{Op: trust.OpInstall, FP: a.FP, Cert: a},         // listed afterwards: ok
		{Op: trust.OpInstall, FP: bCert.FP, Cert: bCert}, // not listed: failed
		{Op: trust.OpRemove, FP: a.FP},                   // still listed: failed
		{Op: trust.OpRemove, FP: bCert.FP},               // gone: ok
		{Op: trust.OpRemove, FP: bCert.FP},               // already decided: kept
	}
	b := trust.NewBatch(changes)
	b.Results[4] = trust.Skipped(changes[4], "decided earlier")
	listed := func(fp trust.Fingerprint) bool { return fp == a.FP }
	b.Slots([]int{0, 1, 2, 3, 4}).Confirm(listed, listed, "test: db")

	want := []trust.Status{trust.StatusOK, trust.StatusFailed, trust.StatusFailed, trust.StatusOK, trust.StatusSkipped}
	for i, w := range want {
		assert.Equal(t, w, b.Results[i].Status, "change %d", i)
	}
	assert.ErrorContains(t, b.Results[1].Err, "test: db")
	assert.ErrorContains(t, b.Results[2].Err, "still listed")

	open := trust.NewBatch(changes)
	open.Results[0] = trust.OK(changes[0])
	boom := errors.New("boom")
	open.Slots([]int{0, 1}).FailRemaining(boom)
	assert.Equal(t, trust.StatusOK, open.Results[0].Status, "a decided change keeps its result")
	assert.ErrorIs(t, open.Results[1].Err, boom)
	assert.Empty(t, open.Results[2].Status, "changes outside the group are untouched")
	open.FailRemaining(boom)
	assert.Equal(t, trust.StatusOK, open.Results[0].Status, "a decided change keeps its result")
	for i := range open.Results {
		assert.NotEmpty(t, open.Results[i].Status, "FailRemaining decides every change: %d", i)
	}
}
