// Package storagetest is the conformance suite every storage.Backend must
// pass: the SQLite backend runs it in its tests, and so must any other
// (PostgreSQL). It drives the backend through storage.Rules, so it checks
// both the primitives and that the lifecycle rules stay true under
// concurrent writers.
package storagetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane/storage"
)

// Clock is a settable clock for Store.Options.Now.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock reading t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's reading.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// NewBackend returns a fresh, empty backend for one subtest. It should
// register its own cleanup (Close) with t.Cleanup.
type NewBackend func(t *testing.T) storage.Backend

// deployDelay is long enough that nothing completes unless a test moves
// the clock.
const deployDelay = time.Minute

// start is a fixed time with a non-zero nanosecond part, to catch backends
// that round times.
var start = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

type env struct {
	b     storage.Backend
	s     *storage.Rules
	clock *Clock
	// changes counts OnChange calls per account. Guarded by mu.
	mu      sync.Mutex
	changes map[string]int
}

func newEnv(t *testing.T, nb NewBackend) *env {
	e := &env{b: nb(t), clock: NewClock(start), changes: map[string]int{}}
	e.s = storage.New(e.b, storage.Options{Now: e.clock.Now, DeployDelay: deployDelay, OnChange: func(a string, _ int64) {
		e.mu.Lock()
		e.changes[a]++
		e.mu.Unlock()
	}})
	return e
}

// AccountID returns a fresh random account id.
func AccountID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Cert returns a NewCertificate with random opaque DER (storage does not
// parse certificates) and a matching fingerprint.
func Cert(typ string) storage.NewCertificate {
	der := make([]byte, 64)
	_, _ = rand.Read(der)
	sum := sha256.Sum256(der)
	key := make([]byte, 48)
	_, _ = rand.Read(key)
	return storage.NewCertificate{
		ID: uuid.NewString(), Type: typ, DER: der, Fingerprint: hex.EncodeToString(sum[:]),
		IssuerOrg: "certplane", IssuerRaw: "CN=test,O=certplane", ExpiresOn: start.Add(365 * 24 * time.Hour),
		SealedKey: key,
	}
}

func (e *env) account(t *testing.T) (string, storage.NewCertificate) {
	t.Helper()
	id := AccountID()
	first := Cert(api.TypeGatewayManaged)
	_, err := e.s.CreateAccount(context.Background(), id, "acme", first)
	require.NoError(t, err)
	return id, first
}

func (e *env) status(t *testing.T, account, cert string) api.BindingStatus {
	t.Helper()
	c, err := e.s.Get(context.Background(), account, cert)
	require.NoError(t, err)
	return c.Status
}

// makeAvailable activates cert and completes its deployment.
func (e *env) makeAvailable(t *testing.T, account, cert string) {
	t.Helper()
	ctx := context.Background()
	_, err := e.s.Activate(ctx, account, cert)
	require.NoError(t, err)
	e.clock.Advance(deployDelay)
	_, err = e.s.CompleteDue(ctx)
	require.NoError(t, err)
	require.Equal(t, api.StatusAvailable, e.status(t, account, cert))
}

// Run runs the conformance suite. newBackend is called once per subtest.
func Run(t *testing.T, newBackend NewBackend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"AccountLifecycle", testAccount},
		{"Tokens", testTokens},
		{"TokenListAndRevoke", testTokenRevoke},
		{"InitialCertificate", testInitial},
		{"TimesRoundTrip", testTimes},
		{"DailyGenerationLimit", testDailyLimit},
		{"ActivateDeactivate", testActivateDeactivate},
		{"AvailableLimit", testAvailableLimit},
		{"DeleteRules", testDelete},
		{"Configure", testConfigure},
		{"Custom", testCustom},
		{"AccountIsolation", testIsolation},
		{"RevisionOnlyOnChange", testRevision},
		{"ConcurrentGenerate", testConcurrentGenerate},
		{"ConcurrentActivate", testConcurrentActivate},
		{"ConcurrentUse", testConcurrentUse},
		{"CompleteOnce", testCompleteOnce},
		{"KeySampler", testKeySampler},
		{"DeviceCheckIn", testDeviceCheckIn},
		{"DeviceRegisterRefused", testDeviceRegisterRefused},
		{"Readiness", testReadiness},
		{"CheckReady", testCheckReady},
		{"DeviceList", testDeviceList},
		{"DeviceSettings", testDeviceSettings},
		{"ConcurrentRegister", testConcurrentRegister},
		{"ReadinessCountsExact", testReadinessCountsExact},
		{"GatewayRegistry", testGatewayRegistry},
		{"GatewayDeployment", testGatewayDeployment},
		{"GatewayWithdrawal", testGatewayWithdrawal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newEnv(t, newBackend))
		})
	}
}

