package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/certagent/certagent/controlplane/storage"
)

// Tokens look like "cpt_<16 hex id>.<43 base64url secret>". The id finds
// the row; only SHA-256 of the secret is stored. A plain hash (not a slow
// password hash) is right here because the secret is 256 random bits: there
// is nothing to brute-force, and a slow hash would only make every API
// call slower.
const tokenPrefix = "cpt_"

// ErrUnauthenticated means no token, a malformed one, or an unknown or
// wrong one; callers must not tell these apart in responses.
var ErrUnauthenticated = errors.New("controlplane: authentication error")

// Principal is an authenticated token.
type Principal struct {
	TokenID   string
	AccountID string
	Scope     string
}

// CanWrite reports whether the principal may change things.
func (p Principal) CanWrite() bool { return p.Scope == storage.ScopeWrite }

// CreateToken creates a token for an account and returns it. The token is
// shown once: only its hash is stored.
func (s *Service) CreateToken(ctx context.Context, accountID, scope string) (string, error) {
	if scope != storage.ScopeRead && scope != storage.ScopeWrite && scope != storage.ScopeDevice {
		return "", fmt.Errorf("controlplane: scope %q: want read, write or device", scope)
	}
	var id [8]byte
	var secret [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", fmt.Errorf("controlplane: token id: %w", err)
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return "", fmt.Errorf("controlplane: token secret: %w", err)
	}
	sec := base64.RawURLEncoding.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(sec))
	t := storage.Token{ID: hex.EncodeToString(id[:]), AccountID: accountID, Hash: sum[:], Scope: scope, CreatedAt: s.store.Now()}
	if err := s.store.Backend().CreateToken(ctx, t); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return "", fmt.Errorf("controlplane: account %s: %w", accountID, err)
		}
		return "", fmt.Errorf("controlplane: create token: %w", err)
	}
	return tokenPrefix + t.ID + "." + sec, nil
}

// Authenticate checks a bearer token. Every failure is ErrUnauthenticated
// (wrapping a storage error only when the database itself failed).
func (s *Service) Authenticate(ctx context.Context, token string) (Principal, error) {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return Principal{}, ErrUnauthenticated
	}
	id, sec, ok := strings.Cut(rest, ".")
	if !ok || len(id) != 16 || len(sec) != 43 {
		return Principal{}, ErrUnauthenticated
	}
	sum := sha256.Sum256([]byte(sec))
	if m, ok := s.memo.token(id); ok {
		// Verified before and not revoked since (the feed is live, so a
		// revocation on any replica would have dropped it).
		if subtle.ConstantTimeCompare(sum[:], m.hash[:]) != 1 {
			return Principal{}, ErrUnauthenticated
		}
		return m.p, nil
	}
	gen := s.memo.generation()
	t, err := s.store.Backend().Token(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	if subtle.ConstantTimeCompare(sum[:], t.Hash) != 1 {
		return Principal{}, ErrUnauthenticated
	}
	if t.Revoked() {
		return Principal{}, ErrUnauthenticated
	}
	p := Principal{TokenID: t.ID, AccountID: t.AccountID, Scope: t.Scope}
	// Kept only if no revocation reached this process since the read
	// began (gen), and only while the change feed is live.
	s.memo.putToken(gen, t.ID, t.Hash, p)
	return p, nil
}

// TokenID returns the id of a token given either as the id itself or as
// the whole "cpt_<id>.<secret>" token, so an admin can paste a leaked token
// to revoke it. The secret is neither checked nor kept.
func TokenID(s string) (string, error) {
	id := strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(id, tokenPrefix); ok {
		id, _, _ = strings.Cut(rest, ".")
	}
	if len(id) != 16 {
		return "", fmt.Errorf("controlplane: token id: want 16 hex digits or a %s<id>.<secret> token", tokenPrefix)
	}
	if _, err := hex.DecodeString(id); err != nil || strings.ToLower(id) != id {
		return "", fmt.Errorf("controlplane: token id: want 16 lower-case hex digits or a %s<id>.<secret> token", tokenPrefix)
	}
	return id, nil
}

// Tokens lists an account's tokens (never their hashes).
func (s *Service) Tokens(ctx context.Context, accountID string) ([]storage.Token, error) {
	ts, err := s.store.Backend().Tokens(ctx, accountID)
	if err != nil {
		return nil, fmt.Errorf("controlplane: list tokens of account %s: %w", accountID, err)
	}
	return ts, nil
}

// RevokeToken revokes one of the account's tokens; it fails authentication
// from the next request on, on every replica (the backend's feed carries
// the revocation to the others before it returns; see
// storage/postgres.Backend.RevokeToken). Revoking twice is not an error. ErrNotFound
// if the account has no such token.
func (s *Service) RevokeToken(ctx context.Context, accountID, tokenID string) (storage.Token, error) {
	t, err := s.store.Backend().RevokeToken(ctx, accountID, tokenID, s.store.Now())
	// This process forgets it whatever the feed did (a backend without
	// one, or a feed that is down).
	s.memo.revoked(tokenID)
	if err != nil {
		return storage.Token{}, fmt.Errorf("controlplane: revoke token %s of account %s: %w", tokenID, accountID, err)
	}
	return t, nil
}
