package dashboard

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"sync"
	"time"

	"github.com/certagent/certagent/controlplane"
)

// session is one logged-in browser. It holds the token's id, never its
// secret: every request re-reads the token's row, so a revocation ends the
// session at the next request.
type session struct {
	// key is SHA-256 of the cookie value, the sessions map's key.
	key string
	// csrf is the token every state-changing form and fetch must carry.
	csrf string
	p    controlplane.Principal
	// created bounds the session's whole life; lastSeen its idle time.
	created  time.Time
	lastSeen time.Time
	// flash is a one-shot message for the next page ("" means none);
	// flashErr tells a refusal from a success.
	flash    string
	flashErr bool
}

// maxSessions bounds the session table (about 300 bytes each).
const maxSessions = 10000

// sessions is the in-memory session table. Sessions live in this process
// only: a restart logs everyone out, and behind a load balancer each
// replica has its own (use sticky sessions, or log in per replica).
type sessions struct {
	idle, maxAge time.Duration
	now          func() time.Time
	// max bounds the table; maxSessions unless a test says otherwise.
	max int

	mu sync.Mutex
	// byKey maps session.key to the session; guarded by mu, as is every
	// field of the sessions in it.
	byKey map[string]*session
}

func newSessions(idle, maxAge time.Duration, now func() time.Time) *sessions {
	return &sessions{idle: idle, maxAge: maxAge, now: now, max: maxSessions, byKey: map[string]*session{}}
}

// randomToken returns 32 random bytes, base64url-encoded.
func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("dashboard: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func sessionKey(cookie string) string {
	sum := sha256.Sum256([]byte(cookie))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// create starts a session for p and returns the cookie value. Expired
// sessions are swept here, so the table only grows with live logins.
func (s *sessions) create(p controlplane.Principal) (cookie string, _ *session, _ error) {
	cookie, err := randomToken()
	if err != nil {
		return "", nil, err
	}
	csrf, err := randomToken()
	if err != nil {
		return "", nil, err
	}
	now := s.now()
	ss := &session{key: sessionKey(cookie), csrf: csrf, p: p, created: now, lastSeen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, o := range s.byKey {
		if s.expired(o, now) {
			delete(s.byKey, k)
		}
	}
	// Logins need a valid token, but a token holder looping on login must
	// not grow the table without bound: past the cap the session idle the
	// longest ends.
	if len(s.byKey) >= s.max {
		var oldest *session
		for _, o := range s.byKey {
			if oldest == nil || o.lastSeen.Before(oldest.lastSeen) {
				oldest = o
			}
		}
		delete(s.byKey, oldest.key)
	}
	s.byKey[ss.key] = ss
	return cookie, ss, nil
}

func (s *sessions) expired(ss *session, now time.Time) bool {
	return now.Sub(ss.lastSeen) >= s.idle || now.Sub(ss.created) >= s.maxAge
}

// get returns the live session of a cookie value and marks it used; an
// expired one is removed and not returned.
func (s *sessions) get(cookie string) (*session, bool) {
	if cookie == "" {
		return nil, false
	}
	key := sessionKey(cookie)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.byKey[key]
	if !ok {
		return nil, false
	}
	if s.expired(ss, now) {
		delete(s.byKey, key)
		return nil, false
	}
	ss.lastSeen = now
	return ss, true
}

// end removes a session.
func (s *sessions) end(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byKey, ss.key)
}

// len returns how many sessions are stored, live or not yet swept.
func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byKey)
}

// checkCSRF reports whether got is the session's CSRF token.
func (s *sessions) checkCSRF(ss *session, got string) bool {
	s.mu.Lock()
	want := ss.csrf
	s.mu.Unlock()
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// setFlash stores a one-shot message for the next page.
func (s *sessions) setFlash(ss *session, msg string, isErr bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss.flash, ss.flashErr = msg, isErr
}

// takeFlash returns and clears the one-shot message.
func (s *sessions) takeFlash(ss *session) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg, isErr := ss.flash, ss.flashErr
	ss.flash, ss.flashErr = "", false
	return msg, isErr
}
