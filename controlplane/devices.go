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
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane/storage"
)

// Check-in limits. A real report holds at most 15 roots (10 available + 5
// custom, plus a few retired ones) in a few dozen (store, user) targets;
// these bounds are far above that and far below what would hurt.
const (
	// MaxCheckInBytes bounds a check-in body.
	MaxCheckInBytes = 256 << 10
	// MaxCheckInRoots bounds the roots of one check-in.
	MaxCheckInRoots = 64
	// MaxCheckInTargets bounds the (store, user) lines of one root.
	MaxCheckInTargets = 256
	// maxField bounds hostname, versions, store and user names.
	maxField = api.MaxCheckInField
	// maxDetail bounds a store line's detail.
	maxDetail = api.MaxCheckInDetail
)

// CheckInBurst and CheckInRefill are the per-device check-in rate limit:
// a burst of CheckInBurst, then one per CheckInRefill. An agent checks in
// after a pass that changed something and once a day, so a device beyond
// this is broken or hostile.
const (
	CheckInBurst  = 10
	CheckInRefill = time.Minute
)

// RegistrationBurst and RegistrationRefill limit the new devices one
// token registers: a burst of RegistrationBurst (a fleet enrolling at
// once), then one per RegistrationRefill (10,000 an hour). A device token
// sits on every enrolled device; one that leaked cannot flood the account
// with devices, which would also skew its readiness. A refused agent
// retries on its own (every 15 minutes).
const (
	RegistrationBurst  = 10_000
	RegistrationRefill = 360 * time.Millisecond
)

// registrationRetry is the Retry-After of a refused registration: a
// minute frees about 170 registrations.
const registrationRetry = time.Minute

var (
	errCheckInRate      = errors.New("controlplane: check-in rate limit")
	errRegistrationRate = errors.New("controlplane: registration rate limit")
)

// deviceSecretLen is the length of a device secret: 32 random bytes,
// base64url without padding.
const deviceSecretLen = 43

