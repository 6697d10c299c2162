package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/internal/atomicfile"
	"github.com/certagent/certagent/internal/buildinfo"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
)

// Device check-ins (DESIGN.md §8): after a pass that changed what the
// device holds, and at least once a CheckInInterval, the agent reports per
// root, per store (per user for nss) whether the root is trusted, so the
// control plane can tell an admin which devices a new root would break.
// The check-in runs in its own goroutine after the pass: it never delays
// an install, and its failure is a warning in status, never a failed sync.

// Check-in timing.
const (
	// CheckInInterval is the longest the agent goes without checking in
	// while nothing changes, and how long it waits after a refusal.
	CheckInInterval = 24 * time.Hour
	// CheckInRetry is how long it waits after a failed check-in (network,
	// 5xx, 429) before trying again.
	CheckInRetry = 15 * time.Minute
	// checkInTimeout bounds one check-in request.
	checkInTimeout = 30 * time.Second
)

// Check-in statuses in the snapshot.
const (
	CheckInAccepted = "accepted"
	CheckInRefused  = "refused" // 401/403: the token or the device secret
	CheckInFailed   = "failed"  // no valid answer
	// CheckInUnsupported: the control plane has no check-in endpoint
	// (404, e.g. api.cloudflare.com); not a problem, not retried often.
	CheckInUnsupported = "unsupported"
)

// Files in state_dir, both 0600: the device id is not a secret, but there
// is no reason for any user to read or replace it.
const (
	deviceIDFile     = "device_id"
	deviceSecretFile = "device_secret"
)

