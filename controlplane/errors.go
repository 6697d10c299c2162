package controlplane

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane/ca"
	"github.com/certagent/certagent/controlplane/storage"
)

// API error codes. Cloudflare's generic codes (7000, 7003, 10000) keep
// their meaning; the rest are certplane's own, one per rule, documented in
// docs/api.md. Never renumber one.
const (
	CodeInternal          = 1000  // 500: a server-side failure; details are in the server log only
	CodeValidation        = 1001  // 400: a field has a bad value
	CodeMalformedJSON     = 1002  // 400: the body is not the JSON object expected
	CodeBodyTooLarge      = 1003  // 413: the body exceeds MaxBodyBytes
	CodeMethodNotAllowed  = 1004  // 405: the route exists, the method does not
	CodeHeaderTooLarge    = 1005  // 431: the request header exceeds MaxHeaderBytes
	CodeBadRequest        = 1006  // 400 (or 501): not a well-formed HTTP request, or plain HTTP to the TLS port
	CodeBadCertificate    = 1010  // 400: an uploaded certificate is unacceptable
	CodeBadPrivateKey     = 1011  // 400: an uploaded private key is unacceptable or does not match
	CodeDailyLimit        = 1100  // 429: 3 generations per account per rolling 24 h
	CodeAvailableLimit    = 1101  // 409: at most 10 available (or pending deployment)
	CodeDeleteNotInactive = 1102  // 409: delete only when inactive
	CodeDeactivateInUse   = 1103  // 409: the certificate in use cannot be deactivated
	CodeUseNotAvailable   = 1104  // 409: only an available certificate can be turned on
	CodeCustomLimit       = 1105  // 409: at most 5 custom certificates
	CodeDuplicate         = 1106  // 409: the account already has this certificate
	CodeNotReady          = 1107  // 409: turning on a certificate too few active devices trust (override: ?force=true)
	CodeDeviceID          = 1200  // 400: the device id is not a UUID
	CodeDeviceSecret      = 1201  // 403: a check-in without the device's secret
	CodeCheckInRate       = 1202  // 429: too many check-ins from one device
	CodeRegistrationRate  = 1203  // 429: too many new devices registered with one token
	CodeNoRoute           = 7000  // 404: no route for that URI (sent with 7003)
	CodeNotFound          = 7003  // 404: unknown route or object id
	CodeAuth              = 10000 // 401/403: no, invalid or foreign token
	CodeScope             = 10001 // 403: a read token on a write endpoint
)

// apiError is a failure with its HTTP status and envelope errors.
type apiError struct {
	status int
	errs   []api.Message
	// cause is logged, never sent.
	cause error
}

func (e *apiError) Error() string {
	if len(e.errs) == 0 {
		return fmt.Sprintf("HTTP %d", e.status)
	}
	return fmt.Sprintf("HTTP %d: %d %s", e.status, e.errs[0].Code, e.errs[0].Message)
}

func newError(status, code int, format string, args ...any) *apiError {
	return &apiError{status: status, errs: []api.Message{{Code: code, Message: fmt.Sprintf(format, args...)}}}
}

// invalid is a 400 validation error pointing at a field.
func invalid(pointer, format string, args ...any) *apiError {
	e := newError(http.StatusBadRequest, CodeValidation, format, args...)
	if pointer != "" {
		e.errs[0].Source = &api.Source{Pointer: pointer}
	}
	return e
}

func notFound(path string) *apiError {
	return newError(http.StatusNotFound, CodeNotFound, "Could not route to %s, perhaps your object identifier is invalid?", path)
}

// ErrorResponse returns the HTTP status and the envelope errors the API
// answers err with, so another front end on the same Service (the
// dashboard) refuses with the same status and the same words. path is the
// request path, used only by not-found messages. A status of 500 means err
// is internal: its details belong in the log, never in a response.
func ErrorResponse(err error, path string) (int, []api.Message) {
	e := toAPIError(err, path)
	return e.status, e.errs
}

// ErrReadOnly is the refusal of a change asked with a read token.
var ErrReadOnly = errors.New("controlplane: the token's scope is read; this operation needs a write token")

