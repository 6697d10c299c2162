package storage

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Device errors.
var (
	// ErrDeviceSecret means a check-in for a known device did not carry
	// that device's secret.
	ErrDeviceSecret = errors.New("storage: wrong or missing device secret")
	// ErrNotReady is wrapped by the readiness guard's error (see
	// NotReadyError).
	ErrNotReady = errors.New("storage: the certificate is not ready on enough devices")
)

// Trust states a device reports per (root, store, user).
const (
	StateTrusted      = "trusted"       // installed and the store confirms trust
	StateInstalled    = "installed"     // installed; the store has no separate trust step
	StateTrustPending = "trust_pending" // installed, waiting for trust (a user's approval, a refresh)
	StateFailed       = "failed"        // not installed
)

// ValidState reports whether s is one of the four reported states.
func ValidState(s string) bool {
	switch s {
	case StateTrusted, StateInstalled, StateTrustPending, StateFailed:
		return true
	}
	return false
}

// Defaults of an account's device settings, and the purge age.
const (
	DefaultMinReadiness     = 0.95
	DefaultDeviceActiveDays = 7
	// MaxDeviceActiveDays bounds device_active_days: a device silent for
	// longer than the purge age no longer exists to be counted.
	MaxDeviceActiveDays = 90
	// PurgeAfter is how long a silent device's record is kept.
	PurgeAfter = 90 * 24 * time.Hour
	// Day is the unit of device_active_days.
	Day = 24 * time.Hour
)

// StoreState is one (root, store, user) line of a check-in.
type StoreState struct {
	Store string `json:"store"`
	// User is the local user for per-user stores (nss); "" otherwise.
	User   string `json:"user,omitempty"`
	State  string `json:"state"`
	Detail string `json:"detail,omitempty"`
}

// Target names the store and user as "store" or "store:user".
func (s StoreState) Target() string {
	if s.User == "" {
		return s.Store
	}
	return s.Store + ":" + s.User
}

// RootReport is what a device says about one root.
type RootReport struct {
	Fingerprint string       `json:"fingerprint"`
	Stores      []StoreState `json:"stores"`
}

// Device is one agent's last check-in.
type Device struct {
	ID        string
	AccountID string
	// SecretHash is SHA-256 of the device secret. Backends fill it only
	// for SaveDevice's verify function; reads leave it nil.
	SecretHash   []byte
	Hostname     string
	OS           string
	OSVersion    string
	AgentVersion string
	// SyncedAt is the agent's last completed pass, by its own clock.
	SyncedAt  time.Time
	LastSeen  time.Time
	CreatedAt time.Time
	// Roots are the reported roots that are certificates of the account
	// at check-in time; anything else the device sent is not kept.
	Roots []RootReport
}

// Readiness of one device for one root.
type Readiness int

// The three summaries. Numbers are stored; never renumber.
const (
	Missing Readiness = 0 // no store holds the root ready
	Partial Readiness = 1 // some stores do, some do not
	Ready   Readiness = 2 // every store the device reports holds it trusted or installed
)

func (r Readiness) String() string {
	switch r {
	case Ready:
		return "ready"
	case Partial:
		return "partial"
	}
	return "missing"
}

// DeviceRoot is the summary row of one device for one certificate of the
// account, written at check-in so readiness is an index range count, not a
// scan of every report.
type DeviceRoot struct {
	Fingerprint string
	State       Readiness
	// NotReady lists the targets ("store" or "store:user") not holding
	// the root ready; every one of them when the device lacks the root.
	NotReady []string
}

// Summarize returns the summary rows of a device for every fingerprint in
// known (the account's certificates): a root the device did not report, or
// reported with no store, is Missing.
func Summarize(roots []RootReport, known []string) []DeviceRoot {
	byFP := make(map[string]RootReport, len(roots))
	for _, r := range roots {
		byFP[r.Fingerprint] = r
	}
	out := make([]DeviceRoot, 0, len(known))
	for _, fp := range known {
		r, ok := byFP[fp]
		row := DeviceRoot{Fingerprint: fp, State: Missing, NotReady: []string{}}
		if !ok || len(r.Stores) == 0 {
			row.NotReady = append(row.NotReady, "*")
			out = append(out, row)
			continue
		}
		ready := 0
		for _, s := range r.Stores {
			if s.State == StateTrusted || s.State == StateInstalled {
				ready++
			} else {
				row.NotReady = append(row.NotReady, s.Target())
			}
		}
		switch {
		case ready == len(r.Stores):
			row.State = Ready
		case ready > 0:
			row.State = Partial
		}
		sort.Strings(row.NotReady)
		out = append(out, row)
	}
	return out
}

