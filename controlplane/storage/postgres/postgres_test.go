package postgres_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane/storage"
	"github.com/certagent/certagent/controlplane/storage/postgres"
	"github.com/certagent/certagent/controlplane/storage/postgres/pgtest"
	"github.com/certagent/certagent/controlplane/storage/storagetest"
)

const acct = "0123456789abcdef0123456789abcdef"

// clock is a test clock shared by every replica, as a real one would be.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// newCert returns a certificate to store. The storage layer does not parse
// DER, so random bytes with their real SHA-256 are enough here.
func newCert(t testing.TB, typ string) storage.NewCertificate {
	t.Helper()
	der := make([]byte, 64)
	_, _ = rand.Read(der)
	sum := sha256.Sum256(der)
	fp := make([]string, len(sum))
	for i, b := range sum {
		fp[i] = fmt.Sprintf("%02X", b)
	}
	return storage.NewCertificate{
		ID: uuid.NewString(), Type: typ, DER: der, Fingerprint: strings.Join(fp, ":"),
		IssuerOrg: "Test", IssuerRaw: "CN=Test", ExpiresOn: time.Now().Add(24 * time.Hour).UTC(),
		SealedKey: []byte("sealed"),
	}
}

// replicas opens n backends on one fresh schema, each with its own pool, as
// n certplane processes would, and returns a Store per replica.
func replicas(t *testing.T, n int, clk *clock) ([]*storage.Rules, []*postgres.Backend) {
	t.Helper()
	dsn := pgtest.DSN(t)
	stores := make([]*storage.Rules, n)
	backends := make([]*postgres.Backend, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			// Every replica migrates at start, concurrently.
			backends[i], errs[i] = postgres.Open(t.Context(), dsn+"&pool_max_conns=8")
		})
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i], "replica %d", i)
		b := backends[i]
		t.Cleanup(func() { _ = b.Close() })
		stores[i] = storage.New(b, storage.Options{Now: clk.Now, DeployDelay: 2 * time.Second})
	}
	return stores, backends
}

func TestOpenRejectsBadDSNWithoutLeakingPassword(t *testing.T) {
	_, err := postgres.Open(t.Context(), "postgres://u:s3cr3tpw@127.0.0.1:1/x?connect_timeout=bogus")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cr3tpw")
}

func TestMigrateIsIdempotentAndVersioned(t *testing.T) {
	dsn := pgtest.DSN(t)
	for range 2 {
		b, err := postgres.Open(t.Context(), dsn)
		require.NoError(t, err)
		v, err := postgres.SchemaVersion(t.Context(), b.Pool())
		require.NoError(t, err)
		assert.Equal(t, postgres.Latest(), v)
		require.NoError(t, b.Close())
	}
}

func TestMigrateRefusesNewerSchema(t *testing.T) {
	dsn := pgtest.DSN(t)
	b, err := postgres.Open(t.Context(), dsn)
	require.NoError(t, err)
	_, err = b.Pool().Exec(t.Context(), `insert into schema_migrations (version) values (999)`)
	require.NoError(t, err)
	require.NoError(t, b.Close())
	_, err = postgres.Open(t.Context(), dsn)
	require.ErrorIs(t, err, postgres.ErrSchemaTooNew)
}

func TestTimesRoundTripExactly(t *testing.T) {
	clk := newClock()
	s, _ := replicas(t, 1, clk)
	n := newCert(t, api.TypeGatewayManaged)
	_, err := s[0].CreateAccount(t.Context(), acct, "acme", n)
	require.NoError(t, err)
	got, err := s[0].Get(t.Context(), acct, n.ID)
	require.NoError(t, err)
	assert.True(t, got.CreatedAt.Equal(clk.Now()), "got %v, want %v", got.CreatedAt, clk.Now())
	assert.True(t, got.UploadedOn.IsZero())
	assert.True(t, got.InUse)
	assert.Equal(t, n.ExpiresOn, got.ExpiresOn)
}

// Three replicas race to generate 12 certificates: exactly 3 succeed per
// rolling 24 hours, whichever replica each request lands on.
func TestCrossReplicaDailyGenerationLimit(t *testing.T) {
	clk := newClock()
	stores, _ := replicas(t, 3, clk)
	_, err := stores[0].CreateAccount(t.Context(), acct, "acme", newCert(t, api.TypeGatewayManaged))
	require.NoError(t, err)

	for day := range 2 {
		var ok, limited atomic.Int64
		var wg sync.WaitGroup
		for i := range 12 {
			wg.Go(func() {
				_, err := stores[i%3].Generate(t.Context(), acct, newCert(t, api.TypeGatewayManaged))
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, storage.ErrDailyLimit):
					limited.Add(1)
				default:
					t.Errorf("generate: %v", err)
				}
			})
		}
		wg.Wait()
		assert.Equal(t, int64(3), ok.Load(), "day %d: successful generations", day)
		assert.Equal(t, int64(9), limited.Load(), "day %d: refused generations", day)
		clk.Advance(24*time.Hour + time.Second)
	}
	certs, _, err := stores[1].List(t.Context(), acct)
	require.NoError(t, err)
	assert.Equal(t, 1+6, len(certs), "certificates after two days")
}