func testAccount(t *testing.T, e *env) {
	ctx := context.Background()
	id, first := e.account(t)
	a, err := e.s.Account(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, id, a.ID)
	assert.Equal(t, "acme", a.Name)
	assert.Equal(t, first.ID, a.InUseID)
	assert.True(t, a.CreatedAt.Equal(start), "created_at: got %v, want %v", a.CreatedAt, start)

	_, err = e.s.CreateAccount(ctx, id, "again", Cert(api.TypeGatewayManaged))
	assert.ErrorIs(t, err, storage.ErrExists)

	_, err = e.s.Account(ctx, AccountID())
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, err = e.s.Revision(ctx, AccountID())
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, _, err = e.s.List(ctx, AccountID())
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, err = e.s.Generate(ctx, AccountID(), Cert(api.TypeGatewayManaged))
	assert.ErrorIs(t, err, storage.ErrNotFound)

	// A failed CreateAccount leaves nothing behind: the account and its
	// first certificate are one transaction.
	dup := AccountID()
	c := Cert(api.TypeGatewayManaged)
	c.ID = first.ID // collides with an existing certificate id
	_, err = e.s.CreateAccount(ctx, dup, "dup", c)
	require.Error(t, err)
	_, err = e.s.Account(ctx, dup)
	assert.ErrorIs(t, err, storage.ErrNotFound)
}

func testTokens(t *testing.T, e *env) {
	ctx := context.Background()
	id, _ := e.account(t)
	hash := sha256.Sum256([]byte("secret"))
	tok := storage.Token{ID: "tok1", AccountID: id, Hash: hash[:], Scope: storage.ScopeRead, CreatedAt: start}
	require.NoError(t, e.b.CreateToken(ctx, tok))
	got, err := e.b.Token(ctx, "tok1")
	require.NoError(t, err)
	assert.Equal(t, tok.AccountID, got.AccountID)
	assert.Equal(t, tok.Hash, got.Hash)
	assert.Equal(t, tok.Scope, got.Scope)
	assert.True(t, got.CreatedAt.Equal(start))

	assert.ErrorIs(t, e.b.CreateToken(ctx, tok), storage.ErrExists)
	_, err = e.b.Token(ctx, "nope")
	assert.ErrorIs(t, err, storage.ErrNotFound)
	orphan := tok
	orphan.ID, orphan.AccountID = "tok2", AccountID()
	assert.ErrorIs(t, e.b.CreateToken(ctx, orphan), storage.ErrNotFound)
}