// DeviceQuery selects a page of an account's devices, most recently seen
// first.
type DeviceQuery struct {
	AccountID string
	// ActiveSince splits active (LastSeen at or after it) from stale.
	ActiveSince time.Time
	// Stale nil lists every device; true only stale ones; false only
	// active ones.
	Stale  *bool
	Offset int
	Limit  int
}

// ReadinessQuery asks for one root's readiness over an account's active
// devices.
type ReadinessQuery struct {
	AccountID   string
	Fingerprint string
	ActiveSince time.Time
	// Unsummarized is a time after which every device that checked in has
	// a summary row for the root (the certificate's creation, plus a
	// margin for a check-in that raced it). Devices last seen before it
	// may lack one and are listed as missing.
	Unsummarized time.Time
	// Offset and Limit page NotReady; Limit 0 lists none.
	Offset int
	Limit  int
}

// ReadinessCounts is one root's readiness over the active devices.
type ReadinessCounts struct {
	Active        int
	Ready         int
	Partial       int
	Missing       int
	StaleExcluded int
	// NotReady is one page of the active devices that are not ready:
	// partial ones and missing ones.
	NotReady []NotReadyDevice
}

// NotReadyDevice is one not-ready device in a readiness answer.
type NotReadyDevice struct {
	DeviceID string
	Hostname string
	LastSeen time.Time
	// Missing lists the targets not holding the root; ["*"] when the
	// device holds it nowhere or has not reported since it appeared.
	Missing []string
}

// DeviceSettings are an account's readiness settings.
type DeviceSettings struct {
	MinReadiness     float64
	DeviceActiveDays int
}

// DefaultDeviceSettings returns the settings of an account that never set
// any.
func DefaultDeviceSettings() DeviceSettings {
	return DeviceSettings{MinReadiness: DefaultMinReadiness, DeviceActiveDays: DefaultDeviceActiveDays}
}

// Validate reports what is wrong with s, naming the field.
func (s DeviceSettings) Validate() error {
	if s.MinReadiness < 0 || s.MinReadiness > 1 || s.MinReadiness != s.MinReadiness {
		return fmt.Errorf("min_readiness must be 0..1, got %v", s.MinReadiness)
	}
	if s.DeviceActiveDays < 1 || s.DeviceActiveDays > MaxDeviceActiveDays {
		return fmt.Errorf("device_active_days must be 1..%d, got %d", MaxDeviceActiveDays, s.DeviceActiveDays)
	}
	return nil
}

// DeviceBackend is the device half of a Backend. Device writes never bump
// the account's revision: agents' check-ins must not wake every agent's
// long-poll.
type DeviceBackend interface {
	// SaveDevice stores a check-in in one transaction: when the account
	// has no device d.ID, register is called and, unless it fails, the
	// device is created with d.SecretHash (created true); otherwise verify
	// is called with the stored hash. An error of either aborts with
	// nothing written. The device's summary rows are replaced by rows,
	// each stamped with d.LastSeen. ErrNotFound if the account is unknown.
	SaveDevice(ctx context.Context, d Device, rows []DeviceRoot, verify func(stored []byte) error, register func() error) (created bool, err error)
	// Device returns one device with its roots. ErrNotFound if unknown.
	Device(ctx context.Context, accountID, id string) (Device, error)
	// Devices returns one page (without roots) and the number of devices
	// the query matches.
	Devices(ctx context.Context, q DeviceQuery) ([]Device, int, error)
	// DeleteDevice removes a device and its rows and returns it (without
	// roots). ErrNotFound if unknown.
	DeleteDevice(ctx context.Context, accountID, id string) (Device, error)
	// Readiness counts q.Fingerprint's readiness and lists one page of
	// the devices not ready.
	Readiness(ctx context.Context, q ReadinessQuery) (ReadinessCounts, error)
	// PurgeDevices deletes every device of every account last seen before
	// before, and returns how many.
	PurgeDevices(ctx context.Context, before time.Time) (int, error)
	// DeviceSettings returns the account's settings (defaults if never
	// set). ErrNotFound if the account is unknown.
	DeviceSettings(ctx context.Context, accountID string) (DeviceSettings, error)
	// SetDeviceSettings stores them. ErrNotFound if the account is unknown.
	SetDeviceSettings(ctx context.Context, accountID string, s DeviceSettings) error
}

