package storagetest

import (
	"bytes"
	"context"
	"errors"
	mathrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane/storage"
)

// colonFP spells a stored hex fingerprint the way agents send it
// (upper-case, colon-separated), to prove matching ignores the spelling.
func colonFP(fp string) string {
	fp = strings.ToUpper(fp)
	var b strings.Builder
	for i := 0; i < len(fp); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(fp[i : i+2])
	}
	return b.String()
}

func rootIn(fp string, states ...string) storage.RootReport {
	r := storage.RootReport{Fingerprint: fp}
	for i, s := range states {
		st := storage.StoreState{Store: "dir", State: s}
		if i > 0 {
			st = storage.StoreState{Store: "nss", User: "u" + string(rune('0'+i)), State: s}
		}
		r.Stores = append(r.Stores, st)
	}
	return r
}

func secretCheck(want []byte) func([]byte) error {
	return func(stored []byte) error {
		if !bytes.Equal(stored, want) {
			return storage.ErrDeviceSecret
		}
		return nil
	}
}

// checkIn stores a report for device id with secret hash sec.
func (e *env) checkIn(t *testing.T, account, id string, sec []byte, roots ...storage.RootReport) bool {
	t.Helper()
	created, err := e.s.CheckIn(context.Background(), storage.CheckIn{
		Device: storage.Device{ID: id, AccountID: account, Hostname: "host-" + id[:4], OS: "linux",
			OSVersion: "debian 13", AgentVersion: "1.0", SyncedAt: e.clock.Now().Add(-time.Second), Roots: roots},
		NewSecretHash: sec, Verify: secretCheck(sec),
	})
	require.NoError(t, err)
	return created
}

func testDeviceCheckIn(t *testing.T, e *env) {
	ctx := context.Background()
	account, first := e.account(t)
	rev0, err := e.s.Revision(ctx, account)
	require.NoError(t, err)
	id := uuid.NewString()
	sec := []byte("0123456789abcdef0123456789abcdef")

	unknown := rootIn(colonFP(Cert(api.TypeGatewayManaged).Fingerprint), storage.StateTrusted)
	assert.True(t, e.checkIn(t, account, id, sec, rootIn(colonFP(first.Fingerprint), storage.StateTrusted, storage.StateInstalled), unknown))
	d, err := e.b.Device(ctx, account, id)
	require.NoError(t, err)
	assert.Equal(t, "host-"+id[:4], d.Hostname)
	assert.Equal(t, e.clock.Now(), d.LastSeen)
	assert.Equal(t, e.clock.Now(), d.CreatedAt)
	assert.Equal(t, e.clock.Now().Add(-time.Second), d.SyncedAt)
	assert.Nil(t, d.SecretHash, "reads never return the secret hash")
	require.Len(t, d.Roots, 1, "an unknown fingerprint is not stored")
	assert.Equal(t, first.Fingerprint, d.Roots[0].Fingerprint, "kept under the account's spelling")
	assert.Len(t, d.Roots[0].Stores, 2)

	// A later check-in with the right secret updates; with a wrong one it
	// changes nothing.
	e.clock.Advance(time.Hour)
	assert.False(t, e.checkIn(t, account, id, sec))
	d, err = e.b.Device(ctx, account, id)
	require.NoError(t, err)
	assert.Empty(t, d.Roots)
	seen := d.LastSeen
	assert.Equal(t, e.clock.Now(), seen)
	e.clock.Advance(time.Hour)
	_, err = e.s.CheckIn(ctx, storage.CheckIn{
		Device:        storage.Device{ID: id, AccountID: account, Hostname: "evil", Roots: []storage.RootReport{rootIn(first.Fingerprint, storage.StateTrusted)}},
		NewSecretHash: []byte("other"), Verify: secretCheck([]byte("other")),
	})
	require.ErrorIs(t, err, storage.ErrDeviceSecret)
	d, err = e.b.Device(ctx, account, id)
	require.NoError(t, err)
	assert.Equal(t, "host-"+id[:4], d.Hostname)
	assert.Equal(t, seen, d.LastSeen)
	assert.Empty(t, d.Roots)

	// The same id in another account is another device.
	other, _ := e.account(t)
	assert.True(t, e.checkIn(t, other, id, []byte("x")))
	_, err = e.b.Device(ctx, other, uuid.NewString())
	require.ErrorIs(t, err, storage.ErrNotFound)

	// Check-ins never bump the certificate list's revision.
	rev, err := e.s.Revision(ctx, account)
	require.NoError(t, err)
	assert.Equal(t, rev0, rev)

	_, err = e.s.CheckIn(ctx, storage.CheckIn{Device: storage.Device{ID: id, AccountID: AccountID()}, Verify: secretCheck(nil)})
	require.ErrorIs(t, err, storage.ErrNotFound)
}

