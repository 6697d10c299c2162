package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/seal"
	"github.com/certagent/certagent/controlplane/storage"
	"github.com/certagent/certagent/controlplane/storage/sqlite"
	"github.com/certagent/certagent/controlplane/storage/storagetest"
)

// TestRotationReadinessEndToEnd is the closed loop over real HTTP: a real
// certplane, real agents with their own state dirs and dir: stores,
// checking in with a device token; readiness counts them, and the guard
// refuses to turn on a root they do not trust yet.
func TestRotationReadinessEndToEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	clock := storagetest.NewClock(time.Now().UTC())
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "certplane.db"))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	sealer, err := seal.New(bytes.Repeat([]byte{7}, seal.KeySize))
	require.NoError(t, err)
	svc, err := controlplane.New(db, controlplane.Options{Sealer: sealer, Now: clock.Now, DeployDelay: -1, PollInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	go svc.Run(ctx)
	srv := httptest.NewServer(svc.Handler(ctx))
	t.Cleanup(srv.Close)
	url := srv.URL + controlplane.APIPrefix
	acct, err := svc.CreateAccount(ctx, "acme")
	require.NoError(t, err)
	devTok, err := svc.CreateToken(ctx, acct.ID, storage.ScopeDevice)
	require.NoError(t, err)
	readTok, err := svc.CreateToken(ctx, acct.ID, storage.ScopeRead)
	require.NoError(t, err)
	writeTok, err := svc.CreateToken(ctx, acct.ID, storage.ScopeWrite)
	require.NoError(t, err)
	admin, err := api.NewClient(url, acct.ID, writeTok)
	require.NoError(t, err)

	type device struct {
		a   *agent.Agent
		dir string // the dir: store
		cfg *agent.Config
	}
	newDevice := func(name, token string, stateDir string) *device {
		if stateDir == "" {
			stateDir = t.TempDir()
		}
		d := &device{dir: filepath.Join(t.TempDir(), "anchors")}
		d.cfg = &agent.Config{ControlPlaneURL: url, AccountID: acct.ID, APIToken: token, PollInterval: time.Minute,
			Stores: []string{"dir:" + d.dir}, RemoveRetired: true, StateDir: stateDir, LogLevel: "info"}
		d.a, err = agent.New(d.cfg, agent.Deps{Now: clock.Now, Hostname: func() (string, error) { return name, nil }})
		require.NoError(t, err)
		return d
	}
	sync := func(d *device) {
		t.Helper()
		rep, err := d.a.SyncOnce(ctx, false)
		require.NoError(t, err)
		require.False(t, rep.Failed(), "a check-in never fails a sync: %+v", rep.Fetch)
		d.a.WaitCheckIn()
	}
	readiness := func(certID string) api.Readiness {
		t.Helper()
		rd, err := admin.Readiness(ctx, certID)
		require.NoError(t, err)
		return *rd
	}
	use := func(certID, query string) (int, api.Envelope) {
		t.Helper()
		body := fmt.Sprintf(`{"settings":{"certificate":{"id":%q}}}`, certID)
		req, err := http.NewRequest(http.MethodPatch, url+"/accounts/"+acct.ID+"/gateway/configuration"+query, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+writeTok)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var env api.Envelope
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&env))
		return resp.StatusCode, env
	}
	waitAvailable := func(id string) {
		t.Helper()
		require.Eventually(t, func() bool {
			c, err := admin.Get(ctx, id)
			return err == nil && c.BindingStatus == api.StatusAvailable
		}, 10*time.Second, 5*time.Millisecond)
	}

	// Three devices check in: the root in use is ready on 3 of 3.
	devs := []*device{newDevice("laptop-1", devTok, ""), newDevice("laptop-2", devTok, ""), newDevice("laptop-3", devTok, "")}
	for _, d := range devs {
		sync(d)
		st := d.a.Snapshot().CheckIn
		require.Equal(t, agent.CheckInAccepted, st.Status, "%+v", st)
		require.Len(t, st.DeviceID, 36)
		for _, f := range []string{"device_id", "device_secret"} {
			fi, err := os.Stat(filepath.Join(d.cfg.StateDir, f))
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), f)
		}
	}
	rd := readiness(acct.InUseID)
	assert.Equal(t, 3, rd.ActiveDevices)
	assert.Equal(t, 3, rd.Ready)
	assert.Equal(t, 1.0, rd.Ratio)

	// A new root, generated and activated: before the agents sync it is
	// ready on none, and turning it on is refused.
	next, err := admin.Generate(ctx, 365)
	require.NoError(t, err)
	_, err = admin.Activate(ctx, next.ID)
	require.NoError(t, err)
	waitAvailable(next.ID)
	rd = readiness(next.ID)
	assert.Equal(t, 3, rd.ActiveDevices)
	assert.Equal(t, 0, rd.Ready)
	assert.Len(t, rd.NotReady, 3)
	status, env := use(next.ID, "")
	require.Equal(t, http.StatusConflict, status)
	assert.Equal(t, controlplane.CodeNotReady, env.Errors[0].Code)
	assert.Contains(t, env.Errors[0].Message, "ready on 0 of 3 active devices (0%), below the minimum of 95%")
	_, err = admin.SetInUse(ctx, next.ID)
	assert.Equal(t, http.StatusConflict, api.StatusCode(err))

	// The agents sync (installing it) and check in again: 3 of 3, and the
	// switch goes through.
	for _, d := range devs {
		sync(d)
		pems, err := filepath.Glob(filepath.Join(d.dir, "*"))
		require.NoError(t, err)
		assert.Len(t, pems, 2, "both roots in %s", d.dir)
	}
	rd = readiness(next.ID)
	assert.Equal(t, 3, rd.Ready, "%+v", rd)
	assert.Empty(t, rd.NotReady)
	status, env = use(next.ID, "")
	require.Equal(t, http.StatusOK, status, "%+v", env.Errors)

	// ?force=true overrides the guard for a root nobody has yet.
	third, err := admin.Generate(ctx, 365)
	require.NoError(t, err)
	_, err = admin.Activate(ctx, third.ID)
	require.NoError(t, err)
	waitAvailable(third.ID)
	status, _ = use(third.ID, "")
	require.Equal(t, http.StatusConflict, status)
	status, env = use(third.ID, "?force=true")
	require.Equal(t, http.StatusOK, status, "%+v", env.Errors)

	// A device silent longer than device_active_days is not counted.
	days := 2
	_, err = svc.SetDeviceSettings(ctx, acct.ID, api.DeviceSettingsPatch{DeviceActiveDays: &days})
	require.NoError(t, err)
	clock.Advance(3 * 24 * time.Hour)
	sync(devs[0])
	sync(devs[1]) // laptop-3 stays silent
	rd = readiness(third.ID)
	assert.Equal(t, 2, rd.ActiveDevices)
	assert.Equal(t, 1, rd.StaleExcluded)
	assert.Equal(t, 2, rd.Ready, "the daily check-in carried the third root: %+v", rd)

	// A device presenting another device's id without its secret gets 403
	// and changes nothing: first a bare request, then a real agent whose
	// state dir holds a copied id (a cloned disk image).
	victim := devs[0].a.Snapshot().CheckIn.DeviceID
	before, err := svc.Device(ctx, acct.ID, victim)
	require.NoError(t, err)
	intruder, err := api.NewClient(url, acct.ID, devTok)
	require.NoError(t, err)
	_, err = intruder.CheckIn(ctx, victim, "", api.CheckIn{Hostname: "evil", OS: "linux"})
	assert.Equal(t, http.StatusForbidden, api.StatusCode(err))
	_, err = intruder.CheckIn(ctx, victim, strings.Repeat("A", 43), api.CheckIn{Hostname: "evil", OS: "linux"})
	assert.Equal(t, http.StatusForbidden, api.StatusCode(err))
	clone := t.TempDir()
	idBytes, err := os.ReadFile(filepath.Join(devs[0].cfg.StateDir, "device_id"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(clone, "device_id"), idBytes, 0o600))
	cloned := newDevice("clone", devTok, clone)
	sync(cloned)
	after, err := svc.Device(ctx, acct.ID, victim)
	require.NoError(t, err)
	assert.Equal(t, before, after, "the victim's record is unchanged")
	own := cloned.a.Snapshot().CheckIn
	assert.NotEqual(t, victim, own.DeviceID, "the clone made an id of its own")
	assert.Contains(t, own.Error, "made a new one")
	clock.Advance(time.Second)
	sync(cloned)
	assert.Equal(t, agent.CheckInAccepted, cloned.a.Snapshot().CheckIn.Status)
	_, err = svc.Device(ctx, acct.ID, own.DeviceID)
	require.NoError(t, err, "the clone registered as itself")

	// An agent with a read token syncs fine; its check-in is refused and
	// shows as such.
	reader := newDevice("reader", readTok, "")
	sync(reader)
	st := reader.a.Snapshot().CheckIn
	assert.Equal(t, agent.CheckInRefused, st.Status)
	assert.Contains(t, st.Error, "device token")
}