// testTokenRevoke covers listing an account's tokens and revoking one:
// ordered, hash-free, idempotent, scoped to the account.
func testTokenRevoke(t *testing.T, e *env) {
	ctx := context.Background()
	id, _ := e.account(t)
	other, _ := e.account(t)

	list, err := e.b.Tokens(ctx, id)
	require.NoError(t, err)
	assert.Empty(t, list, "a new account has no tokens")
	_, err = e.b.Tokens(ctx, AccountID())
	assert.ErrorIs(t, err, storage.ErrNotFound, "listing an unknown account")

	hash := sha256.Sum256([]byte("secret"))
	mk := func(acct, scope string, at time.Time) storage.Token {
		t.Helper()
		tok := storage.Token{ID: AccountID()[:16], AccountID: acct, Hash: hash[:], Scope: scope, CreatedAt: at}
		require.NoError(t, e.b.CreateToken(ctx, tok))
		return tok
	}
	// Created out of order: the list is ordered by creation time.
	later := mk(id, storage.ScopeWrite, start.Add(time.Minute))
	first := mk(id, storage.ScopeRead, start)
	foreign := mk(other, storage.ScopeRead, start)

	list, err = e.b.Tokens(ctx, id)
	require.NoError(t, err)
	require.Len(t, list, 2)
	for i, want := range []storage.Token{first, later} {
		assert.Equal(t, want.ID, list[i].ID)
		assert.Equal(t, id, list[i].AccountID)
		assert.Equal(t, want.Scope, list[i].Scope)
		assert.True(t, list[i].CreatedAt.Equal(want.CreatedAt), "got %v, want %v", list[i].CreatedAt, want.CreatedAt)
		assert.Empty(t, list[i].Hash, "a listing never carries the hash")
		assert.False(t, list[i].Revoked())
	}

	// Revoke: the row says so, Token (what authentication reads) says so.
	at := start.Add(time.Hour + 7)
	got, err := e.b.RevokeToken(ctx, id, first.ID, at)
	require.NoError(t, err)
	assert.Equal(t, first.ID, got.ID)
	assert.Empty(t, got.Hash)
	assert.True(t, got.RevokedAt.Equal(at), "got %v, want %v", got.RevokedAt, at)
	read, err := e.b.Token(ctx, first.ID)
	require.NoError(t, err)
	assert.True(t, read.Revoked())
	assert.True(t, read.RevokedAt.Equal(at), "got %v, want %v", read.RevokedAt, at)

	// Twice: no error, the first revocation time stays.
	got, err = e.b.RevokeToken(ctx, id, first.ID, at.Add(time.Hour))
	require.NoError(t, err)
	assert.True(t, got.RevokedAt.Equal(at), "second revoke: got %v, want %v", got.RevokedAt, at)

	// Unknown ids and another account's token are not found, and the
	// other account's token stays live.
	_, err = e.b.RevokeToken(ctx, id, "0000000000000000", at)
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, err = e.b.RevokeToken(ctx, id, foreign.ID, at)
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, err = e.b.RevokeToken(ctx, AccountID(), foreign.ID, at)
	assert.ErrorIs(t, err, storage.ErrNotFound)
	read, err = e.b.Token(ctx, foreign.ID)
	require.NoError(t, err)
	assert.False(t, read.Revoked(), "another account's token must not be revoked")

	list, err = e.b.Tokens(ctx, id)
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.True(t, list[0].Revoked())
	assert.False(t, list[1].Revoked(), "revoking one token leaves the others live")
}

func testInitial(t *testing.T, e *env) {
	ctx := context.Background()
	id, first := e.account(t)
	certs, rev, err := e.s.List(ctx, id)
	require.NoError(t, err)
	require.Len(t, certs, 1)
	c := certs[0]
	assert.Equal(t, first.ID, c.ID)
	assert.Equal(t, api.StatusAvailable, c.Status)
	assert.True(t, c.InUse)
	assert.Equal(t, first.DER, c.DER)
	assert.Equal(t, first.Fingerprint, c.Fingerprint)
	assert.Equal(t, api.TypeGatewayManaged, c.Type)
	assert.True(t, c.DueAt.IsZero())
	r2, err := e.s.Revision(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, rev, r2)

	key, err := e.b.SealedKey(ctx, id, first.ID)
	require.NoError(t, err)
	assert.Equal(t, first.SealedKey, key)
	_, err = e.b.SealedKey(ctx, id, uuid.NewString())
	assert.ErrorIs(t, err, storage.ErrNotFound)

	// The bootstrap certificate does not count against the daily limit.
	for i := 0; i < storage.GenerationsPerDay; i++ {
		_, err := e.s.Generate(ctx, id, Cert(api.TypeGatewayManaged))
		require.NoError(t, err, "generation %d", i+1)
	}
}

func testTimes(t *testing.T, e *env) {
	ctx := context.Background()
	id, _ := e.account(t)
	n := Cert(api.TypeGatewayManaged)
	n.ExpiresOn = time.Date(2055, 1, 9, 3, 6, 0, 987654321, time.UTC)
	c, err := e.s.Generate(ctx, id, n)
	require.NoError(t, err)
	got, err := e.s.Get(ctx, id, c.ID)
	require.NoError(t, err)
	for _, p := range []struct {
		name      string
		got, want time.Time
	}{
		{"created_at", got.CreatedAt, start},
		{"updated_at", got.UpdatedAt, start},
		{"expires_on", got.ExpiresOn, n.ExpiresOn},
	} {
		assert.True(t, p.got.Equal(p.want), "%s: got %v, want %v", p.name, p.got, p.want)
	}
	assert.True(t, got.UploadedOn.IsZero(), "uploaded_on of a managed certificate: got %v, want zero", got.UploadedOn)
}

