// Package api holds the Cloudflare v4 wire types for Zero Trust Gateway
// certificates and a typed client for them.
//
// The same types are spoken by api.cloudflare.com and by certplane, so the
// agent can point at either. The client is deliberately tolerant of what the
// real service sends (zero timestamps, the legacy "active" status, unknown
// fields, unpadded fingerprint bytes, a missing PEM) and strict about what it
// accepts as a successful answer.
package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// BindingStatus is a certificate's deployment state at the edge.
type BindingStatus string

// The binding statuses. StatusActive is the pre-December-2024 spelling of
// StatusAvailable; Normalize maps it.
const (
	StatusPendingDeployment BindingStatus = "pending_deployment"
	StatusAvailable         BindingStatus = "available"
	StatusPendingDeletion   BindingStatus = "pending_deletion"
	StatusInactive          BindingStatus = "inactive"
	StatusActive            BindingStatus = "active"
)

// Normalize returns the current spelling of s (active becomes available).
func (s BindingStatus) Normalize() BindingStatus {
	if s == StatusActive {
		return StatusAvailable
	}
	return s
}

// Deployed reports whether s means the certificate is available at the edge,
// which is what devices should trust.
func (s BindingStatus) Deployed() bool { return s.Normalize() == StatusAvailable }

// Certificate types.
const (
	TypeGatewayManaged = "gateway_managed"
	TypeCustom         = "custom"
)

// NilUUID in the configuration's certificate id means "no inspection
// certificate of the account's own".
const NilUUID = "00000000-0000-0000-0000-000000000000"

// Certificate is one Zero Trust Gateway certificate as the API returns it.
// Every field is always present on the wire; times may be the zero time.
type Certificate struct {
	ID            string        `json:"id"`
	BindingStatus BindingStatus `json:"binding_status"`
	Certificate   string        `json:"certificate"`
	Fingerprint   string        `json:"fingerprint"`
	InUse         bool          `json:"in_use"`
	IssuerOrg     string        `json:"issuer_org"`
	IssuerRaw     string        `json:"issuer_raw"`
	Type          string        `json:"type"`
	CreatedAt     Time          `json:"created_at"`
	UpdatedAt     Time          `json:"updated_at"`
	UploadedOn    Time          `json:"uploaded_on"`
	ExpiresOn     Time          `json:"expires_on"`
}

// GenerateRequest is the body of POST /certificates.
type GenerateRequest struct {
	// ValidityPeriodDays is 1..10950; zero means the server's default.
	ValidityPeriodDays int `json:"validity_period_days,omitempty"`
}

// GatewayConfiguration is the result of GET/PUT/PATCH /configuration.
type GatewayConfiguration struct {
	CreatedAt Time            `json:"created_at"`
	UpdatedAt Time            `json:"updated_at"`
	Settings  GatewaySettings `json:"settings"`
}

// GatewaySettings holds the settings we model. Other settings round-trip
// through Extra so that a PUT from us does not silently drop them.
type GatewaySettings struct {
	Certificate *CertificateSetting `json:"certificate,omitempty"`
	// Extra holds every other settings collection verbatim.
	Extra map[string]json.RawMessage `json:"-"`
}

// CertificateSetting selects the certificate used for inspection.
type CertificateSetting struct {
	ID string `json:"id"`
	// InUse is sent by Cloudflare's docs examples; the API accepts and
	// ignores it, and never answers with it (the schema has id only).
	InUse bool `json:"in_use,omitempty"`
}

// MarshalJSON writes Certificate alongside the Extra collections.
func (s GatewaySettings) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(s.Extra)+1)
	for k, v := range s.Extra {
		m[k] = v
	}
	if s.Certificate != nil {
		m["certificate"] = s.Certificate
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads certificate and keeps everything else in Extra.
func (s *GatewaySettings) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*s = GatewaySettings{}
	if raw, ok := m["certificate"]; ok && string(raw) != "null" {
		var c CertificateSetting
		if err := json.Unmarshal(raw, &c); err != nil {
			return fmt.Errorf("settings.certificate: %w", err)
		}
		s.Certificate = &c
	}
	delete(m, "certificate")
	if len(m) > 0 {
		s.Extra = m
	}
	return nil
}

