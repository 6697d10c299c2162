package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
)

// Device check-ins and rotation readiness: certplane's extension under
// /accounts/{account_id}/certplane/ (DESIGN.md §8). Cloudflare does not
// serve these paths; an agent pointed at it gets 404 and carries on.

// HeaderDeviceSecret carries a device's secret on its check-ins.
const HeaderDeviceSecret = "X-Device-Secret"

// Trust states of one root in one store, as a device reports them.
const (
	StateTrusted      = "trusted"
	StateInstalled    = "installed"
	StateTrustPending = "trust_pending"
	StateFailed       = "failed"
)

// StoreState is one (root, store, user) line of a check-in.
type StoreState struct {
	Store string `json:"store"`
	// User is the local user for per-user stores (nss).
	User   string `json:"user,omitempty"`
	State  string `json:"state"`
	Detail string `json:"detail,omitempty"`
}

// RootState is what a device holds of one root, store by store.
type RootState struct {
	Fingerprint string       `json:"fingerprint"`
	Stores      []StoreState `json:"stores"`
}

// Check-in text limits, in bytes: certplane refuses a check-in whose
// hostname, os_version, agent_version, store or user is longer than
// MaxCheckInField, or whose detail is longer than MaxCheckInDetail (and
// any text with control characters or invalid UTF-8).
const (
	MaxCheckInField  = 255
	MaxCheckInDetail = 1024
)

// CheckIn is the body of PUT /certplane/devices/{device_id}.
type CheckIn struct {
	Hostname     string      `json:"hostname"`
	OS           string      `json:"os"`
	OSVersion    string      `json:"os_version"`
	AgentVersion string      `json:"agent_version"`
	SyncedAt     Time        `json:"synced_at"`
	Roots        []RootState `json:"roots"`
}

// CheckInResult is the answer to a check-in. DeviceSecret is set only on
// the first check-in of a device id: the agent must keep it and send it
// in HeaderDeviceSecret from then on.
type CheckInResult struct {
	DeviceID     string `json:"device_id"`
	DeviceSecret string `json:"device_secret,omitempty"`
	LastSeen     Time   `json:"last_seen"`
}

// Device is one device as certplane knows it.
type Device struct {
	ID           string `json:"id"`
	Hostname     string `json:"hostname"`
	OS           string `json:"os"`
	OSVersion    string `json:"os_version"`
	AgentVersion string `json:"agent_version"`
	SyncedAt     Time   `json:"synced_at"`
	LastSeen     Time   `json:"last_seen"`
	CreatedAt    Time   `json:"created_at"`
	// Stale is true when the device has not checked in within the
	// account's device_active_days.
	Stale bool `json:"stale"`
	// Roots is the device's last report (only on GET of one device).
	Roots []RootState `json:"roots,omitempty"`
}

// NotReadyDevice is one device that does not hold a root everywhere.
type NotReadyDevice struct {
	DeviceID string `json:"device_id"`
	Hostname string `json:"hostname"`
	LastSeen Time   `json:"last_seen"`
	// Missing lists the stores ("store" or "store:user") not holding the
	// root ready; ["*"] when the device holds it nowhere.
	Missing []string `json:"missing"`
}

// Readiness is one certificate's readiness over the active devices.
type Readiness struct {
	CertificateID string  `json:"certificate_id"`
	Fingerprint   string  `json:"fingerprint"`
	ActiveDevices int     `json:"active_devices"`
	Ready         int     `json:"ready"`
	Partial       int     `json:"partial"`
	Missing       int     `json:"missing"`
	StaleExcluded int     `json:"stale_excluded"`
	Ratio         float64 `json:"ratio"`
	MinReadiness  float64 `json:"min_readiness"`
	// NotReady is one page (page, per_page) of the devices not ready.
	NotReady []NotReadyDevice `json:"not_ready"`
}

// DeviceSettings are an account's readiness settings.
type DeviceSettings struct {
	MinReadiness     float64 `json:"min_readiness"`
	DeviceActiveDays int     `json:"device_active_days"`
}

// DeviceSettingsPatch is the body of PATCH /certplane/settings; absent
// fields keep their value.
type DeviceSettingsPatch struct {
	MinReadiness     *float64 `json:"min_readiness,omitempty"`
	DeviceActiveDays *int     `json:"device_active_days,omitempty"`
}

func (c *Client) certplanePath(parts ...string) string {
	p := "/accounts/" + c.accountID + "/certplane"
	for _, s := range parts {
		p += "/" + url.PathEscape(s)
	}
	return p
}

// CheckIn reports the device's state. secret is "" on the device's first
// check-in; the result then carries the secret to keep.
func (c *Client) CheckIn(ctx context.Context, deviceID, secret string, in CheckIn) (*CheckInResult, error) {
	if err := checkID(deviceID); err != nil {
		return nil, err
	}
	hdr := http.Header{}
	if secret != "" {
		hdr.Set(HeaderDeviceSecret, secret)
	}
	var out CheckInResult
	if _, err := c.do(ctx, http.MethodPut, c.certplanePath("devices", deviceID), nil, hdr, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Devices lists one page of the account's devices; stale is "", "true"
// or "false".
func (c *Client) Devices(ctx context.Context, page, perPage int, stale string) ([]Device, error) {
	q := url.Values{}
	if page > 0 {
		q.Set("page", strconv.Itoa(page))
	}
	if perPage > 0 {
		q.Set("per_page", strconv.Itoa(perPage))
	}
	if stale != "" {
		q.Set("stale", stale)
	}
	var out []Device
	if _, err := c.do(ctx, http.MethodGet, c.certplanePath("devices"), q, nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Readiness returns a certificate's readiness.
func (c *Client) Readiness(ctx context.Context, certID string) (*Readiness, error) {
	if err := checkID(certID); err != nil {
		return nil, err
	}
	var out Readiness
	if _, err := c.do(ctx, http.MethodGet, c.certplanePath("certificates", certID, "readiness"), nil, nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