// toAPIError maps a Service error to its response.
func toAPIError(err error, path string) *apiError {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, storage.ErrNotFound):
		return notFound(path)
	case errors.Is(err, storage.ErrDailyLimit):
		next := "later"
		var dl *storage.DailyLimitError
		if errors.As(err, &dl) {
			// Rounded up: asking at the time given must succeed.
			next = "at " + dl.Next.Add(time.Second-time.Nanosecond).Truncate(time.Second).UTC().Format(time.RFC3339)
		}
		return newError(http.StatusTooManyRequests, CodeDailyLimit,
			"generation limit reached: at most %d certificates per account in any %s; the next generation is allowed %s",
			storage.GenerationsPerDay, "24 hours", next)
	case errors.Is(err, storage.ErrAvailableLimit):
		return newError(http.StatusConflict, CodeAvailableLimit,
			"at most %d certificates can be available (or pending deployment) at once; deactivate one first", storage.MaxAvailable)
	case errors.Is(err, storage.ErrDeleteNotInactive):
		return newError(http.StatusConflict, CodeDeleteNotInactive,
			"only an inactive certificate can be deleted; deactivate it and wait until it is inactive")
	case errors.Is(err, storage.ErrDeactivateInUse):
		return newError(http.StatusConflict, CodeDeactivateInUse,
			"the certificate in use cannot be deactivated; turn another one on first")
	case errors.Is(err, storage.ErrUseNotAvailable):
		return newError(http.StatusConflict, CodeUseNotAvailable,
			"only an available certificate can be turned on; activate it and wait until it is available")
	case errors.Is(err, storage.ErrCustomLimit):
		return newError(http.StatusConflict, CodeCustomLimit,
			"at most %d custom certificates per account; delete one first", storage.MaxCustom)
	case errors.Is(err, storage.ErrDuplicate):
		return newError(http.StatusConflict, CodeDuplicate, "%s", strings.TrimPrefix(err.Error(), "storage: "))
	case errors.Is(err, storage.ErrNotReady):
		return newError(http.StatusConflict, CodeNotReady,
			"%s; let more devices sync first, lower min_readiness, or add ?force=true to turn it on anyway",
			strings.TrimPrefix(err.Error(), "storage: "))
	case errors.Is(err, storage.ErrDeviceSecret):
		return newError(http.StatusForbidden, CodeDeviceSecret,
			"this device id is registered: send its secret in %s (a device whose secret was lost must be deleted first)", api.HeaderDeviceSecret)
	case errors.Is(err, errCheckInRate):
		e := newError(http.StatusTooManyRequests, CodeCheckInRate, "too many check-ins from this device; try again later")
		return e
	case errors.Is(err, errRegistrationRate):
		return newError(http.StatusTooManyRequests, CodeRegistrationRate,
			"too many new devices registered with this token (%d at once, then %d an hour); try again later", RegistrationBurst, int(time.Hour/RegistrationRefill))
	case errors.Is(err, ca.ErrValidity):
		return invalid("/validity_period_days", "validity_period_days must be %d..%d", ca.MinValidityDays, ca.MaxValidityDays)
	case errors.Is(err, ca.ErrKeyType):
		return invalid("/key_type", "key_type must be %s, %s or %s", ca.KeyECDSAP256, ca.KeyRSA2048, ca.KeyRSA3072)
	case errors.Is(err, ca.ErrBadUpload):
		e := newError(http.StatusBadRequest, CodeBadCertificate, "%s", strings.TrimPrefix(err.Error(), "ca: "))
		e.errs[0].Source = &api.Source{Pointer: "/certificates"}
		return e
	case errors.Is(err, ca.ErrKeyInvalid):
		e := newError(http.StatusBadRequest, CodeBadPrivateKey, "%s", strings.TrimPrefix(err.Error(), "ca: "))
		e.errs[0].Source = &api.Source{Pointer: "/private_key"}
		return e
	case errors.Is(err, ErrReadOnly):
		return newError(http.StatusForbidden, CodeScope, "the token's scope is read; this operation needs a write token")
	case errors.Is(err, ErrFormat):
		return invalid("", "format must be pem or crt")
	}
	e := newError(http.StatusInternalServerError, CodeInternal, "internal error")
	e.cause = err
	return e
}