// rateLimiter is a token bucket per key, in memory (per replica: a
// device's check-ins usually land on one replica, and the limit only has
// to stop floods, not count exactly).
type rateLimiter struct {
	burst  float64
	refill time.Duration
	max    int
	mu     sync.Mutex
	// buckets is guarded by mu.
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newRateLimiter(burst int, refill time.Duration) *rateLimiter {
	return &rateLimiter{burst: float64(burst), refill: refill, max: 200_000, buckets: map[string]*bucket{}}
}

// allow reports whether key may make one more request at now, and takes a
// token if so.
func (l *rateLimiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.max {
			l.prune(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	if el := now.Sub(b.at); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+float64(el)/float64(l.refill))
		b.at = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// prune drops full buckets (they behave exactly like absent ones), and if
// that is not enough, everything. Called with mu held.
func (l *rateLimiter) prune(now time.Time) {
	full := time.Duration(l.burst) * l.refill
	for k, b := range l.buckets {
		if now.Sub(b.at) >= full {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= l.max {
		l.buckets = map[string]*bucket{}
	}
}

// hashDeviceSecret returns what is stored of a device secret.
func hashDeviceSecret(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// ParseDeviceID returns the canonical (lower-case) form of a device id,
// which must be a UUID in its 36-character form.
func ParseDeviceID(id string) (string, error) {
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 {
		return "", fmt.Errorf("controlplane: device id %q: want a UUID (8-4-4-4-12 hex)", clip(id, 64))
	}
	return u.String(), nil
}

func clip(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "…"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

// checkText validates one free-text field of a check-in.
func checkText(pointer, v string, max int) error {
	if len(v) > max {
		return invalid(pointer, "%s is longer than %d bytes", strings.TrimPrefix(pointer, "/"), max)
	}
	if !utf8.ValidString(v) || strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return invalid(pointer, "%s contains control characters or invalid UTF-8", strings.TrimPrefix(pointer, "/"))
	}
	return nil
}

// ValidateCheckIn checks a check-in body and returns it as storage keeps
// it. Exported for the fuzz target.
func ValidateCheckIn(in api.CheckIn) ([]storage.RootReport, error) {
	for _, f := range []struct{ p, v string }{
		{"/hostname", in.Hostname}, {"/os_version", in.OSVersion}, {"/agent_version", in.AgentVersion},
	} {
		if err := checkText(f.p, f.v, maxField); err != nil {
			return nil, err
		}
	}
	switch in.OS {
	case "linux", "darwin", "windows":
	default:
		return nil, invalid("/os", "os must be linux, darwin or windows, got %q", clip(in.OS, 32))
	}
	if len(in.Roots) > MaxCheckInRoots {
		return nil, invalid("/roots", "at most %d roots, got %d", MaxCheckInRoots, len(in.Roots))
	}
	out := make([]storage.RootReport, 0, len(in.Roots))
	for i, r := range in.Roots {
		p := fmt.Sprintf("/roots/%d", i)
		fp := storage.NormalizeFingerprint(r.Fingerprint)
		if _, err := hex.DecodeString(fp); err != nil || len(fp) != 64 {
			return nil, invalid(p+"/fingerprint", "fingerprint must be the SHA-256 of the certificate in hex, got %q", clip(r.Fingerprint, 100))
		}
		if len(r.Stores) > MaxCheckInTargets {
			return nil, invalid(p+"/stores", "at most %d stores per root, got %d", MaxCheckInTargets, len(r.Stores))
		}
		rr := storage.RootReport{Fingerprint: r.Fingerprint, Stores: make([]storage.StoreState, 0, len(r.Stores))}
		for j, s := range r.Stores {
			sp := fmt.Sprintf("%s/stores/%d", p, j)
			if s.Store == "" {
				return nil, invalid(sp+"/store", "store is required")
			}
			if err := checkText(sp+"/store", s.Store, maxField); err != nil {
				return nil, err
			}
			if err := checkText(sp+"/user", s.User, maxField); err != nil {
				return nil, err
			}
			if err := checkText(sp+"/detail", s.Detail, maxDetail); err != nil {
				return nil, err
			}
			if !storage.ValidState(s.State) {
				return nil, invalid(sp+"/state", "state must be trusted, installed, trust_pending or failed, got %q", clip(s.State, 32))
			}
			rr.Stores = append(rr.Stores, storage.StoreState{Store: s.Store, User: s.User, State: s.State, Detail: s.Detail})
		}
		out = append(out, rr)
	}
	return out, nil
}

// CheckIn stores one device's report, sent with token tokenID. secret is
// the X-Device-Secret header: ignored for an id the account does not know
// (the device is registered and a new secret returned), required for a
// known one (storage.ErrDeviceSecret otherwise). A device over its rate
// limit gets errCheckInRate, a registration over its token's
// errRegistrationRate; in every refusal nothing is stored.
func (s *Service) CheckIn(ctx context.Context, accountID, tokenID, deviceID, secret string, in api.CheckIn) (api.CheckInResult, error) {
	roots, err := ValidateCheckIn(in)
	if err != nil {
		return api.CheckInResult{}, err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return api.CheckInResult{}, fmt.Errorf("controlplane: device secret: %w", err)
	}
	newSecret := base64.RawURLEncoding.EncodeToString(raw[:])
	key := accountID + "/" + deviceID
	verify := func(stored []byte) error {
		if len(secret) != deviceSecretLen || subtle.ConstantTimeCompare(hashDeviceSecret(secret), stored) != 1 {
			return storage.ErrDeviceSecret
		}
		// Counted only once the secret is right: nobody else can use up
		// a device's allowance.
		if !s.checkins.allow(key, s.store.Now()) {
			return errCheckInRate
		}
		return nil
	}
	d := storage.Device{
		ID: deviceID, AccountID: accountID, Hostname: in.Hostname, OS: in.OS, OSVersion: in.OSVersion,
		AgentVersion: in.AgentVersion, SyncedAt: in.SyncedAt.Time, Roots: roots,
	}
	register := func() error {
		if !s.registrations.allow(accountID+"/"+tokenID, s.store.Now()) {
			return errRegistrationRate
		}
		return nil
	}
	created, err := s.store.CheckIn(ctx, storage.CheckIn{Device: d, NewSecretHash: hashDeviceSecret(newSecret), Verify: verify, Register: register})
	if err != nil {
		return api.CheckInResult{}, err
	}
	out := api.CheckInResult{DeviceID: deviceID, LastSeen: api.Time{Time: s.store.Now()}}
	if created {
		s.checkins.allow(key, s.store.Now())
		out.DeviceSecret = newSecret
	}
	return out, nil
}

// SetDeviceSettings changes the fields of p that are set, after checking
// the result.
func (s *Service) SetDeviceSettings(ctx context.Context, accountID string, p api.DeviceSettingsPatch) (storage.DeviceSettings, error) {
	cur, err := s.store.Backend().DeviceSettings(ctx, accountID)
	if err != nil {
		return cur, err
	}
	if p.MinReadiness != nil {
		cur.MinReadiness = *p.MinReadiness
	}
	if p.DeviceActiveDays != nil {
		cur.DeviceActiveDays = *p.DeviceActiveDays
	}
	if err := cur.Validate(); err != nil {
		ptr := "/min_readiness"
		if strings.HasPrefix(err.Error(), "device_active_days") {
			ptr = "/device_active_days"
		}
		return cur, invalid(ptr, "%v", err)
	}
	if err := s.store.Backend().SetDeviceSettings(ctx, accountID, cur); err != nil {
		return cur, err
	}
	return cur, nil
}

// APIDevice is the wire form of a device; stale is judged against
// activeSince.
func APIDevice(d storage.Device, activeSince time.Time) api.Device {
	out := api.Device{
		ID: d.ID, Hostname: d.Hostname, OS: d.OS, OSVersion: d.OSVersion, AgentVersion: d.AgentVersion,
		SyncedAt: api.Time{Time: d.SyncedAt}, LastSeen: api.Time{Time: d.LastSeen}, CreatedAt: api.Time{Time: d.CreatedAt},
		Stale: d.LastSeen.Before(activeSince),
	}
	for _, r := range d.Roots {
		ar := api.RootState{Fingerprint: r.Fingerprint, Stores: make([]api.StoreState, len(r.Stores))}
		for i, st := range r.Stores {
			ar.Stores[i] = api.StoreState{Store: st.Store, User: st.User, State: st.State, Detail: st.Detail}
		}
		out.Roots = append(out.Roots, ar)
	}
	return out
}

// activeSince is the start of the account's active window.
func (s *Service) activeSince(set storage.DeviceSettings) time.Time {
	return s.store.Now().Add(-time.Duration(set.DeviceActiveDays) * storage.Day)
}

// Devices lists one page of the account's devices, most recently seen
// first; stale nil lists all.
func (s *Service) Devices(ctx context.Context, accountID string, stale *bool, page, perPage int) ([]api.Device, api.ResultInfo, error) {
	set, err := s.store.Backend().DeviceSettings(ctx, accountID)
	if err != nil {
		return nil, api.ResultInfo{}, err
	}
	since := s.activeSince(set)
	ds, total, err := s.store.Backend().Devices(ctx, storage.DeviceQuery{
		AccountID: accountID, ActiveSince: since, Stale: stale, Offset: (page - 1) * perPage, Limit: perPage,
	})
	if err != nil {
		return nil, api.ResultInfo{}, err
	}
	out := make([]api.Device, len(ds))
	for i, d := range ds {
		out[i] = APIDevice(d, since)
	}
	return out, api.ResultInfo{Page: page, PerPage: perPage, Count: len(out), TotalCount: total}, nil
}

// Device returns one device with its last report.
func (s *Service) Device(ctx context.Context, accountID, deviceID string) (api.Device, error) {
	set, err := s.store.Backend().DeviceSettings(ctx, accountID)
	if err != nil {
		return api.Device{}, err
	}
	d, err := s.store.Backend().Device(ctx, accountID, deviceID)
	if err != nil {
		return api.Device{}, err
	}
	return APIDevice(d, s.activeSince(set)), nil
}

// DeleteDevice forgets a device; its next check-in registers it afresh.
func (s *Service) DeleteDevice(ctx context.Context, accountID, deviceID string) (api.Device, error) {
	set, err := s.store.Backend().DeviceSettings(ctx, accountID)
	if err != nil {
		return api.Device{}, err
	}
	d, err := s.store.Backend().DeleteDevice(ctx, accountID, deviceID)
	if err != nil {
		return api.Device{}, err
	}
	return APIDevice(d, s.activeSince(set)), nil
}

// Readiness returns a certificate's readiness with one page of the
// devices not ready.
func (s *Service) Readiness(ctx context.Context, accountID, certID string, page, perPage int) (api.Readiness, error) {
	cert, rc, set, err := s.store.CertReadiness(ctx, accountID, certID, (page-1)*perPage, perPage)
	if err != nil {
		return api.Readiness{}, err
	}
	out := api.Readiness{
		CertificateID: cert.ID, Fingerprint: APICertificate(cert).Fingerprint,
		ActiveDevices: rc.Active, Ready: rc.Ready, Partial: rc.Partial, Missing: rc.Missing,
		StaleExcluded: rc.StaleExcluded, Ratio: rc.Ratio(), MinReadiness: set.MinReadiness,
		NotReady: make([]api.NotReadyDevice, len(rc.NotReady)),
	}
	for i, n := range rc.NotReady {
		out.NotReady[i] = api.NotReadyDevice{DeviceID: n.DeviceID, Hostname: n.Hostname, LastSeen: api.Time{Time: n.LastSeen}, Missing: n.Missing}
	}
	return out, nil
}

// PurgeStaleDevices deletes devices silent for storage.PurgeAfter.
func (s *Service) PurgeStaleDevices(ctx context.Context) (int, error) {
	n, err := s.store.PurgeStaleDevices(ctx)
	if err != nil {
		return 0, fmt.Errorf("controlplane: purge stale devices: %w", err)
	}
	return n, nil
}

// runPurger purges stale devices at start and every interval until ctx
// ends.
func (s *Service) runPurger(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := s.PurgeStaleDevices(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Error("purge stale devices failed", "error", err)
		} else if n > 0 {
			s.log.Info("purged stale devices", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Paging of device lists.
const (
	DefaultPerPage = 20
	MaxPerPage     = 1000
)

// paging reads ?page= and ?per_page=.
func paging(c *call) (page, perPage int, err error) {
	q := c.r.URL.Query()
	page, perPage = 1, DefaultPerPage
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1_000_000 {
			return 0, 0, invalid("", "page must be 1..1000000")
		}
		page = n
	}
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPerPage {
			return 0, 0, invalid("", "per_page must be 1..%d", MaxPerPage)
		}
		perPage = n
	}
	return page, perPage, nil
}

// paged is a list result with its result_info.
type paged struct {
	result any
	info   api.ResultInfo
}

func handleCheckIn(c *call) (any, error) {
	var in api.CheckIn
	if err := decodeBodyLimit(c, &in, false, MaxCheckInBytes); err != nil {
		return nil, err
	}
	res, err := c.s.CheckIn(c.r.Context(), c.account, c.p.TokenID, c.device, c.r.Header.Get(api.HeaderDeviceSecret), in)
	switch {
	case errors.Is(err, errCheckInRate):
		c.w.Header().Set("Retry-After", strconv.Itoa(int(CheckInRefill/time.Second)))
	case errors.Is(err, errRegistrationRate):
		c.w.Header().Set("Retry-After", strconv.Itoa(int(registrationRetry/time.Second)))
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func handleListDevices(c *call) (any, error) {
	page, perPage, err := paging(c)
	if err != nil {
		return nil, err
	}
	var stale *bool
	switch v := c.r.URL.Query().Get("stale"); v {
	case "":
	case "true", "false":
		b := v == "true"
		stale = &b
	default:
		return nil, invalid("", "stale must be true or false")
	}
	out, info, err := c.s.Devices(c.r.Context(), c.account, stale, page, perPage)
	if err != nil {
		return nil, err
	}
	return paged{result: out, info: info}, nil
}

func handleGetDevice(c *call) (any, error) {
	return c.s.Device(c.r.Context(), c.account, c.device)
}

func handleDeleteDevice(c *call) (any, error) {
	return c.s.DeleteDevice(c.r.Context(), c.account, c.device)
}

func handleReadiness(c *call) (any, error) {
	page, perPage, err := paging(c)
	if err != nil {
		return nil, err
	}
	return c.s.Readiness(c.r.Context(), c.account, c.cert, page, perPage)
}

func settingsResult(s storage.DeviceSettings) api.DeviceSettings {
	return api.DeviceSettings{MinReadiness: s.MinReadiness, DeviceActiveDays: s.DeviceActiveDays}
}

func handleGetSettings(c *call) (any, error) {
	s, err := c.s.Rules().Backend().DeviceSettings(c.r.Context(), c.account)
	if err != nil {
		return nil, err
	}
	return settingsResult(s), nil
}

func handlePatchSettings(c *call) (any, error) {
	var p api.DeviceSettingsPatch
	if err := decodeBody(c, &p, false); err != nil {
		return nil, err
	}
	s, err := c.s.SetDeviceSettings(c.r.Context(), c.account, p)
	if err != nil {
		return nil, err
	}
	return settingsResult(s), nil
}

// forceParam reads ?force= on the configuration routes.
func forceParam(c *call) (bool, error) {
	switch v := c.r.URL.Query().Get("force"); v {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	default:
		return false, invalid("", "force must be true or false, got %q", clip(v, 16))
	}
}

// requireDeviceWriter is the scope rule of the check-in route: a device
// or write token. A read token is refused with a message that says what
// agents need.
func requireDeviceWriter(p Principal) *apiError {
	if p.Scope == storage.ScopeDevice || p.Scope == storage.ScopeWrite {
		return nil
	}
	return newError(http.StatusForbidden, CodeScope, "the token's scope is %s; checking in needs a device token (certplane token create --scope device)", p.Scope)
}