// ConfigurationRequest is the body of PUT/PATCH /configuration.
type ConfigurationRequest struct {
	Settings GatewaySettings `json:"settings"`
}

// UploadRequest is the body of POST /accounts/{id}/mtls_certificates.
type UploadRequest struct {
	Name         string `json:"name"`
	Certificates string `json:"certificates"`
	PrivateKey   string `json:"private_key"`
	CA           bool   `json:"ca"`
}

// MTLSCertificate is one certificate of the mtls_certificates store, as
// list, get and delete return it (the schema's MTLSCertificate: no
// updated_at). The private key is never part of it.
type MTLSCertificate struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	CA           bool   `json:"ca"`
	Certificates string `json:"certificates"`
	ExpiresOn    Time   `json:"expires_on"`
	Issuer       string `json:"issuer"`
	SerialNumber string `json:"serial_number"`
	Signature    string `json:"signature"`
	// Type is "custom" for an uploaded root ("gateway_managed" and
	// "access_managed" are Cloudflare's own).
	Type       string `json:"type"`
	UploadedOn Time   `json:"uploaded_on"`
}

// MTLSUpload is the result of an mtls_certificates upload: the certificate
// and, as the schema's MTLSCertificateCreateResponse has it, updated_at.
type MTLSUpload struct {
	MTLSCertificate
	UpdatedAt Time `json:"updated_at"`
}

// Envelope is the v4 response wrapper. Result is left raw so the caller
// decodes it into the type it expects.
type Envelope struct {
	Success    bool            `json:"success"`
	Errors     []Message       `json:"errors"`
	Messages   []Message       `json:"messages"`
	Result     json.RawMessage `json:"result"`
	ResultInfo *ResultInfo     `json:"result_info,omitempty"`
}

// Message is one entry of an envelope's errors or messages.
type Message struct {
	Code             int     `json:"code"`
	Message          string  `json:"message"`
	DocumentationURL string  `json:"documentation_url,omitempty"`
	Source           *Source `json:"source,omitempty"`
}

// Source points at the part of the request an error is about.
type Source struct {
	Pointer string `json:"pointer"`
}

// ResultInfo describes a list page.
type ResultInfo struct {
	Page       int `json:"page"`
	PerPage    int `json:"per_page"`
	Count      int `json:"count"`
	TotalCount int `json:"total_count"`
	TotalPages int `json:"total_pages,omitempty"`
}

// Time is an RFC 3339 timestamp that tolerates the zero time
// "0001-01-01T00:00:00Z", an empty string and null, all of which mean unset.
type Time struct{ time.Time }

// MarshalJSON writes RFC 3339 with sub-second precision, or the zero time
// spelled the way Cloudflare spells it.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte(`"0001-01-01T00:00:00Z"`), nil
	}
	return json.Marshal(t.UTC().Format(time.RFC3339Nano))
}

// UnmarshalJSON accepts RFC 3339 (with or without fractional seconds), "",
// and null.
func (t *Time) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		*t = Time{}
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return fmt.Errorf("time: want a string, got %.40s", s)
	}
	str = strings.TrimSpace(str)
	if str == "" {
		*t = Time{}
		return nil
	}
	v, err := time.Parse(time.RFC3339Nano, str)
	if err != nil {
		return fmt.Errorf("time %q: %w", str, err)
	}
	if v.Year() <= 1 {
		v = time.Time{}
	}
	if y := v.UTC().Year(); y > 9999 {
		// MarshalJSON writes UTC; a year RFC 3339 cannot spell would not
		// read back.
		return fmt.Errorf("time %q: year %d out of range", str, y)
	}
	*t = Time{v}
	return nil
}
