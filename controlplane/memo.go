package controlplane

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane/storage"
)

// memo is what a Service keeps in memory from the database so that an
// up-to-date agent's poll (a 304) reads nothing from it: token
// verifications, account revisions and, per account, the list body of its
// current revision. Tokens and revisions are served from memory only
// while the backend's change feed is live (storage.Follower), which is
// what makes a revocation or another replica's change reach this process
// before it could serve a stale answer; without a feed (a backend that
// has none, a CLI command) every request reads the database as before.
//
// Only what the database holds is kept: a token's id, the SHA-256 of its
// secret and its principal, never the secret (the hashed-at-rest rule
// holds in memory too).
type memo struct {
	// live reports whether the feed delivers every change.
	live atomic.Bool
	// stamp, when the backend is a storage.Stamper, tells whether another
	// process committed since stamped was read; nil otherwise.
	stamp   func() (uint64, bool)
	stamped atomic.Uint64

	// mu guards the fields below it.
	mu sync.RWMutex
	// gen is bumped by every invalidation, so a database read that
	// started before one is not stored after it.
	gen    uint64
	tokens map[string]memoToken
	revs   map[string]int64
	// slots hold the list views; they are keyed by revision, so they stay
	// valid across invalidations.
	slots map[string]*viewSlot
}

// memoLimit bounds the token and revision maps; past it they start again
// empty (a fleet has few tokens and accounts; a flood of distinct ones
// only costs database reads, as before).
const memoLimit = 100_000

type memoToken struct {
	hash [sha256.Size]byte
	p    Principal
}

// viewSlot holds one account's list view.
type viewSlot struct {
	// load serialises loads, so a wake-up of thousands of waiters builds
	// the body once.
	load sync.Mutex
	view atomic.Pointer[listView]
}

// listView is an account's certificate list at one revision, as sent.
type listView struct {
	rev int64
	// vis identifies what agents act on: the available certificates and
	// the one in use. Two revisions with the same vis differ only in
	// things no agent installs or removes (pending states, inactive
	// certificates), so a long-poll is not woken between them.
	vis  uint32
	etag string
	// body is the whole envelope, shared read-only by every response.
	body []byte
}

func newMemo(b storage.Backend) *memo {
	m := &memo{tokens: map[string]memoToken{}, revs: map[string]int64{}, slots: map[string]*viewSlot{}}
	if st, ok := b.(storage.Stamper); ok {
		m.stamp = st.Stamp
	}
	return m
}

// usable reports whether memory may answer now: the feed is live and,
// with a Stamper, nobody else committed since the last look (if someone
// did, everything is forgotten first and the answer is no).
func (m *memo) usable() bool {
	if !m.live.Load() {
		return false
	}
	if m.stamp == nil {
		return true
	}
	st, ok := m.stamp()
	if !ok {
		return false
	}
	if st == m.stamped.Load() {
		return true
	}
	m.mu.Lock()
	m.gen++
	clear(m.tokens)
	clear(m.revs)
	m.stamped.Store(st)
	m.mu.Unlock()
	return false
}

func (m *memo) generation() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.gen
}

// token returns a cached verification of the token id.
func (m *memo) token(id string) (memoToken, bool) {
	if !m.usable() {
		return memoToken{}, false
	}
	m.mu.RLock()
	t, ok := m.tokens[id]
	m.mu.RUnlock()
	return t, ok
}