func testDailyLimit(t *testing.T, e *env) {
	ctx := context.Background()
	id, _ := e.account(t)
	var ids []string
	first := e.s.Now()
	for i := 0; i < storage.GenerationsPerDay; i++ {
		c, err := e.s.Generate(ctx, id, Cert(api.TypeGatewayManaged))
		require.NoError(t, err)
		assert.Equal(t, api.StatusInactive, c.Status)
		ids = append(ids, c.ID)
		e.clock.Advance(time.Hour)
	}
	_, err := e.s.Generate(ctx, id, Cert(api.TypeGatewayManaged))
	assert.ErrorIs(t, err, storage.ErrDailyLimit)
	// The refusal says when the oldest generation leaves the window.
	var dl *storage.DailyLimitError
	require.ErrorAs(t, err, &dl)
	assert.True(t, dl.Next.Equal(first.Add(storage.GenerationWindow+time.Nanosecond)), "next: got %v, want %v", dl.Next, first.Add(storage.GenerationWindow+time.Nanosecond))
	// The quota says when: 24 h after the first of the three.
	q, err := e.s.GenerationQuota(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, storage.GenerationsPerDay, q.Used, "used")
	assert.Equal(t, 0, q.Remaining(), "remaining")
	assert.True(t, q.NextAt.Equal(dl.Next), "quota's next generation: got %v, want the refusal's %v", q.NextAt, dl.Next)
	_, err = e.s.GenerationQuota(ctx, AccountID())
	assert.ErrorIs(t, err, storage.ErrNotFound)
	// Deleting does not give the generation back.
	_, err = e.s.Delete(ctx, id, ids[0])
	require.NoError(t, err)
	_, err = e.s.Generate(ctx, id, Cert(api.TypeGatewayManaged))
	assert.ErrorIs(t, err, storage.ErrDailyLimit)
	// The window rolls: 24 h after the first generation, one more is allowed.
	e.clock.Advance(storage.GenerationWindow - 3*time.Hour + time.Nanosecond)
	_, err = e.s.Generate(ctx, id, Cert(api.TypeGatewayManaged))
	require.NoError(t, err)
	_, err = e.s.Generate(ctx, id, Cert(api.TypeGatewayManaged))
	assert.ErrorIs(t, err, storage.ErrDailyLimit)
	certs, _, err := e.s.List(ctx, id)
	require.NoError(t, err)
	assert.Len(t, certs, 1+storage.GenerationsPerDay) // bootstrap + 3 - 1 deleted + 1

	// A fresh account has its whole quota: the bootstrap root is not counted.
	fresh, _ := e.account(t)
	q, err = e.s.GenerationQuota(ctx, fresh)
	require.NoError(t, err)
	assert.Equal(t, storage.Quota{Used: 0, Limit: storage.GenerationsPerDay}, q)
}