// prepare creates the account and n more inactive certificates, moving the
// clock past the daily limit as needed.
func prepare(t *testing.T, s *storage.Rules, clk *clock, n int) []string {
	t.Helper()
	_, err := s.CreateAccount(t.Context(), acct, "acme", newCert(t, api.TypeGatewayManaged))
	require.NoError(t, err)
	var ids []string
	for i := range n {
		if i > 0 && i%storage.GenerationsPerDay == 0 {
			clk.Advance(storage.GenerationWindow + time.Second)
		}
		c, err := s.Generate(t.Context(), acct, newCert(t, api.TypeGatewayManaged))
		require.NoError(t, err)
		ids = append(ids, c.ID)
	}
	return ids
}

func count(certs []storage.Certificate, st ...api.BindingStatus) int {
	n := 0
	for _, c := range certs {
		for _, s := range st {
			if c.Status == s {
				n++
			}
		}
	}
	return n
}

// Three replicas each try to activate all 12 new certificates at once:
// with the bootstrap one already available, exactly 9 get through and the
// account never holds more than 10 available or pending. Then every
// replica's deployer runs at once and each transition is completed by
// exactly one of them.
func TestCrossReplicaAvailableLimitAndSingleDeployer(t *testing.T) {
	clk := newClock()
	stores, backends := replicas(t, 3, clk)
	ids := prepare(t, stores[0], clk, 12)
	rev0, err := stores[0].Revision(t.Context(), acct)
	require.NoError(t, err)

	var wg sync.WaitGroup
	var activated, limited atomic.Int64
	for r := range 3 {
		for _, id := range ids {
			wg.Go(func() {
				before, err := stores[r].Get(t.Context(), acct, id)
				require.NoError(t, err)
				c, err := stores[r].Activate(t.Context(), acct, id)
				switch {
				case err == nil:
					if before.Status == api.StatusInactive && c.Status == api.StatusPendingDeployment {
						activated.Add(1)
					}
				case errors.Is(err, storage.ErrAvailableLimit):
					limited.Add(1)
				default:
					t.Errorf("activate: %v", err)
				}
			})
		}
	}
	wg.Wait()
	certs, rev1, err := stores[2].List(t.Context(), acct)
	require.NoError(t, err)
	assert.Equal(t, storage.MaxAvailable, count(certs, api.StatusAvailable, api.StatusPendingDeployment))
	assert.Equal(t, 9, count(certs, api.StatusPendingDeployment))
	assert.GreaterOrEqual(t, limited.Load(), int64(3), "the 3 certificates left over are refused on every replica")
	assert.Equal(t, rev0+9, rev1, "one revision per state change, none for refusals or no-ops")

	// Deployers: nothing is due before the delay, then all of it once.
	n, err := stores[0].CompleteDue(t.Context())
	require.NoError(t, err)
	assert.Equal(t, 0, n)
	clk.Advance(3 * time.Second)
	var done atomic.Int64
	for r := range 3 {
		for range 3 {
			wg.Go(func() {
				n, err := stores[r].CompleteDue(t.Context())
				assert.NoError(t, err)
				done.Add(int64(n))
			})
		}
	}
	wg.Wait()
	assert.Equal(t, int64(9), done.Load(), "each of 9 steps run by exactly one of 9 deployers")
	certs, rev2, err := stores[1].List(t.Context(), acct)
	require.NoError(t, err)
	assert.Equal(t, 10, count(certs, api.StatusAvailable))
	assert.Equal(t, rev1+9, rev2)
	_, ok, err := backends[0].NextDue(t.Context())
	require.NoError(t, err)
	assert.False(t, ok, "nothing left pending")
}