// putToken caches a verification read from the database when gen (taken
// before the read) is still current.
func (m *memo) putToken(gen uint64, id string, hash []byte, p Principal) {
	if !m.live.Load() || len(hash) != sha256.Size {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gen != gen || !m.live.Load() {
		return
	}
	if len(m.tokens) >= memoLimit {
		clear(m.tokens)
	}
	t := memoToken{p: p}
	copy(t.hash[:], hash)
	m.tokens[id] = t
}

// revoked forgets the token id; no request that starts afterwards is
// answered from an older read.
func (m *memo) revoked(id string) {
	m.mu.Lock()
	m.gen++
	delete(m.tokens, id)
	m.mu.Unlock()
}

// reset forgets every token and revision.
func (m *memo) reset(live bool) {
	m.mu.Lock()
	m.gen++
	clear(m.tokens)
	clear(m.revs)
	m.live.Store(live)
	m.mu.Unlock()
}

func (m *memo) revision(accountID string) (int64, bool) {
	if !m.usable() {
		return 0, false
	}
	m.mu.RLock()
	r, ok := m.revs[accountID]
	m.mu.RUnlock()
	return r, ok
}

// putRevision records that the account was at rev (revisions only grow).
// gen is the generation the read started in, or 0 for a change
// notification, which is always current.
func (m *memo) putRevision(gen uint64, accountID string, rev int64, fromRead bool) {
	if !m.live.Load() {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if fromRead && m.gen != gen {
		return
	}
	if cur, ok := m.revs[accountID]; ok && cur >= rev {
		return
	}
	if len(m.revs) >= memoLimit {
		clear(m.revs)
	}
	m.revs[accountID] = rev
}

func (m *memo) slot(accountID string) *viewSlot {
	m.mu.RLock()
	s := m.slots[accountID]
	m.mu.RUnlock()
	if s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s = m.slots[accountID]; s == nil {
		if len(m.slots) >= memoLimit {
			clear(m.slots)
		}
		s = &viewSlot{}
		m.slots[accountID] = s
	}
	return s
}

// feed is the Service's storage.Feed.
type feed struct{ s *Service }

func (f feed) Changed(accountID string, rev int64) { f.s.changed(accountID, rev) }

func (f feed) Revoked(tokenID string) { f.s.memo.revoked(tokenID) }

func (f feed) Reset(live bool) {
	f.s.memo.reset(live)
	f.s.deployer.Kick()
	// Changes may have been missed: every change waiter looks again.
	f.s.changes.NotifyAll()
	// Any account with held requests may have changed meanwhile: rebuild
	// its list, which wakes them if what agents act on moved.
	for _, id := range f.s.hub.Accounts() {
		f.s.refresh(id)
	}
}

// Follow runs the backend's change feed until ctx ends, if it has one
// (storage.Follower); while it is live, tokens and revisions are served
// from memory. Run calls it; it returns nil at once without a feed.
func (s *Service) Follow(ctx context.Context) error {
	fl, ok := s.store.Backend().(storage.Follower)
	if !ok {
		return nil
	}
	return fl.Follow(ctx, feed{s}, s.log.Named("follow"))
}

// Live reports whether the change feed is live, so verifications and
// revisions come from memory.
func (s *Service) Live() bool { return s.memo.live.Load() }

// revision returns the account's revision, from memory when the feed is
// live and it is known.
func (s *Service) revision(ctx context.Context, accountID string) (int64, error) {
	if r, ok := s.memo.revision(accountID); ok {
		return r, nil
	}
	gen := s.memo.generation()
	r, err := s.store.Revision(ctx, accountID)
	if err != nil {
		return 0, err
	}
	s.memo.putRevision(gen, accountID, r, true)
	return r, nil
}

// view returns the account's list view at its current revision, building
// it (once, however many requests ask) when the revision moved.
func (s *Service) view(ctx context.Context, accountID string) (*listView, error) {
	rev, err := s.revision(ctx, accountID)
	if err != nil {
		return nil, err
	}
	slot := s.memo.slot(accountID)
	if v := slot.view.Load(); v != nil && v.rev >= rev {
		return v, nil
	}
	slot.load.Lock()
	defer slot.load.Unlock()
	prev := slot.view.Load()
	if prev != nil && prev.rev >= rev {
		return prev, nil
	}
	gen := s.memo.generation()
	certs, rev, err := s.store.List(ctx, accountID)
	if err != nil {
		return nil, err
	}
	s.memo.putRevision(gen, accountID, rev, true)
	v, err := buildView(accountID, rev, certs)
	if err != nil {
		return nil, err
	}
	slot.view.Store(v)
	if prev != nil && prev.vis != v.vis {
		// What agents act on changed: wake the held requests (they each
		// take this view; none reads the database).
		s.hub.Notify(accountID)
	}
	return v, nil
}

// buildView renders the list once.
func buildView(accountID string, rev int64, certs []storage.Certificate) (*listView, error) {
	out := make([]api.Certificate, len(certs))
	h := sha256.New()
	for i, c := range certs {
		out[i] = APICertificate(c)
		if c.Status == api.StatusAvailable {
			h.Write([]byte(c.ID))
			h.Write([]byte(c.Fingerprint))
			if c.InUse {
				h.Write([]byte("in-use"))
			}
			h.Write([]byte{0})
		}
	}
	raw, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("controlplane: encode list: %w", err)
	}
	vis := binary.BigEndian.Uint32(h.Sum(nil))
	// Spliced rather than marshalled through api.Envelope: a RawMessage
	// field is re-validated and compacted byte by byte.
	b := make([]byte, 0, len(raw)+64)
	b = append(b, `{"success":true,"errors":[],"messages":[],"result":`...)
	b = append(b, raw...)
	b = append(b, "}\n"...)
	return &listView{rev: rev, vis: vis, etag: ListETag(accountID, rev, vis), body: b}, nil
}

// ListETag is the strong entity tag of an account's certificate list at a
// revision: "ACCOUNT8-REVISION-VIS", where the account prefix keeps tags of
// different accounts apart and VIS (8 hex digits) identifies what agents
// act on in the list (listView.vis), so a held long-poll can tell a change
// worth answering from one that is not.
func ListETag(accountID string, revision int64, vis uint32) string {
	prefix := accountID
	if len(prefix) > 8 {
		prefix = prefix[:8]
	}
	return `"` + prefix + "-" + strconv.FormatInt(revision, 10) + "-" + fmt.Sprintf("%08x", vis) + `"`
}

// clientTag is one entity tag of an If-None-Match header.
type clientTag struct {
	// tag is the tag as sent, without W/.
	tag string
	// any is "*".
	any bool
	rev int64
	// vis is valid when hasVis (tags of older servers lack it).
	vis    uint32
	hasVis bool
}

// parseListTags returns the tags of an If-None-Match header that can be
// this account's list tags (or "*"); others are ignored.
func parseListTags(header, accountID string) []clientTag {
	prefix := accountID
	if len(prefix) > 8 {
		prefix = prefix[:8]
	}
	var out []clientTag
	for part := range strings.SplitSeq(header, ",") {
		part = strings.TrimPrefix(strings.TrimSpace(part), "W/")
		if part == "*" {
			out = append(out, clientTag{tag: part, any: true})
			continue
		}
		inner, ok := strings.CutPrefix(part, `"`+prefix+"-")
		if !ok {
			continue
		}
		inner, ok = strings.CutSuffix(inner, `"`)
		if !ok {
			continue
		}
		revs, visHex, hasVis := strings.Cut(inner, "-")
		rev, err := strconv.ParseInt(revs, 10, 64)
		if err != nil || rev < 0 {
			continue
		}
		t := clientTag{tag: part, rev: rev}
		if hasVis {
			v, err := strconv.ParseUint(visHex, 16, 32)
			if err != nil || len(visHex) != 8 {
				continue
			}
			t.vis, t.hasVis = uint32(v), true
		}
		out = append(out, t)
	}
	return out
}