func testActivateDeactivate(t *testing.T, e *env) {
	ctx := context.Background()
	id, _ := e.account(t)
	c, err := e.s.Generate(ctx, id, Cert(api.TypeGatewayManaged))
	require.NoError(t, err)

	got, err := e.s.Activate(ctx, id, c.ID)
	require.NoError(t, err)
	assert.Equal(t, api.StatusPendingDeployment, got.Status)
	assert.True(t, got.DueAt.Equal(start.Add(deployDelay)))
	// Repeating an activation under way changes nothing.
	rev, _ := e.s.Revision(ctx, id)
	again, err := e.s.Activate(ctx, id, c.ID)
	require.NoError(t, err)
	assert.Equal(t, api.StatusPendingDeployment, again.Status)
	rev2, _ := e.s.Revision(ctx, id)
	assert.Equal(t, rev, rev2, "a repeated activation must not bump the revision")

	// Not due yet.
	n, err := e.s.CompleteDue(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
	next, ok, err := e.s.NextDue(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	assert.True(t, next.Equal(start.Add(deployDelay)), "next due: got %v, want %v", next, start.Add(deployDelay))

	e.clock.Advance(deployDelay)
	n, err = e.s.CompleteDue(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, api.StatusAvailable, e.status(t, id, c.ID))
	_, ok, err = e.s.NextDue(ctx)
	require.NoError(t, err)
	assert.False(t, ok, "nothing should be pending")

	got, err = e.s.Activate(ctx, id, c.ID)
	require.NoError(t, err)
	assert.Equal(t, api.StatusAvailable, got.Status)

	got, err = e.s.Deactivate(ctx, id, c.ID)
	require.NoError(t, err)
	assert.Equal(t, api.StatusPendingDeletion, got.Status)
	got, err = e.s.Deactivate(ctx, id, c.ID)
	require.NoError(t, err)
	assert.Equal(t, api.StatusPendingDeletion, got.Status)
	// Re-activating a certificate being withdrawn turns it around.
	got, err = e.s.Activate(ctx, id, c.ID)
	require.NoError(t, err)
	assert.Equal(t, api.StatusPendingDeployment, got.Status)
	_, err = e.s.Deactivate(ctx, id, c.ID)
	require.NoError(t, err)
	e.clock.Advance(deployDelay)
	_, err = e.s.CompleteDue(ctx)
	require.NoError(t, err)
	assert.Equal(t, api.StatusInactive, e.status(t, id, c.ID))
	got, err = e.s.Deactivate(ctx, id, c.ID)
	require.NoError(t, err)
	assert.Equal(t, api.StatusInactive, got.Status)

	_, err = e.s.Activate(ctx, id, uuid.NewString())
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, err = e.s.Deactivate(ctx, id, uuid.NewString())
	assert.ErrorIs(t, err, storage.ErrNotFound)
}

// inactiveCerts gives the account n more inactive certificates, moving the
// clock past the daily window as needed.
func inactiveCerts(t *testing.T, e *env, id string, n int) []string {
	t.Helper()
	var ids []string
	for len(ids) < n {
		c, err := e.s.Generate(context.Background(), id, Cert(api.TypeGatewayManaged))
		if errors.Is(err, storage.ErrDailyLimit) {
			e.clock.Advance(storage.GenerationWindow)
			continue
		}
		require.NoError(t, err)
		ids = append(ids, c.ID)
	}
	return ids
}

func testAvailableLimit(t *testing.T, e *env) {
	ctx := context.Background()
	id, _ := e.account(t)
	ids := inactiveCerts(t, e, id, storage.MaxAvailable)
	// The bootstrap certificate is available: 9 more fit, counting pending.
	for i := 0; i < storage.MaxAvailable-1; i++ {
		_, err := e.s.Activate(ctx, id, ids[i])
		require.NoError(t, err, "activation %d", i+1)
	}
	_, err := e.s.Activate(ctx, id, ids[storage.MaxAvailable-1])
	assert.ErrorIs(t, err, storage.ErrAvailableLimit)
	e.clock.Advance(deployDelay)
	_, err = e.s.CompleteDue(ctx)
	require.NoError(t, err)
	_, err = e.s.Activate(ctx, id, ids[storage.MaxAvailable-1])
	assert.ErrorIs(t, err, storage.ErrAvailableLimit)
	assert.Equal(t, api.StatusInactive, e.status(t, id, ids[storage.MaxAvailable-1]))
	// Withdrawing one makes room at once (pending_deletion does not count).
	_, err = e.s.Deactivate(ctx, id, ids[0])
	require.NoError(t, err)
	_, err = e.s.Activate(ctx, id, ids[storage.MaxAvailable-1])
	require.NoError(t, err)
}

func testDelete(t *testing.T, e *env) {
	ctx := context.Background()
	id, first := e.account(t)
	c, err := e.s.Generate(ctx, id, Cert(api.TypeGatewayManaged))
	require.NoError(t, err)
	e.makeAvailable(t, id, c.ID)

	_, err = e.s.Delete(ctx, id, c.ID)
	assert.ErrorIs(t, err, storage.ErrDeleteNotInactive)
	_, err = e.s.Deactivate(ctx, id, c.ID)
	require.NoError(t, err)
	_, err = e.s.Delete(ctx, id, c.ID)
	assert.ErrorIs(t, err, storage.ErrDeleteNotInactive, "pending_deletion is not inactive yet")
	e.clock.Advance(deployDelay)
	_, err = e.s.CompleteDue(ctx)
	require.NoError(t, err)
	got, err := e.s.Delete(ctx, id, c.ID)
	require.NoError(t, err)
	assert.Equal(t, c.ID, got.ID)
	_, err = e.s.Get(ctx, id, c.ID)
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, err = e.b.SealedKey(ctx, id, c.ID)
	assert.ErrorIs(t, err, storage.ErrNotFound, "the key goes with the certificate")
	_, err = e.s.Delete(ctx, id, c.ID)
	assert.ErrorIs(t, err, storage.ErrNotFound)

	// The certificate in use can be neither deactivated nor deleted.
	_, err = e.s.Deactivate(ctx, id, first.ID)
	assert.ErrorIs(t, err, storage.ErrDeactivateInUse)
	_, err = e.s.Delete(ctx, id, first.ID)
	assert.ErrorIs(t, err, storage.ErrDeleteNotInactive)
	assert.Equal(t, api.StatusAvailable, e.status(t, id, first.ID))
}

func ptr(s string) *string { return &s }

func testConfigure(t *testing.T, e *env) {
	ctx := context.Background()
	id, first := e.account(t)
	c, err := e.s.Generate(ctx, id, Cert(api.TypeGatewayManaged))
	require.NoError(t, err)

	_, err = e.s.Configure(ctx, id, storage.ConfigChange{CertificateID: ptr(c.ID)})
	assert.ErrorIs(t, err, storage.ErrUseNotAvailable)
	_, err = e.s.Activate(ctx, id, c.ID)
	require.NoError(t, err)
	_, err = e.s.Configure(ctx, id, storage.ConfigChange{CertificateID: ptr(c.ID)})
	assert.ErrorIs(t, err, storage.ErrUseNotAvailable, "pending_deployment is not available yet")
	_, err = e.s.Configure(ctx, id, storage.ConfigChange{CertificateID: ptr(uuid.NewString())})
	assert.ErrorIs(t, err, storage.ErrNotFound)

	e.clock.Advance(deployDelay)
	_, err = e.s.CompleteDue(ctx)
	require.NoError(t, err)
	a, err := e.s.Configure(ctx, id, storage.ConfigChange{CertificateID: ptr(c.ID)})
	require.NoError(t, err)
	assert.Equal(t, c.ID, a.InUseID)
	assert.True(t, a.ConfigUpdatedAt.Equal(e.clock.Now()))

	certs, _, err := e.s.List(ctx, id)
	require.NoError(t, err)
	inUse := map[string]bool{}
	for _, x := range certs {
		inUse[x.ID] = x.InUse
	}
	assert.Equal(t, map[string]bool{first.ID: false, c.ID: true}, inUse, "turning one on demotes the other")
	assert.Equal(t, api.StatusAvailable, e.status(t, id, first.ID), "the demoted certificate stays available")

	// Settings: PATCH merges, PUT replaces; "certificate" is never stored there.
	_, err = e.s.Configure(ctx, id, storage.ConfigChange{Settings: map[string]json.RawMessage{
		"tls_decrypt": json.RawMessage(`{"enabled":true}`), "certificate": json.RawMessage(`{"id":"x"}`)}})
	require.NoError(t, err)
	a, err = e.s.Configure(ctx, id, storage.ConfigChange{Settings: map[string]json.RawMessage{"fips": json.RawMessage(`{"tls":true}`)}})
	require.NoError(t, err)
	assert.JSONEq(t, `{"tls_decrypt":{"enabled":true},"fips":{"tls":true}}`, string(a.Settings))
	assert.Equal(t, c.ID, a.InUseID, "a change without a certificate keeps the one in use")
	a, err = e.s.Configure(ctx, id, storage.ConfigChange{Replace: true, CertificateID: ptr(api.NilUUID),
		Settings: map[string]json.RawMessage{"fips": json.RawMessage(`{"tls":false}`)}})
	require.NoError(t, err)
	assert.JSONEq(t, `{"fips":{"tls":false}}`, string(a.Settings))
	assert.Equal(t, "", a.InUseID, "the nil UUID turns inspection certificates off")
	stored, err := e.s.Account(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, "", stored.InUseID)
	assert.JSONEq(t, `{"fips":{"tls":false}}`, string(stored.Settings))
	certs, _, err = e.s.List(ctx, id)
	require.NoError(t, err)
	for _, x := range certs {
		assert.False(t, x.InUse, "certificate %s still in use", x.ID)
	}
	// With nothing in use, the former in-use certificate can be withdrawn.
	_, err = e.s.Deactivate(ctx, id, c.ID)
	require.NoError(t, err)
}

func testCustom(t *testing.T, e *env) {
	ctx := context.Background()
	id, _ := e.account(t)
	var first storage.Certificate
	for i := 0; i < storage.MaxCustom; i++ {
		n := Cert("")
		n.Name = fmt.Sprintf("byo-%d", i)
		c, err := e.s.Upload(ctx, id, n)
		require.NoError(t, err)
		assert.Equal(t, api.TypeCustom, c.Type)
		assert.Equal(t, api.StatusInactive, c.Status)
		assert.True(t, c.UploadedOn.Equal(start))
		if i == 0 {
			first = c
		}
	}
	_, err := e.s.Upload(ctx, id, Cert(""))
	assert.ErrorIs(t, err, storage.ErrCustomLimit)
	got, err := e.s.Get(ctx, id, first.ID)
	require.NoError(t, err)
	assert.Equal(t, "byo-0", got.Name)
	assert.Equal(t, api.TypeCustom, got.Type)
	// Custom uploads do not use up generations.
	_, err = e.s.Generate(ctx, id, Cert(api.TypeGatewayManaged))
	require.NoError(t, err)

	// Same certificate twice, even under the limit, is refused.
	other, _ := e.account(t)
	n := Cert("")
	_, err = e.s.Upload(ctx, other, n)
	require.NoError(t, err)
	n2 := n
	n2.ID = uuid.NewString()
	_, err = e.s.Upload(ctx, other, n2)
	assert.ErrorIs(t, err, storage.ErrDuplicate)

	// Custom certificates follow the same lifecycle.
	e.makeAvailable(t, id, first.ID)
	_, err = e.s.Configure(ctx, id, storage.ConfigChange{CertificateID: ptr(first.ID)})
	require.NoError(t, err)
}

func testIsolation(t *testing.T, e *env) {
	ctx := context.Background()
	a, firstA := e.account(t)
	b, _ := e.account(t)
	_, err := e.s.Get(ctx, b, firstA.ID)
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, err = e.s.Activate(ctx, b, firstA.ID)
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, err = e.s.Delete(ctx, b, firstA.ID)
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, err = e.s.Configure(ctx, b, storage.ConfigChange{CertificateID: ptr(firstA.ID)})
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, err = e.b.SealedKey(ctx, b, firstA.ID)
	assert.ErrorIs(t, err, storage.ErrNotFound)
	certsB, _, err := e.s.List(ctx, b)
	require.NoError(t, err)
	require.Len(t, certsB, 1)
	assert.NotEqual(t, firstA.ID, certsB[0].ID)
	// Limits are per account.
	for i := 0; i < storage.GenerationsPerDay; i++ {
		_, err := e.s.Generate(ctx, a, Cert(api.TypeGatewayManaged))
		require.NoError(t, err)
	}
	_, err = e.s.Generate(ctx, b, Cert(api.TypeGatewayManaged))
	require.NoError(t, err)
}

func testRevision(t *testing.T, e *env) {
	ctx := context.Background()
	id, first := e.account(t)
	other, _ := e.account(t)
	rev := func(a string) int64 {
		r, err := e.s.Revision(ctx, a)
		require.NoError(t, err)
		return r
	}
	r0, o0 := rev(id), rev(other)
	c, err := e.s.Generate(ctx, id, Cert(api.TypeGatewayManaged))
	require.NoError(t, err)
	r1 := rev(id)
	assert.Greater(t, r1, r0, "generate must bump the revision")
	_, err = e.s.Activate(ctx, id, first.ID) // already available: no-op
	require.NoError(t, err)
	assert.Equal(t, r1, rev(id), "a no-op must not bump the revision")
	_, err = e.s.Deactivate(ctx, id, first.ID) // refused
	require.Error(t, err)
	assert.Equal(t, r1, rev(id), "a refused change must not bump the revision")
	_, err = e.s.Activate(ctx, id, c.ID)
	require.NoError(t, err)
	r2 := rev(id)
	assert.Greater(t, r2, r1)
	e.clock.Advance(deployDelay)
	_, err = e.s.CompleteDue(ctx)
	require.NoError(t, err)
	r3 := rev(id)
	assert.Greater(t, r3, r2, "the deployer's completion must bump the revision")
	_, err = e.s.Configure(ctx, id, storage.ConfigChange{CertificateID: ptr(c.ID)})
	require.NoError(t, err)
	assert.Greater(t, rev(id), r3, "turning a certificate on changes in_use in the list")
	assert.Equal(t, o0, rev(other), "another account's changes must not bump this one")
	_, listRev, err := e.s.List(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, rev(id), listRev)
	e.mu.Lock()
	defer e.mu.Unlock()
	assert.Equal(t, 4, e.changes[id], "OnChange: generate, activate, complete, configure")
}

// parallel runs fn n times at once and returns the errors.
func parallel(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			errs[i] = fn(i)
		}()
	}
	close(gate)
	wg.Wait()
	return errs
}

