package postgres_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/seal"
	"github.com/certagent/certagent/controlplane/storage"
	"github.com/certagent/certagent/controlplane/storage/postgres"
	"github.com/certagent/certagent/controlplane/storage/postgres/pgtest"
)

// replica is one certplane instance: a service on its own pool, its HTTP
// API, and its change listener.
type replica struct {
	svc *controlplane.Service
	srv *httptest.Server
}

// startReplicas starts n certplane instances on one database. Their
// long-poll safety checks run only hourly, so within a test only
// LISTEN/NOTIFY can carry a change from one replica to another.
func startReplicas(t *testing.T, n int) []replica {
	t.Helper()
	dsn := pgtest.DSN(t)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	sealer, err := seal.New(key)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	out := make([]replica, n)
	for i := range n {
		b, err := postgres.Open(t.Context(), dsn)
		require.NoError(t, err)
		t.Cleanup(func() { _ = b.Close() })
		svc, err := controlplane.New(b, controlplane.Options{Sealer: sealer, DeployDelay: -1, PollInterval: time.Hour})
		require.NoError(t, err)
		wg.Go(func() { _ = svc.Follow(ctx) })
		// Polling a condition, not timing: the feed has no "connected"
		// event; no change may be made before it listens.
		for !svc.Live() {
			time.Sleep(time.Millisecond)
		}
		// Served as `certplane serve` serves: held long-polls park
		// without a goroutine.
		srv := httptest.NewUnstartedServer(svc.Handler(ctx))
		srv.Listener = controlplane.Listener(srv.Listener, nil)
		srv.Config.ConnContext = controlplane.ConnContext
		srv.Start()
		t.Cleanup(srv.Close)
		out[i] = replica{svc: svc, srv: srv}
	}
	return out
}

// crossReplicaReader starts two replicas and an account with a read token
// whose client (reader, for long-polls) talks to replica B and a write
// token whose client (admin) talks to replica A.
func crossReplicaReader(t *testing.T) (reps []replica, acct storage.Account, readTok string, reader, admin *api.Client) {
	t.Helper()
	reps = startReplicas(t, 2)
	acct, err := reps[0].svc.CreateAccount(t.Context(), "acme")
	require.NoError(t, err)
	readTok, err = reps[0].svc.CreateToken(t.Context(), acct.ID, "read")
	require.NoError(t, err)
	writeTok, err := reps[0].svc.CreateToken(t.Context(), acct.ID, "write")
	require.NoError(t, err)
	reader, err = api.NewClient(reps[1].srv.URL+"/client/v4", acct.ID, readTok, api.WithHTTPClient(&http.Client{Timeout: time.Minute}))
	require.NoError(t, err)
	admin, err = api.NewClient(reps[0].srv.URL+"/client/v4", acct.ID, writeTok)
	require.NoError(t, err)
	return reps, acct, readTok, reader, admin
}