// CheckIn is one device's report as Rules takes it.
type CheckIn struct {
	Device Device
	// NewSecretHash is stored if the device is new.
	NewSecretHash []byte
	// Verify checks the stored secret hash of a known device.
	Verify func(stored []byte) error
	// Register, when set, is asked before a new device is stored; its
	// error refuses the check-in (a registration limit).
	Register func() error
}

// CheckIn stores a device's report. Only roots that are certificates of
// the account are kept (matched by fingerprint, case and colons ignored);
// LastSeen and CreatedAt come from the store's clock. It reports whether
// the device was new.
func (s *Rules) CheckIn(ctx context.Context, in CheckIn) (bool, error) {
	now := s.Now()
	certs, _, err := s.List(ctx, in.Device.AccountID)
	if err != nil {
		return false, err
	}
	canon := make(map[string]string, len(certs))
	known := make([]string, 0, len(certs))
	for _, c := range certs {
		canon[NormalizeFingerprint(c.Fingerprint)] = c.Fingerprint
		known = append(known, c.Fingerprint)
	}
	d := in.Device
	d.LastSeen, d.CreatedAt, d.SecretHash = now, now, in.NewSecretHash
	kept := make([]RootReport, 0, len(d.Roots))
	seen := map[string]bool{}
	for _, r := range d.Roots {
		fp, ok := canon[NormalizeFingerprint(r.Fingerprint)]
		if !ok || seen[fp] {
			continue
		}
		seen[fp] = true
		r.Fingerprint = fp
		kept = append(kept, r)
	}
	d.Roots = kept
	register := in.Register
	if register == nil {
		register = func() error { return nil }
	}
	created, err := s.b.SaveDevice(ctx, d, Summarize(kept, known), in.Verify, register)
	if err != nil {
		return false, err
	}
	return created, nil
}

// NormalizeFingerprint returns fp in upper-case hex without separators,
// for comparing the forms agents and stores use.
func NormalizeFingerprint(fp string) string {
	return strings.ToUpper(strings.NewReplacer(":", "", " ", "").Replace(fp))
}

// UnsummarizedMargin is how far past a certificate's creation a device
// may still lack its summary row: a check-in that read the certificate
// list just before the certificate was committed.
const UnsummarizedMargin = time.Minute

// CertReadiness computes one certificate's readiness with the account's
// settings, listing limit not-ready devices from offset.
func (s *Rules) CertReadiness(ctx context.Context, accountID, certID string, offset, limit int) (Certificate, ReadinessCounts, DeviceSettings, error) {
	cert, err := s.b.Certificate(ctx, accountID, certID)
	if err != nil {
		return Certificate{}, ReadinessCounts{}, DeviceSettings{}, err
	}
	set, err := s.b.DeviceSettings(ctx, accountID)
	if err != nil {
		return Certificate{}, ReadinessCounts{}, DeviceSettings{}, err
	}
	rc, err := s.b.Readiness(ctx, ReadinessQuery{
		AccountID: accountID, Fingerprint: cert.Fingerprint,
		ActiveSince:  s.Now().Add(-time.Duration(set.DeviceActiveDays) * Day),
		Unsummarized: cert.CreatedAt.Add(UnsummarizedMargin),
		Offset:       offset, Limit: limit,
	})
	if err != nil {
		return Certificate{}, ReadinessCounts{}, DeviceSettings{}, err
	}
	return cert, rc, set, nil
}