// testDeviceRegisterRefused: Register is asked once before a new device
// is stored, never for a known one, and its error stores nothing.
func testDeviceRegisterRefused(t *testing.T, e *env) {
	ctx := context.Background()
	account, first := e.account(t)
	id := uuid.NewString()
	sec := []byte("0123456789abcdef0123456789abcdef")
	refused := errors.New("over the registration limit")
	asked := 0
	in := storage.CheckIn{
		Device: storage.Device{ID: id, AccountID: account, Hostname: "h", OS: "linux",
			Roots: []storage.RootReport{rootIn(first.Fingerprint, storage.StateTrusted)}},
		NewSecretHash: sec, Verify: secretCheck(sec),
		Register: func() error { asked++; return refused },
	}
	_, err := e.s.CheckIn(ctx, in)
	require.ErrorIs(t, err, refused)
	assert.Equal(t, 1, asked)
	_, err = e.b.Device(ctx, account, id)
	require.ErrorIs(t, err, storage.ErrNotFound, "a refused registration stores nothing")
	rc, err := e.b.Readiness(ctx, storage.ReadinessQuery{AccountID: account, Fingerprint: first.Fingerprint,
		ActiveSince: e.clock.Now().Add(-time.Hour)})
	require.NoError(t, err)
	assert.Zero(t, rc.Active, "nor counts it")

	in.Register = func() error { asked++; return nil }
	created, err := e.s.CheckIn(ctx, in)
	require.NoError(t, err)
	assert.True(t, created)
	assert.Equal(t, 2, asked)

	in.Register = func() error { asked++; return refused }
	created, err = e.s.CheckIn(ctx, in)
	require.NoError(t, err, "a known device is not a registration")
	assert.False(t, created)
	assert.Equal(t, 2, asked)
}