// Replicas race to turn certificates on while others deactivate the same
// ones: at the end exactly one certificate is in use and it is available.
func TestCrossReplicaInUseAgainstDeactivate(t *testing.T) {
	clk := newClock()
	stores, _ := replicas(t, 3, clk)
	ids := prepare(t, stores[0], clk, 5)
	for _, id := range ids {
		_, err := stores[0].Activate(t.Context(), acct, id)
		require.NoError(t, err)
	}
	clk.Advance(3 * time.Second)
	_, err := stores[0].CompleteDue(t.Context())
	require.NoError(t, err)

	for round := range 5 {
		var wg sync.WaitGroup
		for r := range 3 {
			for i, id := range ids {
				wg.Go(func() {
					var err error
					if (i+r+round)%2 == 0 {
						idc := id
						_, err = stores[r].Configure(t.Context(), acct, storage.ConfigChange{CertificateID: &idc})
						if errors.Is(err, storage.ErrUseNotAvailable) {
							err = nil
						}
					} else {
						_, err = stores[r].Deactivate(t.Context(), acct, id)
						if errors.Is(err, storage.ErrDeactivateInUse) {
							err = nil
						}
					}
					assert.NoError(t, err)
				})
			}
		}
		wg.Wait()
		a, certs, err := stores[round%3].Backend().Snapshot(t.Context(), acct)
		require.NoError(t, err)
		inUse := 0
		for _, c := range certs {
			if c.InUse {
				inUse++
				assert.Equal(t, api.StatusAvailable, c.Status, "round %d: the certificate in use must be available", round)
				assert.Equal(t, a.InUseID, c.ID)
			}
		}
		assert.Equal(t, 1, inUse, "round %d: certificates in use", round)
		// Put everything back to available for the next round.
		clk.Advance(3 * time.Second)
		_, err = stores[0].CompleteDue(t.Context())
		require.NoError(t, err)
		for _, id := range ids {
			if _, err := stores[0].Activate(t.Context(), acct, id); err != nil {
				require.NoError(t, err)
			}
		}
		clk.Advance(3 * time.Second)
		_, err = stores[0].CompleteDue(t.Context())
		require.NoError(t, err)
	}
}

// Custom uploads from three replicas at once stop at 5 per account.
func TestCrossReplicaCustomLimit(t *testing.T) {
	clk := newClock()
	stores, _ := replicas(t, 3, clk)
	_, err := stores[0].CreateAccount(t.Context(), acct, "acme", newCert(t, api.TypeGatewayManaged))
	require.NoError(t, err)
	var ok atomic.Int64
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			_, err := stores[i%3].Upload(t.Context(), acct, newCert(t, api.TypeCustom))
			if err == nil {
				ok.Add(1)
			} else if !errors.Is(err, storage.ErrCustomLimit) {
				t.Errorf("upload: %v", err)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(storage.MaxCustom), ok.Load())
}

// A change committed through one replica reaches another replica's
// listener; a rolled-back one never does.
func TestListenerSeesOtherReplicasChanges(t *testing.T) {
	clk := newClock()
	stores, backends := replicas(t, 2, clk)
	_, err := stores[0].CreateAccount(t.Context(), acct, "acme", newCert(t, api.TypeGatewayManaged))
	require.NoError(t, err)

	changes := make(chan postgres.Change, 16)
	ready := make(chan struct{}, 1)
	l := &postgres.Listener{
		OnChange:    func(c postgres.Change) { changes <- c },
		OnReconnect: func() { ready <- struct{}{} },
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- l.Run(ctx, backends[1]) }()
	<-ready

	// Refused: rolled back, so no notification.
	for range storage.GenerationsPerDay {
		_, err := stores[0].Generate(t.Context(), acct, newCert(t, api.TypeGatewayManaged))
		require.NoError(t, err)
	}
	_, err = stores[0].Generate(t.Context(), acct, newCert(t, api.TypeGatewayManaged))
	require.ErrorIs(t, err, storage.ErrDailyLimit)
	// A committed change made on replica 0.
	c, err := stores[0].Activate(t.Context(), acct, mustFirstInactive(t, stores[0]))
	require.NoError(t, err)
	require.Equal(t, api.StatusPendingDeployment, c.Status)
	want, err := stores[1].Revision(t.Context(), acct)
	require.NoError(t, err)

	var got []postgres.Change
	for len(got) == 0 || got[len(got)-1].Revision != want {
		ch := <-changes
		if ch.AccountID != acct {
			// NOTIFY is database-wide: other packages' tests, each on
			// its own schema of the same database, are heard too.
			continue
		}
		got = append(got, ch)
	}
	assert.Len(t, got, storage.GenerationsPerDay+1, "3 generations and 1 activation, nothing for the refusal")
	cancel()
	assert.ErrorIs(t, <-errc, context.Canceled)
}

func mustFirstInactive(t *testing.T, s *storage.Rules) string {
	t.Helper()
	certs, _, err := s.List(t.Context(), acct)
	require.NoError(t, err)
	for _, c := range certs {
		if c.Status == api.StatusInactive {
			return c.ID
		}
	}
	t.Fatal("no inactive certificate")
	return ""
}