// Ratio is ready over active; 1 when there are no active devices.
func (r ReadinessCounts) Ratio() float64 {
	if r.Active == 0 {
		return 1
	}
	return float64(r.Ready) / float64(r.Active)
}

// NotReadyError is the readiness guard's refusal.
type NotReadyError struct {
	CertID       string
	Ready        int
	Active       int
	Ratio        float64
	MinReadiness float64
}

func (e *NotReadyError) Error() string {
	return fmt.Sprintf("ready on %d of %d active devices (%s), below the minimum of %s",
		e.Ready, e.Active, Percent(e.Ratio), Percent(e.MinReadiness))
}

func (e *NotReadyError) Unwrap() error { return ErrNotReady }

// Percent formats a ratio as a percentage with at most one decimal, never
// rounding a ratio below 1 up to "100%".
func Percent(r float64) string {
	p := r * 100
	// Truncate, not round (the epsilon absorbs 0.57*100 = 56.99999…).
	s := fmt.Sprintf("%.1f", float64(int64(p*10+1e-6))/10)
	s = strings.TrimSuffix(s, ".0")
	return s + "%"
}

// CheckReady returns a *NotReadyError when turning certID on would break
// devices: its ratio is below the account's min_readiness and the account
// has active devices.
func (s *Rules) CheckReady(ctx context.Context, accountID, certID string) error {
	_, rc, set, err := s.CertReadiness(ctx, accountID, certID, 0, 0)
	if err != nil {
		return err
	}
	if rc.Active == 0 || rc.Ratio() >= set.MinReadiness {
		return nil
	}
	return &NotReadyError{CertID: certID, Ready: rc.Ready, Active: rc.Active, Ratio: rc.Ratio(), MinReadiness: set.MinReadiness}
}

// PurgeStaleDevices deletes devices not seen for PurgeAfter.
func (s *Rules) PurgeStaleDevices(ctx context.Context) (int, error) {
	return s.b.PurgeDevices(ctx, s.Now().Add(-PurgeAfter))
}

// Readiness counts come from per-hour buckets kept at check-in time:
// devices per (account, hour last seen), and devices per (account,
// fingerprint, hour, state) for partial and ready. A count over the
// active window is then a sum over at most a few thousand bucket rows plus
// an exact index count inside the one hour the window starts in, however
// large the fleet.

// BucketWidth is the width of a count bucket.
const BucketWidth = time.Hour

// Bucket returns the bucket of a stored time (EncodeTime).
func Bucket(ns int64) int64 { return ns / int64(BucketWidth) }

// BucketDelta is one change to a count bucket. Fingerprint "" is the
// device bucket (State unused).
type BucketDelta struct {
	Fingerprint string
	Hour        int64
	State       Readiness
	Delta       int
}

// BucketDeltas returns the bucket changes of replacing a device's old
// report (had false: none) by a new one (add false: none, a deletion), in
// one total order, so concurrent transactions lock bucket rows in the same
// order and cannot deadlock. Missing rows are not counted (missing is
// active minus ready minus partial).
func BucketDeltas(had bool, oldSeen int64, oldRows []DeviceRoot, add bool, newSeen int64, newRows []DeviceRoot) []BucketDelta {
	type key struct {
		fp    string
		hour  int64
		state Readiness
	}
	m := map[key]int{}
	if had {
		m[key{"", Bucket(oldSeen), 0}]--
		for _, r := range oldRows {
			if r.State != Missing {
				m[key{r.Fingerprint, Bucket(oldSeen), r.State}]--
			}
		}
	}
	if add {
		m[key{"", Bucket(newSeen), 0}]++
		for _, r := range newRows {
			if r.State != Missing {
				m[key{r.Fingerprint, Bucket(newSeen), r.State}]++
			}
		}
	}
	out := make([]BucketDelta, 0, len(m))
	for k, d := range m {
		if d != 0 {
			out = append(out, BucketDelta{Fingerprint: k.fp, Hour: k.hour, State: k.state, Delta: d})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Fingerprint != b.Fingerprint {
			return a.Fingerprint < b.Fingerprint
		}
		if a.Hour != b.Hour {
			return a.Hour < b.Hour
		}
		return a.State < b.State
	})
	return out
}