// CheckInState is the agent's side of check-ins, for `certagent status`.
type CheckInState struct {
	DeviceID string `json:"device_id,omitempty"`
	// Status is accepted, refused, failed or unsupported; "" before the
	// first attempt.
	Status string `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
	// LastAttempt is the last check-in tried; LastAccepted the last one
	// the control plane accepted.
	LastAttempt  time.Time `json:"last_attempt,omitzero"`
	LastAccepted time.Time `json:"last_accepted,omitzero"`
	// ReportHash identifies the last accepted report's content.
	ReportHash string `json:"report_hash,omitempty"`
}

// CheckInner is the optional Source extension that checks in.
// ClientSource implements it; a Source without it never checks in.
type CheckInner interface {
	CheckIn(ctx context.Context, deviceID, secret string, in api.CheckIn) (*api.CheckInResult, error)
}

// CheckIn sends a check-in through the same client (and so the same
// pinned, redirect-refusing transport) as the certificate list.
func (s ClientSource) CheckIn(ctx context.Context, deviceID, secret string, in api.CheckIn) (*api.CheckInResult, error) {
	return s.Client.CheckIn(ctx, deviceID, secret, in)
}

// DeviceIdentity is the device id and secret kept in state_dir.
type DeviceIdentity struct {
	ID string
	// Secret is "" until the control plane issued one.
	Secret string
}

// errNoDeviceID means state_dir holds no usable device id.
var errNoDeviceID = errors.New("agent: no device id")

// LoadDeviceIdentity reads the device id and secret from stateDir, making
// and storing (atomically, 0600) an id if there is none or it is damaged.
func LoadDeviceIdentity(stateDir string) (DeviceIdentity, error) {
	id, err := ReadDeviceIdentity(stateDir)
	if errors.Is(err, errNoDeviceID) {
		err = id.renew(stateDir)
	}
	return id, err
}

// ReadDeviceIdentity reads the device id and secret from stateDir;
// errNoDeviceID when there is no usable id.
func ReadDeviceIdentity(stateDir string) (DeviceIdentity, error) {
	var id DeviceIdentity
	b, err := os.ReadFile(filepath.Join(stateDir, deviceIDFile))
	switch {
	case err == nil:
		if t := strings.TrimSpace(string(b)); len(t) == 36 {
			if u, perr := uuid.Parse(t); perr == nil {
				id.ID = u.String()
			}
		}
	case !errors.Is(err, os.ErrNotExist):
		return id, fmt.Errorf("agent: read device id: %w", err)
	}
	if id.ID == "" {
		return id, errNoDeviceID
	}
	s, err := os.ReadFile(filepath.Join(stateDir, deviceSecretFile))
	switch {
	case err == nil:
		id.Secret = strings.TrimSpace(string(s))
	case !errors.Is(err, os.ErrNotExist):
		return id, fmt.Errorf("agent: read device secret: %w", err)
	}
	return id, nil
}

// renew makes a new device id (and forgets the secret).
func (id *DeviceIdentity) renew(stateDir string) error {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return fmt.Errorf("agent: state dir: %w", err)
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return fmt.Errorf("agent: device id: %w", err)
	}
	u, err := uuid.FromBytes(raw[:])
	if err != nil {
		return fmt.Errorf("agent: device id: %w", err)
	}
	u[6] = (u[6] & 0x0f) | 0x40 // version 4
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 4122 variant
	if err := atomicfile.Remove(filepath.Join(stateDir, deviceSecretFile)); err != nil {
		return fmt.Errorf("agent: forget device secret: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(stateDir, deviceIDFile), []byte(u.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("agent: write device id: %w", err)
	}
	id.ID, id.Secret = u.String(), ""
	return nil
}

// saveSecret keeps the secret the control plane issued.
func (id *DeviceIdentity) saveSecret(stateDir, secret string) error {
	if err := atomicfile.Write(filepath.Join(stateDir, deviceSecretFile), []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("agent: write device secret: %w", err)
	}
	id.Secret = secret
	return nil
}

// BuildCheckIn turns the snapshot's per-target results into a check-in
// body: for every desired root, one line per (store, user) with the worst
// state over that user's targets (a user with a Chrome and a Firefox
// profile is ready only when both hold the root). Every text is clipped
// to what certplane accepts (api.MaxCheckInField, api.MaxCheckInDetail).
func BuildCheckIn(s Snapshot, hostname, osVersion string) api.CheckIn {
	type key struct {
		fp    trust.Fingerprint
		store string
		user  string
	}
	agg := map[key]*api.StoreState{}
	var order []key
	for _, r := range s.Results {
		if r.Op == trust.OpRemove {
			continue
		}
		k := key{r.FP, r.Store, r.Target.User}
		st, detail := targetState(r)
		cur, ok := agg[k]
		if !ok {
			agg[k] = &api.StoreState{Store: clip(r.Store, api.MaxCheckInField), User: clip(r.Target.User, api.MaxCheckInField), State: st, Detail: detail}
			order = append(order, k)
			continue
		}
		if stateRank(st) > stateRank(cur.State) {
			cur.State, cur.Detail = st, detail
		}
	}
	in := api.CheckIn{
		Hostname: clip(hostname, api.MaxCheckInField), OS: runtime.GOOS, OSVersion: clip(osVersion, api.MaxCheckInField),
		AgentVersion: clip(buildinfo.Version, api.MaxCheckInField),
		SyncedAt:     api.Time{Time: s.LastPass}, Roots: []api.RootState{},
	}
	for _, d := range s.Desired {
		root := api.RootState{Fingerprint: d.FP.String(), Stores: []api.StoreState{}}
		for _, k := range order {
			if k.fp == d.FP {
				root.Stores = append(root.Stores, *agg[k])
			}
		}
		sort.Slice(root.Stores, func(i, j int) bool {
			if root.Stores[i].Store != root.Stores[j].Store {
				return root.Stores[i].Store < root.Stores[j].Store
			}
			return root.Stores[i].User < root.Stores[j].User
		})
		in.Roots = append(in.Roots, root)
	}
	return in
}

// targetState maps one per-target result to a reported state.
func targetState(r TargetResult) (state, detail string) {
	switch {
	case r.Status == trust.StatusOK:
		if strings.HasPrefix(r.Store, "dir:") || strings.HasPrefix(r.Store, "bundle:") {
			// A file for consumers to read: placed, with no trust step of
			// its own to confirm.
			return api.StateInstalled, ""
		}
		return api.StateTrusted, ""
	case r.Status == trust.StatusSkipped && strings.Contains(r.Reason, "trust pending"):
		return api.StateTrustPending, clip(r.Reason, api.MaxCheckInDetail)
	case r.Status == trust.StatusSkipped:
		return api.StateFailed, clip("skipped: "+r.Reason, api.MaxCheckInDetail)
	default:
		d := r.Error
		if d == "" {
			d = r.Reason
		}
		return api.StateFailed, clip(d, api.MaxCheckInDetail)
	}
}

// clip makes s text certplane accepts in a check-in field of max bytes:
// valid UTF-8, control characters as spaces, cut at a character boundary.
// Longer text would have the whole check-in refused, every time.
func clip(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// stateRank orders states from best to worst.
func stateRank(s string) int {
	switch s {
	case api.StateTrusted:
		return 0
	case api.StateInstalled:
		return 1
	case api.StateTrustPending:
		return 2
	}
	return 3
}

// reportHash identifies a check-in's content; the sync time is left out,
// so an unchanged device has an unchanged hash.
func reportHash(in api.CheckIn) string {
	in.SyncedAt = api.Time{}
	b, _ := json.Marshal(in)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// CheckInDue reports whether a check-in with content hash is due at now.
func CheckInDue(st CheckInState, hash string, now time.Time) bool {
	switch st.Status {
	case CheckInAccepted:
		return hash != st.ReportHash || now.Sub(st.LastAccepted) >= CheckInInterval
	case CheckInFailed:
		return now.Sub(st.LastAttempt) >= CheckInRetry
	case CheckInRefused, CheckInUnsupported:
		return now.Sub(st.LastAttempt) >= CheckInInterval
	}
	return true
}

// ensureIdentity makes the device id on the first pass that could check
// in, before the pass's status is written.
func (a *Agent) ensureIdentity(cfg *Config) {
	a.mu.Lock()
	_, can := a.source.(CheckInner)
	have := a.identity.ID != ""
	a.mu.Unlock()
	if !can || have {
		return
	}
	id, err := LoadDeviceIdentity(cfg.StateDir)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.log.Warn("no device id, cannot check in", "error", err)
		a.snap.CheckIn.Status, a.snap.CheckIn.Error = CheckInFailed, err.Error()
		return
	}
	a.identity = id
	a.snap.CheckIn.DeviceID = id.ID
}

// checkInDueByClock reports whether a check-in is due at now with the
// content of the last one: on a pass that changed nothing it reports, only
// the clock can make one due, and building the report (hostname, OS
// version) is not worth doing to find out it is not.
func (a *Agent) checkInDueByClock(now time.Time) bool {
	a.mu.Lock()
	st := a.snap.CheckIn
	a.mu.Unlock()
	return CheckInDue(st, st.ReportHash, now)
}

// maybeCheckIn starts a check-in in the background when one is due and
// none is running. It never blocks.
func (a *Agent) maybeCheckIn() {
	a.mu.Lock()
	src, ok := a.source.(CheckInner)
	if ok && !offersCheckIn(a.cfg.ControlPlaneURL) {
		// Cloudflare's API has no check-in: asking would only earn a
		// refusal (and a warning) every day.
		ok = false
		a.snap.CheckIn.Status, a.snap.CheckIn.Error = CheckInUnsupported, "api.cloudflare.com has no device check-in (a certplane extension)"
	}
	if !ok || a.identity.ID == "" || a.checkInRunning {
		a.mu.Unlock()
		return
	}
	snap := a.snap
	cfg := a.cfg
	st := a.snap.CheckIn
	a.mu.Unlock()
	in := BuildCheckIn(snap, a.hostname(), platform.OSVersion())
	hash := reportHash(in)
	if !CheckInDue(st, hash, a.deps.Now()) {
		return
	}
	a.mu.Lock()
	if a.checkInRunning {
		a.mu.Unlock()
		return
	}
	a.checkInRunning = true
	a.checkIns.Add(1)
	a.mu.Unlock()
	go func() {
		defer a.checkIns.Done()
		a.checkIn(src, cfg, in, hash)
	}()
}

// WaitCheckIn waits for a running check-in to finish (tests, shutdown).
func (a *Agent) WaitCheckIn() { a.checkIns.Wait() }

// Close waits for a running check-in (at most its timeout) and writes the
// status file with its outcome: what a one-shot `certagent sync` does
// after printing its report, so the install is never what waits.
func (a *Agent) Close() {
	a.checkIns.Wait()
	a.persistSnapshot(true)
}

func (a *Agent) hostname() string {
	h, err := a.deps.Hostname()
	if err != nil {
		return ""
	}
	return h
}

// checkIn sends one check-in and records the outcome.
func (a *Agent) checkIn(src CheckInner, cfg *Config, in api.CheckIn, hash string) {
	ctx, cancel := context.WithTimeout(context.Background(), checkInTimeout)
	defer cancel()
	a.mu.Lock()
	id := a.identity
	a.mu.Unlock()
	res, err := src.CheckIn(ctx, id.ID, id.Secret, in)
	now := a.deps.Now().UTC()
	var saveErr error
	if err == nil && res.DeviceSecret != "" {
		saveErr = id.saveSecret(cfg.StateDir, res.DeviceSecret)
	}
	renewed := false
	if err != nil && id.Secret == "" && apiCode(err) == codeDeviceSecret {
		// Someone registered this id first without us ever receiving a
		// secret: a machine cloned from an image made after our first
		// start. Become a device of our own.
		if rerr := id.renew(cfg.StateDir); rerr == nil {
			renewed = true
		}
	}
	// The outcome reaches status.json with the next pass's write (or
	// shutdown's); this goroutine writes no file but the secret.
	a.mu.Lock()
	defer a.mu.Unlock()
	a.checkInRunning = false
	a.identity = id
	st := &a.snap.CheckIn
	st.DeviceID, st.LastAttempt = id.ID, now
	switch {
	case err == nil && saveErr != nil:
		st.Status, st.Error = CheckInFailed, saveErr.Error()
		a.log.Warn("check-in accepted but the device secret could not be kept", "error", saveErr)
	case err == nil:
		st.Status, st.Error, st.LastAccepted, st.ReportHash = CheckInAccepted, "", now, hash
		a.log.Debug("checked in", "device_id", id.ID)
	case renewed:
		st.Status, st.Error = "", "device id was taken by another machine; made a new one: "+id.ID
		a.log.Warn("device id taken by another machine, made a new one", "device_id", id.ID)
	case api.StatusCode(err) == 404 || apiHasCode(err, codeNoRoute):
		st.Status, st.Error = CheckInUnsupported, err.Error()
	case api.IsAuth(err):
		st.Status, st.Error = CheckInRefused, err.Error()
		a.log.Warn("control plane refused the check-in", "error", err)
	default:
		st.Status, st.Error = CheckInFailed, err.Error()
		a.log.Warn("check-in failed", "error", err)
	}
}

// codeDeviceSecret is certplane's error code for a check-in without the
// device's secret.
const codeDeviceSecret = 1201

// codeNoRoute is the v4 API's "no route for that URI" code.
const codeNoRoute = 7000

// offersCheckIn reports whether the control plane at base may serve
// check-ins: anything but Cloudflare's own API.
func offersCheckIn(base string) bool {
	u, err := url.Parse(base)
	return err != nil || !strings.EqualFold(u.Hostname(), "api.cloudflare.com")
}

// apiHasCode reports whether any envelope error of err has code.
func apiHasCode(err error, code int) bool {
	var ae *api.Error
	if errors.As(err, &ae) {
		for _, m := range ae.Errors {
			if m.Code == code {
				return true
			}
		}
	}
	return false
}

// apiCode returns the first envelope error code of err, or 0.
func apiCode(err error) int {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Code()
	}
	return 0
}