func testReadiness(t *testing.T, e *env) {
	ctx := context.Background()
	account, first := e.account(t)
	fp := first.Fingerprint
	sec := []byte("s")
	ids := make([]string, 6)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	e.checkIn(t, account, ids[0], sec, rootIn(fp, storage.StateTrusted))
	e.checkIn(t, account, ids[1], sec, rootIn(fp, storage.StateTrusted, storage.StateInstalled))
	e.checkIn(t, account, ids[2], sec, rootIn(fp, storage.StateTrusted, storage.StateTrustPending))
	e.checkIn(t, account, ids[3], sec, rootIn(fp, storage.StateFailed, storage.StateTrustPending))
	e.checkIn(t, account, ids[4], sec)
	e.checkIn(t, account, ids[5], sec, rootIn(fp, storage.StateTrusted))
	e.clock.Advance(8 * storage.Day) // every device is now stale ...
	for _, id := range ids[:5] {     // ... except those that check in again
		e.checkIn(t, account, id, sec, mustDevice(t, e, account, id).Roots...)
	}

	_, rc, set, err := e.s.CertReadiness(ctx, account, first.ID, 0, 10)
	require.NoError(t, err)
	assert.Equal(t, storage.DefaultDeviceSettings(), set)
	assert.Equal(t, 5, rc.Active)
	assert.Equal(t, 2, rc.Ready)
	assert.Equal(t, 1, rc.Partial)
	assert.Equal(t, 2, rc.Missing)
	assert.Equal(t, 1, rc.StaleExcluded)
	assert.InDelta(t, 0.4, rc.Ratio(), 1e-9)
	require.Len(t, rc.NotReady, 3)
	assert.Equal(t, ids[2], rc.NotReady[0].DeviceID, "partial first")
	assert.Equal(t, []string{"nss:u1"}, rc.NotReady[0].Missing)
	got := map[string][]string{rc.NotReady[1].DeviceID: rc.NotReady[1].Missing, rc.NotReady[2].DeviceID: rc.NotReady[2].Missing}
	assert.Equal(t, map[string][]string{ids[3]: {"dir", "nss:u1"}, ids[4]: {"*"}}, got)

	// Paging.
	_, page, _, err := e.s.CertReadiness(ctx, account, first.ID, 2, 10)
	require.NoError(t, err)
	require.Len(t, page.NotReady, 1)
	_, page, _, err = e.s.CertReadiness(ctx, account, first.ID, 0, 0)
	require.NoError(t, err)
	assert.Empty(t, page.NotReady)
	assert.Equal(t, 5, page.Active)

	// A certificate created after every check-in: every active device is
	// missing it, and listed, though none has a row for it.
	e.clock.Advance(time.Hour)
	n := Cert(api.TypeGatewayManaged)
	_, err = e.s.Generate(ctx, account, n)
	require.NoError(t, err)
	_, rc, _, err = e.s.CertReadiness(ctx, account, n.ID, 0, 100)
	require.NoError(t, err)
	assert.Equal(t, storage.ReadinessCounts{Active: 5, Missing: 5, StaleExcluded: 1}, withoutList(rc))
	assert.Len(t, rc.NotReady, 5)
	for _, nr := range rc.NotReady {
		assert.Equal(t, []string{"*"}, nr.Missing)
	}
	// Once devices report it, their rows say so.
	e.clock.Advance(2 * storage.UnsummarizedMargin)
	e.checkIn(t, account, ids[0], sec, rootIn(fp, storage.StateTrusted), rootIn(n.Fingerprint, storage.StateTrusted))
	e.checkIn(t, account, ids[1], sec, rootIn(n.Fingerprint, storage.StateFailed))
	_, rc, _, err = e.s.CertReadiness(ctx, account, n.ID, 0, 100)
	require.NoError(t, err)
	assert.Equal(t, storage.ReadinessCounts{Active: 5, Ready: 1, Missing: 4, StaleExcluded: 1}, withoutList(rc))
	assert.Len(t, rc.NotReady, 4)

	// A shorter active window shrinks the active set.
	require.NoError(t, e.b.SetDeviceSettings(ctx, account, storage.DeviceSettings{MinReadiness: 0.5, DeviceActiveDays: 1}))
	e.clock.Advance(storage.Day - time.Minute)
	_, rc, set, err = e.s.CertReadiness(ctx, account, n.ID, 0, 100)
	require.NoError(t, err)
	assert.Equal(t, storage.DeviceSettings{MinReadiness: 0.5, DeviceActiveDays: 1}, set)
	assert.Equal(t, storage.ReadinessCounts{Active: 2, Ready: 1, Missing: 1, StaleExcluded: 4}, withoutList(rc))

	_, _, _, err = e.s.CertReadiness(ctx, account, uuid.NewString(), 0, 10)
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func withoutList(rc storage.ReadinessCounts) storage.ReadinessCounts {
	rc.NotReady = nil
	return rc
}

func mustDevice(t *testing.T, e *env, account, id string) storage.Device {
	t.Helper()
	d, err := e.b.Device(context.Background(), account, id)
	require.NoError(t, err)
	return d
}

func testCheckReady(t *testing.T, e *env) {
	ctx := context.Background()
	account, first := e.account(t)
	n := Cert(api.TypeGatewayManaged)
	_, err := e.s.Generate(ctx, account, n)
	require.NoError(t, err)
	// No devices: not guarded.
	require.NoError(t, e.s.CheckReady(ctx, account, n.ID))
	for i := 0; i < 20; i++ {
		roots := []storage.RootReport{rootIn(first.Fingerprint, storage.StateTrusted)}
		if i < 19 {
			roots = append(roots, rootIn(n.Fingerprint, storage.StateTrusted))
		}
		e.checkIn(t, account, uuid.NewString(), []byte("s"), roots...)
	}
	require.NoError(t, e.s.CheckReady(ctx, account, n.ID), "19 of 20 is exactly the default 95%%")
	require.NoError(t, e.b.SetDeviceSettings(ctx, account, storage.DeviceSettings{MinReadiness: 0.96, DeviceActiveDays: 7}))
	err = e.s.CheckReady(ctx, account, n.ID)
	var nre *storage.NotReadyError
	require.ErrorAs(t, err, &nre)
	require.ErrorIs(t, err, storage.ErrNotReady)
	assert.Equal(t, "ready on 19 of 20 active devices (95%), below the minimum of 96%", err.Error())
}

func testDeviceList(t *testing.T, e *env) {
	ctx := context.Background()
	account, _ := e.account(t)
	var ids []string
	for i := 0; i < 5; i++ {
		id := uuid.NewString()
		ids = append(ids, id)
		e.checkIn(t, account, id, []byte("s"))
		e.clock.Advance(2 * storage.Day)
	}
	since := e.clock.Now().Add(-7 * storage.Day)
	all, total, err := e.b.Devices(ctx, storage.DeviceQuery{AccountID: account, ActiveSince: since, Limit: 2})
	require.NoError(t, err)
	assert.Equal(t, 5, total)
	require.Len(t, all, 2)
	assert.Equal(t, ids[4], all[0].ID, "most recently seen first")
	assert.Equal(t, ids[3], all[1].ID)
	yes, no := true, false
	stale, total, err := e.b.Devices(ctx, storage.DeviceQuery{AccountID: account, ActiveSince: since, Stale: &yes, Limit: 10})
	require.NoError(t, err)
	assert.Equal(t, 2, total)
	assert.Equal(t, []string{ids[1], ids[0]}, deviceIDs(stale))
	active, total, err := e.b.Devices(ctx, storage.DeviceQuery{AccountID: account, ActiveSince: since, Stale: &no, Offset: 1, Limit: 10})
	require.NoError(t, err)
	assert.Equal(t, 3, total)
	assert.Equal(t, []string{ids[3], ids[2]}, deviceIDs(active))
	none, total, err := e.b.Devices(ctx, storage.DeviceQuery{AccountID: AccountID(), Limit: 10})
	require.NoError(t, err)
	assert.Zero(t, total)
	assert.NotNil(t, none)
	assert.Empty(t, none)

	// Delete.
	d, err := e.b.DeleteDevice(ctx, account, ids[0])
	require.NoError(t, err)
	assert.Equal(t, ids[0], d.ID)
	_, err = e.b.DeleteDevice(ctx, account, ids[0])
	require.ErrorIs(t, err, storage.ErrNotFound)
	_, err = e.b.DeleteDevice(ctx, AccountID(), ids[1])
	require.ErrorIs(t, err, storage.ErrNotFound)
	// A deleted device registers afresh (a new secret).
	assert.True(t, e.checkIn(t, account, ids[0], []byte("new")))

	// Purge after PurgeAfter of silence, in every account.
	e.clock.Advance(storage.PurgeAfter - 5*storage.Day)
	n, err := e.s.PurgeStaleDevices(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n, "ids[1] and ids[2] silent longer than 90 days")
	_, total, err = e.b.Devices(ctx, storage.DeviceQuery{AccountID: account, Limit: 10})
	require.NoError(t, err)
	assert.Equal(t, 3, total)
}

func deviceIDs(ds []storage.Device) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

func testDeviceSettings(t *testing.T, e *env) {
	ctx := context.Background()
	account, _ := e.account(t)
	s, err := e.b.DeviceSettings(ctx, account)
	require.NoError(t, err)
	assert.Equal(t, storage.DefaultDeviceSettings(), s)
	want := storage.DeviceSettings{MinReadiness: 0.8, DeviceActiveDays: 3}
	require.NoError(t, e.b.SetDeviceSettings(ctx, account, want))
	s, err = e.b.DeviceSettings(ctx, account)
	require.NoError(t, err)
	assert.Equal(t, want, s)
	_, err = e.b.DeviceSettings(ctx, AccountID())
	require.ErrorIs(t, err, storage.ErrNotFound)
	require.ErrorIs(t, e.b.SetDeviceSettings(ctx, AccountID(), want), storage.ErrNotFound)
}

// testConcurrentRegister races first check-ins of one id: exactly one
// registers, the others are refused as not knowing its secret.
func testConcurrentRegister(t *testing.T, e *env) {
	account, _ := e.account(t)
	id := uuid.NewString()
	errs := parallel(8, func(i int) error {
		sec := []byte{byte(i)}
		created, err := e.s.CheckIn(context.Background(), storage.CheckIn{
			Device:        storage.Device{ID: id, AccountID: account, Hostname: "h"},
			NewSecretHash: sec, Verify: secretCheck(sec),
		})
		if err == nil && !created {
			return errors.New("not created, not refused")
		}
		return err
	})
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			require.ErrorIs(t, err, storage.ErrDeviceSecret)
		}
	}
	assert.Equal(t, 1, ok)
}