// A long-poll held on replica B is answered when an admin activates a
// certificate through replica A (its deployer makes it available), and
// only then: generating one (inactive) changes nothing an agent acts on.
func TestLongPollWokenAcrossReplicas(t *testing.T) {
	reps, acct, _, reader, admin := crossReplicaReader(t)
	first, err := reader.ListIfChanged(t.Context(), "", 0)
	require.NoError(t, err)
	require.Len(t, first.Certificates, 1)
	require.NotEmpty(t, first.ETag)

	type answer struct {
		res *api.ListResult
		err error
	}
	got := make(chan answer, 1)
	go func() {
		res, err := reader.ListIfChanged(t.Context(), first.ETag, 50*time.Second)
		got <- answer{res, err}
	}()
	// The generation must come after the request is held, or it would be
	// answered at once and prove nothing.
	// Polling a condition (not a sleep for timing): the hub has no "a
	// waiter arrived" event.
	for reps[1].svc.Hub().Waiting(acct.ID) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	gen, err := admin.Generate(t.Context(), 0)
	require.NoError(t, err)
	// The generation reached replica B (its memory holds the new revision)
	// and did not answer the held request.
	for {
		r, err := reader.ListIfChanged(t.Context(), first.ETag, 0)
		if !errors.Is(err, api.ErrNotModified) {
			require.NoError(t, err)
			require.NotEqual(t, first.ETag, r.ETag)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case a := <-got:
		t.Fatalf("a generation (inactive) answered the long-poll: %+v %v", a.res, a.err)
	default:
	}
	_, err = admin.Activate(t.Context(), gen.ID)
	require.NoError(t, err)
	_, err = reps[0].svc.Rules().CompleteDue(t.Context())
	require.NoError(t, err)

	a := <-got
	require.NoError(t, a.err, "the held request should end with the new list, not a 304 at the timeout")
	assert.NotEqual(t, first.ETag, a.res.ETag)
	require.Len(t, a.res.Certificates, 2)
	assert.Equal(t, gen.ID, a.res.Certificates[1].ID)
	assert.Equal(t, api.StatusAvailable, a.res.Certificates[1].BindingStatus,
		"answered at the change an agent acts on, not at the generation or the activation")
}

// Several replicas' deployers race for the same pending transitions; each
// certificate becomes available exactly once, through exactly one of them.
func TestDeployersAcrossReplicasCompleteEachStepOnce(t *testing.T) {
	reps := startReplicas(t, 3)
	acct, err := reps[0].svc.CreateAccount(t.Context(), "acme")
	require.NoError(t, err)
	var ids []string
	for range 3 {
		c, err := reps[0].svc.Generate(t.Context(), acct.ID, controlplane.GenerateRequest{})
		require.NoError(t, err)
		_, err = reps[0].svc.Rules().Activate(t.Context(), acct.ID, c.ID)
		require.NoError(t, err)
		ids = append(ids, c.ID)
	}
	before, err := reps[0].svc.Rules().Revision(t.Context(), acct.ID)
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for _, r := range reps {
		for range 4 {
			wg.Go(func() {
				n, err := r.svc.Rules().CompleteDue(t.Context())
				assert.NoError(t, err)
				mu.Lock()
				total += n
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	assert.Equal(t, len(ids), total, "steps completed across 12 deployers")
	after, err := reps[2].svc.Rules().Revision(t.Context(), acct.ID)
	require.NoError(t, err)
	assert.Equal(t, before+int64(len(ids)), after, "one revision per completed step")
	for _, id := range ids {
		c, err := reps[1].svc.Rules().Get(t.Context(), acct.ID, id)
		require.NoError(t, err)
		assert.Equal(t, api.StatusAvailable, c.Status)
	}
}

// A token verified on replica B (and kept in B's memory) is refused by B
// from the very next request after replica A's revocation returns; and a
// change made through A reaches B's in-memory revision.
func TestRevocationHoldsOnEveryReplica(t *testing.T) {
	reps := startReplicas(t, 2)
	acct, err := reps[0].svc.CreateAccount(t.Context(), "acme")
	require.NoError(t, err)
	get := func(r replica, tok, inm string) int {
		req, err := http.NewRequestWithContext(t.Context(), "GET", r.srv.URL+"/client/v4/accounts/"+acct.ID+"/gateway/certificates", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tok)
		if inm != "" {
			req.Header.Set("If-None-Match", inm)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	writeTok, err := reps[0].svc.CreateToken(t.Context(), acct.ID, "write")
	require.NoError(t, err)
	admin, err := api.NewClient(reps[0].srv.URL+"/client/v4", acct.ID, writeTok)
	require.NoError(t, err)
	first, err := admin.ListIfChanged(t.Context(), "", 0)
	require.NoError(t, err)

	for i := range 10 {
		tok, err := reps[0].svc.CreateToken(t.Context(), acct.ID, "read")
		require.NoError(t, err)
		for range 3 { // the first verifies from the database, the rest from memory
			require.Equal(t, http.StatusNotModified, get(reps[1], tok, first.ETag), "round %d", i)
		}
		id, err := controlplane.TokenID(tok)
		require.NoError(t, err)
		_, err = reps[0].svc.RevokeToken(t.Context(), acct.ID, id)
		require.NoError(t, err)
		require.Equal(t, http.StatusUnauthorized, get(reps[1], tok, first.ETag), "round %d: replica B still accepts a token A revoked", i)
		require.Equal(t, http.StatusUnauthorized, get(reps[0], tok, first.ETag), "round %d", i)
	}

	reader, err := reps[0].svc.CreateToken(t.Context(), acct.ID, "read")
	require.NoError(t, err)
	require.Equal(t, http.StatusNotModified, get(reps[1], reader, first.ETag))
	_, err = admin.Generate(t.Context(), 0)
	require.NoError(t, err)
	// The NOTIFY reaches B within milliseconds; poll for it (a condition,
	// not a timing assumption).
	deadline := time.Now().Add(10 * time.Second)
	for get(reps[1], reader, first.ETag) == http.StatusNotModified {
		require.True(t, time.Now().Before(deadline), "replica B never learned of A's change")
		time.Sleep(2 * time.Millisecond)
	}
}

// TestHeldRequestRevokedOnAnotherReplica: a long-poll held (parked) on
// replica B whose token replica A revokes gets no list when A then turns a
// new root on: B answers it 401, as it answers the token's next request.
func TestHeldRequestRevokedOnAnotherReplica(t *testing.T) {
	reps, acct, readTok, reader, admin := crossReplicaReader(t)
	first, err := reader.ListIfChanged(t.Context(), "", 0)
	require.NoError(t, err)

	got := make(chan error, 1)
	go func() {
		_, err := reader.ListIfChanged(t.Context(), first.ETag, 50*time.Second)
		got <- err
	}()
	for reps[1].svc.Hub().Waiting(acct.ID) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	id, err := controlplane.TokenID(readTok)
	require.NoError(t, err)
	_, err = reps[0].svc.RevokeToken(t.Context(), acct.ID, id)
	require.NoError(t, err)
	gen, err := admin.Generate(t.Context(), 0)
	require.NoError(t, err)
	_, err = admin.Activate(t.Context(), gen.ID)
	require.NoError(t, err)
	_, err = reps[0].svc.Rules().CompleteDue(t.Context())
	require.NoError(t, err)

	err = <-got
	var ae *api.Error
	require.ErrorAs(t, err, &ae, "the held request should be refused, not answered with the list")
	assert.Equal(t, http.StatusUnauthorized, ae.StatusCode)
}