func testConcurrentGenerate(t *testing.T, e *env) {
	ctx := context.Background()
	id, _ := e.account(t)
	errs := parallel(50, func(int) error {
		_, err := e.s.Generate(ctx, id, Cert(api.TypeGatewayManaged))
		return err
	})
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			assert.ErrorIs(t, err, storage.ErrDailyLimit)
		}
	}
	assert.Equal(t, storage.GenerationsPerDay, ok)
	certs, _, err := e.s.List(ctx, id)
	require.NoError(t, err)
	assert.Len(t, certs, 1+storage.GenerationsPerDay)
}

func testConcurrentActivate(t *testing.T, e *env) {
	ctx := context.Background()
	id, _ := e.account(t)
	ids := inactiveCerts(t, e, id, 14)
	errs := parallel(len(ids), func(i int) error {
		_, err := e.s.Activate(ctx, id, ids[i])
		return err
	})
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			assert.ErrorIs(t, err, storage.ErrAvailableLimit)
		}
	}
	assert.Equal(t, storage.MaxAvailable-1, ok)
	e.clock.Advance(deployDelay)
	_, err := e.s.CompleteDue(ctx)
	require.NoError(t, err)
	certs, _, err := e.s.List(ctx, id)
	require.NoError(t, err)
	avail := 0
	for _, c := range certs {
		if c.Status == api.StatusAvailable {
			avail++
		}
	}
	assert.Equal(t, storage.MaxAvailable, avail)
}