func TestParseChange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want postgres.Change
		err  bool
	}{
		{acct + ":42", postgres.Change{AccountID: acct, Revision: 42}, false},
		{acct, postgres.Change{}, true},
		{":1", postgres.Change{}, true},
		{acct + ":x", postgres.Change{}, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := postgres.ParseChange(tc.in)
			if tc.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestIsDSN(t *testing.T) {
	assert.True(t, postgres.IsDSN("postgres://h/db"))
	assert.True(t, postgres.IsDSN("postgresql://h/db"))
	assert.False(t, postgres.IsDSN("sqlite:/var/lib/certplane/db"))
}

// The PostgreSQL backend passes the same conformance suite as SQLite, each
// subtest on its own fresh schema.
func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		b, err := postgres.Open(t.Context(), pgtest.DSN(t))
		require.NoError(t, err)
		t.Cleanup(func() { _ = b.Close() })
		return b
	})
}

// TestListenerWithoutCacheAcknowledgesRevocations: a listener that caches
// no tokens (a gateway's, OnRevoke nil) is still counted by RevokeToken,
// so it must answer, or every revocation would wait out AckTimeout.
func TestListenerWithoutCacheAcknowledgesRevocations(t *testing.T) {
	stores, backends := replicas(t, 1, newClock())
	b := backends[0]
	b.AckTimeout = 10 * time.Minute
	_, err := stores[0].CreateAccount(t.Context(), acct, "acme", newCert(t, api.TypeGatewayManaged))
	require.NoError(t, err)
	require.NoError(t, b.CreateToken(t.Context(), storage.Token{ID: "tok1", AccountID: acct, Hash: []byte("h"), Scope: storage.ScopeRead, CreatedAt: time.Now()}))
	ready := make(chan struct{}, 1)
	l := &postgres.Listener{OnReconnect: func() { ready <- struct{}{} }}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go l.Run(ctx, b)
	<-ready
	done := make(chan error, 1)
	go func() {
		_, err := b.RevokeToken(t.Context(), acct, "tok1", time.Now())
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(2 * time.Minute): // a safety net far below AckTimeout, not a timing assertion
		t.Fatal("RevokeToken is still waiting for an acknowledgement the cache-less listener never sent")
	}
}

// TestRevokeTokenCountsOnlyItsOwnSchemasAcknowledgements: NOTIFY is
// database-wide, so a certplane on another schema of the same database
// hears every revocation and acknowledges it at once. RevokeToken must
// still wait for this schema's listener: counting the stranger's answer
// instead let a replica serve a revoked token from memory (seen as a
// flaky TestRevocationHoldsOnEveryReplica while fleetsim or another
// package's tests ran on the cluster).
func TestRevokeTokenCountsOnlyItsOwnSchemasAcknowledgements(t *testing.T) {
	stores, backends := replicas(t, 1, newClock())
	b := backends[0]
	b.AckTimeout = 10 * time.Minute
	_, err := stores[0].CreateAccount(t.Context(), acct, "acme", newCert(t, api.TypeGatewayManaged))
	require.NoError(t, err)
	// Other tests on the cluster revoke tokens too: ours is unique.
	tokID := "tok-" + uuid.NewString()
	require.NoError(t, b.CreateToken(t.Context(), storage.Token{ID: tokID, AccountID: acct, Hash: []byte("h"), Scope: storage.ScopeRead, CreatedAt: time.Now()}))
	_, strangers := replicas(t, 1, newClock())

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	// Whoever acknowledges first is seen here.
	watch, err := pgx.ConnectConfig(ctx, b.Pool().Config().ConnConfig.Copy())
	require.NoError(t, err)
	defer func() { _ = watch.Close(context.Background()) }()
	_, err = watch.Exec(ctx, `listen `+postgres.ChannelAcks)
	require.NoError(t, err)
	firstAck := make(chan struct{})
	wg.Go(func() {
		if _, err := watch.WaitForNotification(ctx); err == nil {
			close(firstAck)
		}
	})

	// The stranger caches nothing and acknowledges at once.
	strangerReady := make(chan struct{}, 1)
	stranger := &postgres.Listener{OnReconnect: func() { strangerReady <- struct{}{} }}
	wg.Go(func() { _ = stranger.Run(ctx, strangers[0]) })
	<-strangerReady

	// Ours drops the token only after the stranger has answered, and
	// gives a wrongly satisfied RevokeToken every chance to return first.
	var dropped atomic.Bool
	returned := make(chan struct{})
	ownReady := make(chan struct{}, 1)
	own := &postgres.Listener{
		OnReconnect: func() { ownReady <- struct{}{} },
		OnRevoke: func(id string) {
			if id != tokID {
				return
			}
			select {
			case <-firstAck:
			case <-ctx.Done():
				return
			}
			select {
			case <-returned:
			case <-time.After(time.Second):
			}
			dropped.Store(true)
		},
	}
	wg.Go(func() { _ = own.Run(ctx, b) })
	<-ownReady

	_, err = b.RevokeToken(t.Context(), acct, tokID, time.Now())
	acked := dropped.Load()
	close(returned)
	require.NoError(t, err)
	assert.True(t, acked, "RevokeToken returned before this schema's listener dropped the token (another schema's acknowledgement counted)")
}
