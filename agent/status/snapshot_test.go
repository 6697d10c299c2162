package status

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/trust"
)

func TestFromSnapshot(t *testing.T) {
	a := trust.FingerprintOf([]byte("a"))
	b := trust.FingerprintOf([]byte("b"))
	gone := trust.FingerprintOf([]byte("gone"))
	retired := trust.FingerprintOf([]byte("retired"))
	alice := trust.Target{User: "alice", Path: "/home/alice/.pki/nssdb"}
	snap := &agent.Snapshot{
		Version: "1.0", ControlPlaneURL: "https://cp.example/client/v4", AccountID: "acct", PollInterval: "1m0s",
		Stores:   []string{"system", "nss", "java"},
		LastPoll: now.Add(-10 * time.Second), LastPollStatus: "auth_error", LastError: "HTTP 401: invalid token",
		LastSuccess: now.Add(-time.Hour), ConsecutiveFailures: 1, AuthBlocked: true, ClockSkew: "2s",
		LastPass: now.Add(-10 * time.Second),
		Desired: []agent.CertInfo{
			{ID: "a", FP: a, Subject: "Root A", NotAfter: now.Add(400 * 24 * time.Hour), InUse: true},
			{ID: "b", FP: b, Subject: "Root B", NotAfter: now.Add(10 * 24 * time.Hour)},
		},
		Rejected: []trust.Rejected{{ID: "w", Reason: "SHA-1 signature"}},
		Withheld: []agent.CertInfo{{ID: "p", FP: trust.FingerprintOf([]byte("p")), Subject: "Pending", BindingStatus: "pending_deployment"}},
		Results: []agent.TargetResult{
			{Store: "system", FP: a, Status: trust.StatusOK, Reason: "present"},
			{Store: "system", FP: b, Op: trust.OpInstall, Status: trust.StatusFailed, Error: "update-ca-certificates: exit status 1"},
			{Store: "nss", Target: alice, FP: a, Status: trust.StatusSkipped, Reason: "in the store but not trusted by the OS (trust pending: deliver it with an MDM profile)"},
			{Store: "nss", Target: trust.Target{User: "bob"}, FP: a, Status: trust.StatusSkipped, Reason: "no NSS database"},
			{Store: "java", FP: a, Status: trust.StatusSkipped, Reason: "trust: store unavailable: keytool not found"},
			{Store: "system", FP: gone, Op: trust.OpRemove, Status: trust.StatusOK, Subject: "Withdrawn Root"},
			{Store: "system", FP: retired, Op: trust.OpRemove, Retired: true, Status: trust.StatusOK, Subject: "Old CF Root"},
		},
	}
	r := FromSnapshot(snap, Inputs{Daemon: Daemon{Running: true, Source: "localapi"}, Now: now})

	require.Equal(t, time.Minute, r.Config.PollInterval)
	require.Equal(t, 2*time.Second, r.ControlPlane.ClockSkew)
	require.True(t, r.ControlPlane.TokenRejected)
	require.False(t, r.ControlPlane.Reachable)

	require.Len(t, r.Stores, 3)
	require.True(t, r.Stores[0].Available)
	require.Equal(t, 1, r.Stores[1].Targets, "alice's database is a target even while trust is pending")
	require.Len(t, r.Stores[1].Skipped, 1)
	require.False(t, r.Stores[2].Available)
	require.Contains(t, r.Stores[2].Error, "keytool")

	byID := map[string]Certificate{}
	for _, c := range r.Certificates {
		byID[c.ID] = c
	}
	require.Equal(t, CertAvailable, byID["a"].State)
	require.True(t, byID["a"].InUse)
	states := map[string]PlacementState{}
	for _, p := range byID["a"].Placements {
		states[p.Store+"/"+p.User] = p.State
	}
	require.Equal(t, PlacementInstalled, states["system/"])
	require.Equal(t, PlacementTrustPending, states["nss/alice"])
	require.Equal(t, PlacementSkipped, states["nss/bob"])
	require.Equal(t, PlacementFailed, byID["b"].Placements[0].State)
	require.Equal(t, CertRejected, byID["w"].State)
	require.Equal(t, CertNotDeployed, byID["p"].State)

	require.Len(t, r.Retired, 2)
	whys := map[string]string{}
	for _, x := range r.Retired {
		whys[x.Subject] = x.Why
	}
	require.Equal(t, "retired", whys["Old CF Root"])
	require.Equal(t, "withdrawn", whys["Withdrawn Root"])

	codes := map[string]bool{}
	for _, w := range r.Health {
		codes[w.Code] = true
	}
	for _, c := range []string{CodeTokenRejected, CodeStoreUnavailable, CodeTrustPending, CodeInstallFailed, CodeRootExpiring, CodeCertRejected} {
		require.True(t, codes[c], "missing %s in %+v", c, r.Health)
	}
	require.False(t, codes[CodeUnreachable], "a rejected token is not reported as unreachable too")
	require.Equal(t, 1, ExitCode(r.Health))
}
