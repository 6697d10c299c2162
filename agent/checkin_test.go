package agent

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust"
)

func TestCheckInDue(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		st   CheckInState
		hash string
		want bool
	}{
		{"never", CheckInState{}, "h", true},
		{"accepted, same, fresh", CheckInState{Status: CheckInAccepted, ReportHash: "h", LastAccepted: now.Add(-time.Hour)}, "h", false},
		{"accepted, changed", CheckInState{Status: CheckInAccepted, ReportHash: "h", LastAccepted: now.Add(-time.Minute)}, "h2", true},
		{"accepted, a day old", CheckInState{Status: CheckInAccepted, ReportHash: "h", LastAccepted: now.Add(-CheckInInterval)}, "h", true},
		{"failed, just now", CheckInState{Status: CheckInFailed, LastAttempt: now.Add(-time.Minute)}, "h", false},
		{"failed, retry due", CheckInState{Status: CheckInFailed, LastAttempt: now.Add(-CheckInRetry)}, "h", true},
		{"refused, changed but an hour ago", CheckInState{Status: CheckInRefused, LastAttempt: now.Add(-time.Hour)}, "h2", false},
		{"refused, a day ago", CheckInState{Status: CheckInRefused, LastAttempt: now.Add(-CheckInInterval)}, "h", true},
		{"unsupported", CheckInState{Status: CheckInUnsupported, LastAttempt: now.Add(-time.Hour)}, "h", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CheckInDue(tc.st, tc.hash, now); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBuildCheckIn(t *testing.T) {
	a := trust.Fingerprint{1}
	b := trust.Fingerprint{2}
	s := Snapshot{
		Desired: []CertInfo{{FP: a}, {FP: b}},
		Results: []TargetResult{
			{Store: "system", FP: a, Status: trust.StatusOK},
			{Store: "nss", Target: trust.Target{User: "alice", Path: "/home/alice/.pki/nssdb"}, FP: a, Status: trust.StatusOK},
			{Store: "nss", Target: trust.Target{User: "alice", Path: "/home/alice/.mozilla/x"}, FP: a, Status: trust.StatusFailed, Error: "certutil: exit 255\n"},
			{Store: "keychain", FP: a, Status: trust.StatusSkipped, Reason: "installed; trust pending (user approval)"},
			{Store: "dir:/x", FP: a, Status: trust.StatusOK},
			{Store: "system", FP: b, Status: trust.StatusSkipped, Reason: "store unavailable"},
			{Store: "system", FP: trust.Fingerprint{3}, Op: trust.OpRemove, Status: trust.StatusOK},
		},
	}
	in := BuildCheckIn(s, "host", "Debian 13")
	assert.Equal(t, runtime.GOOS, in.OS)
	require.Len(t, in.Roots, 2)
	assert.Equal(t, a.String(), in.Roots[0].Fingerprint)
	assert.Equal(t, []api.StoreState{
		{Store: "dir:/x", State: api.StateInstalled},
		{Store: "keychain", State: api.StateTrustPending, Detail: "installed; trust pending (user approval)"},
		{Store: "nss", User: "alice", State: api.StateFailed, Detail: "certutil: exit 255 "},
		{Store: "system", State: api.StateTrusted},
	}, in.Roots[0].Stores, "one line per (store, user), the worst state of its targets")
	assert.Equal(t, []api.StoreState{{Store: "system", State: api.StateFailed, Detail: "skipped: store unavailable"}}, in.Roots[1].Stores)
	// The sync time does not change the hash; content does.
	s2 := s
	s2.LastPass = time.Now()
	assert.Equal(t, reportHash(in), reportHash(BuildCheckIn(s2, "host", "Debian 13")))
	assert.NotEqual(t, reportHash(in), reportHash(BuildCheckIn(s, "other", "Debian 13")))
}

func TestDeviceIdentityFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	_, err := ReadDeviceIdentity(dir)
	require.ErrorIs(t, err, errNoDeviceID)
	id, err := LoadDeviceIdentity(dir)
	require.NoError(t, err)
	require.Len(t, id.ID, 36)
	assert.Empty(t, id.Secret)
	fi, err := os.Stat(filepath.Join(dir, deviceIDFile))
	require.NoError(t, err)
	if runtime.GOOS != "windows" {
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	}
	again, err := LoadDeviceIdentity(dir)
	require.NoError(t, err)
	assert.Equal(t, id, again, "kept across starts")
	require.NoError(t, id.saveSecret(dir, "s3cret"))
	again, err = LoadDeviceIdentity(dir)
	require.NoError(t, err)
	assert.Equal(t, "s3cret", again.Secret)

	// A damaged id is replaced, and the secret that belonged to it dropped.
	for _, bad := range []string{"", "not-a-uuid", "../../etc/passwd", "0123456789abcdef0123456789abcdef"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, deviceIDFile), []byte(bad), 0o600))
		got, err := LoadDeviceIdentity(dir)
		require.NoError(t, err, bad)
		assert.Len(t, got.ID, 36, bad)
		assert.NotEqual(t, id.ID, got.ID, bad)
		assert.Empty(t, got.Secret, bad)
		_, err = os.Stat(filepath.Join(dir, deviceSecretFile))
		assert.ErrorIs(t, err, os.ErrNotExist, bad)
	}
}

func TestOffersCheckIn(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want bool
	}{
		{"https://api.cloudflare.com/client/v4", false},
		{"https://API.Cloudflare.com:443/client/v4", false},
		{"https://certplane.example.com/client/v4", true},
		{"http://127.0.0.1:8080/client/v4", true},
		{"https://api.cloudflare.com.evil.example/client/v4", true},
	} {
		if got := offersCheckIn(tc.url); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.url, got, tc.want)
		}
	}
}