func testConcurrentUse(t *testing.T, e *env) {
	ctx := context.Background()
	id, first := e.account(t)
	ids := append(inactiveCerts(t, e, id, 5), first.ID)
	for _, c := range ids[:5] {
		_, err := e.s.Activate(ctx, id, c)
		require.NoError(t, err)
	}
	e.clock.Advance(deployDelay)
	_, err := e.s.CompleteDue(ctx)
	require.NoError(t, err)
	// Every writer turns a different one on while others try to withdraw
	// them: at the end exactly one is in use and it is available.
	parallel(2*len(ids), func(i int) error {
		c := ids[i%len(ids)]
		if i < len(ids) {
			_, err := e.s.Configure(ctx, id, storage.ConfigChange{CertificateID: &c})
			return err
		}
		_, err := e.s.Deactivate(ctx, id, c)
		return err
	})
	certs, _, err := e.s.List(ctx, id)
	require.NoError(t, err)
	inUse := 0
	for _, c := range certs {
		if c.InUse {
			inUse++
			assert.Equal(t, api.StatusAvailable, c.Status, "the certificate in use must stay available")
		}
	}
	assert.Equal(t, 1, inUse)
}

func testCompleteOnce(t *testing.T, e *env) {
	ctx := context.Background()
	id, _ := e.account(t)
	ids := inactiveCerts(t, e, id, 6)
	for _, c := range ids {
		_, err := e.s.Activate(ctx, id, c)
		require.NoError(t, err)
	}
	e.clock.Advance(deployDelay)
	due, err := e.b.DueTransitions(ctx, e.clock.Now(), 100)
	require.NoError(t, err)
	require.Len(t, due, len(ids))
	for _, tr := range due {
		assert.Equal(t, api.StatusPendingDeployment, tr.From)
		assert.Equal(t, api.StatusAvailable, tr.To)
	}
	rev0, _ := e.s.Revision(ctx, id)
	// Four "replicas" complete the same transitions at once.
	var mu sync.Mutex
	done := 0
	errs := parallel(4, func(int) error {
		n, err := e.s.CompleteDue(ctx)
		mu.Lock()
		done += n
		mu.Unlock()
		return err
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, len(ids), done, "each transition is completed by exactly one caller")
	rev1, _ := e.s.Revision(ctx, id)
	assert.Equal(t, rev0+int64(len(ids)), rev1)
	// A stale claim (the certificate changed since it was read) fails.
	ok, _, err := e.b.CompleteTransition(ctx, due[0], e.clock.Now())
	require.NoError(t, err)
	assert.False(t, ok)
	for _, c := range ids {
		assert.Equal(t, api.StatusAvailable, e.status(t, id, c))
	}
}

// testKeySampler checks storage.KeySampler. The interface is optional for
// the server (it then skips the seal-key check), but every backend we ship
// implements it, so the suite requires it.
func testKeySampler(t *testing.T, e *env) {
	ks, ok := e.b.(storage.KeySampler)
	if !ok {
		t.Fatalf("backend %T does not implement storage.KeySampler: certplane could not check its seal key against this database", e.b)
	}
	ctx := context.Background()
	_, _, _, ok, err := ks.SampleSealedKey(ctx)
	require.NoError(t, err)
	assert.False(t, ok, "an empty database has no key to sample")
	id, first := e.account(t)
	a, c, sealed, ok, err := ks.SampleSealedKey(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, id, a)
	assert.Equal(t, first.ID, c)
	assert.Equal(t, first.SealedKey, sealed)
}
