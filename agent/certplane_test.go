package agent

import (
	"bytes"
	"context"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/seal"
	"github.com/certagent/certagent/controlplane/storage"
	"github.com/certagent/certagent/controlplane/storage/sqlite"
	"github.com/certagent/certagent/trust"
)

// realPlane is a real certplane (SQLite, sealed keys, deployer, HTTP API)
// on an httptest server.
type realPlane struct {
	url, account, read string
	admin              *api.Client
}

func startRealPlane(t *testing.T) *realPlane {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "certplane.db"))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	sealer, err := seal.New(bytes.Repeat([]byte{7}, seal.KeySize))
	require.NoError(t, err)
	// A negative delay completes pending states at the deployer's next
	// look, which Kick asks for: the test never waits on a timer.
	svc, err := controlplane.New(db, controlplane.Options{Sealer: sealer, DeployDelay: -1, PollInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	go svc.Run(ctx)
	srv := httptest.NewServer(svc.Handler(ctx))
	t.Cleanup(srv.Close)
	acct, err := svc.CreateAccount(ctx, "acme")
	require.NoError(t, err)
	read, err := svc.CreateToken(ctx, acct.ID, storage.ScopeRead)
	require.NoError(t, err)
	write, err := svc.CreateToken(ctx, acct.ID, storage.ScopeWrite)
	require.NoError(t, err)
	p := &realPlane{url: srv.URL + controlplane.APIPrefix, account: acct.ID, read: read}
	p.admin, err = api.NewClient(p.url, acct.ID, write)
	require.NoError(t, err)
	return p
}

// waitStatus waits for the deployer to move id to want.
func (p *realPlane) waitStatus(t *testing.T, id string, want api.BindingStatus) {
	t.Helper()
	require.Eventually(t, func() bool {
		c, err := p.admin.Get(context.Background(), id)
		return err == nil && c.BindingStatus.Normalize() == want
	}, 10*time.Second, 5*time.Millisecond, "certificate %s never became %s", id, want)
}

func TestAgainstRealCertplane(t *testing.T) {
	p := startRealPlane(t)
	ctx := context.Background()
	r := newRig(t)
	r.cfg.ControlPlaneURL, r.cfg.AccountID, r.cfg.APIToken = p.url, p.account, p.read
	a := r.agent()
	fpOf := func(id string) trust.Fingerprint {
		c, err := p.admin.Get(ctx, id)
		require.NoError(t, err)
		tc, err := trust.ParseOnePEM([]byte(c.Certificate))
		require.NoError(t, err)
		return tc.FP
	}
	holds := func(fp trust.Fingerprint) int {
		n := 0
		for _, s := range []string{"one", "multi"} {
			inv, err := r.stores[s].List(ctx)
			require.NoError(t, err)
			for _, e := range inv.Entries {
				if e.FP == fp {
					n++
				}
			}
		}
		return n
	}

	// A new account starts with one available, in-use root.
	rep := r.sync(a)
	require.Len(t, rep.Desired, 1)
	first := rep.Desired[0]
	assert.True(t, first.InUse)
	assert.Equal(t, 3, holds(first.FP), "installed into every target")

	// Nothing changed: the ETag makes it a 304.
	rep = r.sync(a)
	assert.Equal(t, "not_modified", rep.Fetch.Status)

	// A generated root stays inactive until activated: not installed.
	second, err := p.admin.Generate(ctx, 365)
	require.NoError(t, err)
	rep = r.sync(a)
	assert.Equal(t, 0, holds(fpOf(second.ID)), "inactive is not installed")
	assert.Len(t, rep.Withheld, 1)

	// Activated and deployed: installed.
	_, err = p.admin.Activate(ctx, second.ID)
	require.NoError(t, err)
	p.waitStatus(t, second.ID, api.StatusAvailable)
	r.sync(a)
	assert.Equal(t, 3, holds(fpOf(second.ID)))

	// Deactivated: removed at once (pending_deletion is not deployed).
	_, err = p.admin.Deactivate(ctx, second.ID)
	require.NoError(t, err)
	r.sync(a)
	assert.Equal(t, 0, holds(fpOf(second.ID)), "removed after deactivate")
	assert.Equal(t, 3, holds(first.FP), "the other root stays")

	// A third root, then deleted outright (deactivate, wait, delete).
	third, err := p.admin.Generate(ctx, 365)
	require.NoError(t, err)
	_, err = p.admin.Activate(ctx, third.ID)
	require.NoError(t, err)
	p.waitStatus(t, third.ID, api.StatusAvailable)
	r.sync(a)
	thirdFP := fpOf(third.ID)
	require.Equal(t, 3, holds(thirdFP))
	// Behind the agent's back it goes all the way to deleted.
	_, err = p.admin.Deactivate(ctx, third.ID)
	require.NoError(t, err)
	p.waitStatus(t, third.ID, api.StatusInactive)
	_, err = p.admin.Delete(ctx, third.ID)
	require.NoError(t, err)
	rep = r.sync(a)
	assert.Equal(t, 0, holds(thirdFP), "removed after delete")
	for _, res := range rep.Results {
		if res.Op == trust.OpRemove {
			assert.Equal(t, trust.StatusOK, res.Status)
		}
	}

	// A wrong token: 401, nothing removed.
	r.cfg.APIToken = "cpt_0000000000000000.wrong"
	b := r.agent()
	rep, err = b.SyncOnce(ctx, false)
	require.NoError(t, err)
	assert.Equal(t, "auth_error", rep.Fetch.Status)
	assert.Equal(t, 3, holds(first.FP))

	// The ledger holds exactly the first root, in every target.
	l := r.ledger()
	require.Len(t, l.Entries, 3)
	for _, e := range l.Entries {
		assert.Equal(t, first.FP, e.FP)
		assert.Equal(t, StateInstalled, e.State)
	}
}