// testReadinessCountsExact: the counts kept at check-in time agree with
// counting every device's stored report, through re-check-ins that move a
// device between hours and states, deletions, purges, and windows that
// start anywhere inside an hour.
func testReadinessCountsExact(t *testing.T, e *env) {
	ctx := context.Background()
	account, first := e.account(t)
	second := Cert(api.TypeGatewayManaged)
	_, err := e.s.Generate(ctx, account, second)
	require.NoError(t, err)
	e.clock.Advance(time.Hour)
	rng := mathrand.New(mathrand.NewPCG(1, 2))
	states := []string{storage.StateTrusted, storage.StateInstalled, storage.StateTrustPending, storage.StateFailed}
	ids := make([]string, 40)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	alive := map[string]bool{}
	check := func(step int) {
		t.Helper()
		for _, days := range []int{1, 2, 7} {
			require.NoError(t, e.b.SetDeviceSettings(ctx, account, storage.DeviceSettings{MinReadiness: 0.95, DeviceActiveDays: days}))
			since := e.clock.Now().Add(-time.Duration(days) * storage.Day)
			for _, c := range []storage.NewCertificate{first, second} {
				want := storage.ReadinessCounts{}
				for id := range alive {
					d := mustDevice(t, e, account, id)
					if d.LastSeen.Before(since) {
						want.StaleExcluded++
						continue
					}
					want.Active++
					switch storage.Summarize(d.Roots, []string{c.Fingerprint})[0].State {
					case storage.Ready:
						want.Ready++
					case storage.Partial:
						want.Partial++
					}
				}
				want.Missing = want.Active - want.Ready - want.Partial
				_, got, _, err := e.s.CertReadiness(ctx, account, c.ID, 0, 0)
				require.NoError(t, err)
				require.Equal(t, want, withoutList(got), "step %d, %d days, cert %s", step, days, c.ID[:8])
			}
		}
	}
	for step := 0; step < 60; step++ {
		id := ids[rng.IntN(len(ids))]
		switch op := rng.IntN(10); {
		case op < 8:
			var roots []storage.RootReport
			for _, c := range []storage.NewCertificate{first, second} {
				if rng.IntN(4) == 0 {
					continue
				}
				n := 1 + rng.IntN(3)
				ss := make([]string, n)
				for i := range ss {
					ss[i] = states[rng.IntN(len(states))]
				}
				roots = append(roots, rootIn(c.Fingerprint, ss...))
			}
			e.checkIn(t, account, id, []byte("s"), roots...)
			alive[id] = true
		case op < 9 && alive[id]:
			_, err := e.b.DeleteDevice(ctx, account, id)
			require.NoError(t, err)
			delete(alive, id)
		default:
			n, err := e.s.PurgeStaleDevices(ctx)
			require.NoError(t, err)
			for id := range alive {
				if _, err := e.b.Device(ctx, account, id); errors.Is(err, storage.ErrNotFound) {
					delete(alive, id)
					n--
				}
			}
			require.Zero(t, n, "purge reported what it deleted")
		}
		// Minutes to days, so windows start inside hours and devices
		// cross from active to stale to purged.
		e.clock.Advance(time.Duration(rng.IntN(int(40 * time.Hour))))
		if step%5 == 4 {
			check(step)
		}
	}
	e.clock.Advance(storage.PurgeAfter)
	_, err = e.s.PurgeStaleDevices(ctx)
	require.NoError(t, err)
	alive = map[string]bool{}
	check(-1)
}
