package controlplane_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/seal"
	"github.com/certagent/certagent/controlplane/storage"
	"github.com/certagent/certagent/controlplane/storage/sqlite"
)

// readCountingDB counts the reads a 304 would make. It embeds the concrete
// *sqlite.DB, so the Service still sees its Follower and Stamper.
type readCountingDB struct {
	*sqlite.DB
	tokenReads, revisionReads, listReads atomic.Int64
}

func (d *readCountingDB) Token(ctx context.Context, id string) (storage.Token, error) {
	d.tokenReads.Add(1)
	return d.DB.Token(ctx, id)
}

func (d *readCountingDB) Revision(ctx context.Context, id string) (int64, error) {
	d.revisionReads.Add(1)
	return d.DB.Revision(ctx, id)
}

func (d *readCountingDB) Snapshot(ctx context.Context, id string) (storage.Account, []storage.Certificate, error) {
	d.listReads.Add(1)
	return d.DB.Snapshot(ctx, id)
}

func (d *readCountingDB) reads() int64 {
	return d.tokenReads.Load() + d.revisionReads.Load() + d.listReads.Load()
}

// get sends GET …/certificates with the token and If-None-Match.
func get(t *testing.T, h http.Handler, account, token, inm string) *http.Response {
	t.Helper()
	req := httptest.NewRequest("GET", controlplane.APIPrefix+"/accounts/"+account+"/gateway/certificates", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if inm != "" {
		req.Header.Set("If-None-Match", inm)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

// With the feed live, an up-to-date poll reads nothing from the database;
// a revocation, made in this process or by another process on the same
// file (the admin CLI), holds from the very next request.
func TestNotModifiedFromMemory(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	path := filepath.Join(t.TempDir(), "certplane.db")
	raw, err := sqlite.Open(ctx, path)
	require.NoError(t, err)
	t.Cleanup(func() { raw.Close() })
	db := &readCountingDB{DB: raw}
	sealer, err := seal.New(bytes.Repeat([]byte{7}, seal.KeySize))
	require.NoError(t, err)
	svc, err := controlplane.New(db, controlplane.Options{Sealer: sealer})
	require.NoError(t, err)
	go func() { _ = svc.Follow(ctx) }()
	// Polling a condition: the feed has no "started" event.
	for !svc.Live() {
		time.Sleep(time.Millisecond)
	}
	h := svc.Handler(ctx)
	acct, err := svc.CreateAccount(ctx, "acme")
	require.NoError(t, err)
	tok, err := svc.CreateToken(ctx, acct.ID, storage.ScopeRead)
	require.NoError(t, err)

	first := get(t, h, acct.ID, tok, "")
	require.Equal(t, 200, first.StatusCode)
	etag := first.Header.Get("ETag")
	require.Equal(t, http.StatusNotModified, get(t, h, acct.ID, tok, etag).StatusCode)
	before := db.reads()
	for range 50 {
		r := get(t, h, acct.ID, tok, etag)
		require.Equal(t, http.StatusNotModified, r.StatusCode)
		require.Equal(t, etag, r.Header.Get("ETag"))
	}
	assert.Equal(t, before, db.reads(), "a 304 from memory reads nothing (got %d token, %d revision, %d list reads in all)",
		db.tokenReads.Load(), db.revisionReads.Load(), db.listReads.Load())

	// A wrong secret for a cached id is refused without a read, too.
	repl := "A"
	if tok[len(tok)-1] == 'A' {
		repl = "B"
	}
	bad := tok[:len(tok)-1] + repl
	assert.Equal(t, http.StatusUnauthorized, get(t, h, acct.ID, bad, etag).StatusCode)

	// This process's change moves the revision in memory at once.
	_, err = svc.Generate(ctx, acct.ID, controlplane.GenerateRequest{})
	require.NoError(t, err)
	r := get(t, h, acct.ID, tok, etag)
	require.Equal(t, 200, r.StatusCode, "a change must invalidate the tag")
	etag = r.Header.Get("ETag")

	// Revoked here: refused from the next request on.
	tok2, err := svc.CreateToken(ctx, acct.ID, storage.ScopeRead)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotModified, get(t, h, acct.ID, tok2, etag).StatusCode)
	id2, err := controlplane.TokenID(tok2)
	require.NoError(t, err)
	_, err = svc.RevokeToken(ctx, acct.ID, id2)
	require.NoError(t, err)
	assert.Equal(t, http.StatusUnauthorized, get(t, h, acct.ID, tok2, etag).StatusCode)

	// Revoked by another process on the same file (a Service of its own,
	// as `certplane token revoke` is): refused from the next request on.
	other, err := sqlite.Open(ctx, path)
	require.NoError(t, err)
	defer other.Close()
	cli, err := controlplane.New(other, controlplane.Options{})
	require.NoError(t, err)
	for range 5 {
		tok3, err := svc.CreateToken(ctx, acct.ID, storage.ScopeRead)
		require.NoError(t, err)
		for range 3 {
			require.Equal(t, http.StatusNotModified, get(t, h, acct.ID, tok3, etag).StatusCode)
		}
		id3, err := controlplane.TokenID(tok3)
		require.NoError(t, err)
		_, err = cli.RevokeToken(ctx, acct.ID, id3)
		require.NoError(t, err)
		assert.Equal(t, http.StatusUnauthorized, get(t, h, acct.ID, tok3, etag).StatusCode)
	}
	// And another process's change reaches the 304 at once as well.
	_, err = cli.Generate(ctx, acct.ID, controlplane.GenerateRequest{})
	require.ErrorIs(t, err, controlplane.ErrNoSealer)
	_, err = cli.Use(ctx, acct.ID, "")
	require.NoError(t, err)
	assert.Equal(t, 200, get(t, h, acct.ID, tok, etag).StatusCode, "another process's change must invalidate the tag")
}
