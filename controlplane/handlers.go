package controlplane

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane/longpoll"
	"github.com/certagent/certagent/controlplane/storage"
)

// handleList serves the list. With If-None-Match naming the current
// revision it answers 304 from memory (no database read while the change
// feed is live). With ?wait= as well it holds the request until what an
// agent acts on changes (the available certificates and the one in use;
// not pending states), then answers with the new list: certplane's
// long-poll extension. Every full answer is the account's list body of
// the revision, built once and shared.
func handleList(c *call) (any, error) {
	ctx := c.r.Context()
	wait, err := longpoll.ParseWait(c.r.URL.Query().Get("wait"))
	if err != nil {
		return nil, invalid("", "wait must be seconds (30) or a duration (30s), at most %s", longpoll.MaxWait)
	}
	if inm := c.r.Header.Get("If-None-Match"); inm != "" {
		tags := parseListTags(inm, c.account)
		if len(tags) == 0 {
			return listAnswer(c)
		}
		rev, err := c.s.revision(ctx, c.account)
		if err != nil {
			return nil, err
		}
		if wait <= 0 {
			for _, t := range tags {
				if t.any {
					v, err := c.s.view(ctx, c.account)
					if err != nil {
						return nil, err
					}
					return notModified{v.etag}, nil
				}
				if t.rev == rev {
					return notModified{t.tag}, nil
				}
			}
			return listAnswer(c)
		}
		return hold(c, tags, wait)
	}
	return listAnswer(c)
}

// hold is the long-poll: it waits until none of the client's tags is
// current for an agent, then answers with the list; at the end of the
// wait (or at shutdown, or when the client leaves) it answers 304 with the
// client's tag. The request is parked without a goroutine when it can be
// (park).
func hold(c *call, tags []clientTag, wait time.Duration) (any, error) {
	lw := &listWait{s: c.s, account: c.account, tags: tags, authorization: c.r.Header.Get("Authorization")}
	if res, err, ok := c.park(lw, wait); ok {
		return res, err
	}
	ctx := c.r.Context()
	changed, err := c.s.hub.Wait(ctx, c.stopping.Done(), c.account, wait, lw.check)
	if err != nil && ctx.Err() == nil {
		return nil, err
	}
	if res, ok := lw.result(changed); ok {
		if _, list := res.(listBody); list {
			if e, challenge := lw.reauthorize(ctx); e != nil {
				if challenge != "" {
					c.w.Header().Set("WWW-Authenticate", challenge)
				}
				return nil, e
			}
		}
		return res, nil
	}
	// Ended before the first check.
	return listAnswer(c)
}

// listBody is a full list answer: the view's shared body.
type listBody struct{ v *listView }

func listAnswer(c *call) (any, error) {
	v, err := c.s.view(c.r.Context(), c.account)
	if err != nil {
		return nil, err
	}
	return listBody{v}, nil
}

// generateBody is POST /certificates; key_type is our extension. The fields
// stay raw so an absent field (the default) is told from an explicit null
// or 0, which are refused: a generation spends one of the day's three, so
// it must be exactly what was asked for.
type generateBody struct {
	ValidityPeriodDays json.RawMessage `json:"validity_period_days"`
	KeyType            json.RawMessage `json:"key_type"`
}

// optionalField decodes raw, when the field was sent, into v; null is
// refused like any other wrong type (400, CodeMalformedJSON, as jsonError
// words it). It reports whether the field was sent.
func optionalField(raw json.RawMessage, name string, v any) (bool, error) {
	if raw == nil {
		return false, nil
	}
	var err error
	if string(raw) == "null" {
		err = &json.UnmarshalTypeError{Value: "null", Type: reflect.TypeOf(v).Elem(), Field: name}
	} else if err = json.Unmarshal(raw, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			te.Field = name
		}
	}
	if err != nil {
		return true, jsonError(err)
	}
	return true, nil
}

// CheckValidityDays refuses a validity_period_days outside 1..10950 with
// the API's 400 (ErrorResponse turns it into the same status and message).
func CheckValidityDays(d int) error {
	if d < 1 || d > 10950 {
		return invalid("/validity_period_days", "validity_period_days must be 1..10950, got %d", d)
	}
	return nil
}

func handleGenerate(c *call) (any, error) {
	var b generateBody
	if err := decodeBody(c, &b, true); err != nil {
		return nil, err
	}
	var req GenerateRequest
	if _, err := optionalField(b.KeyType, "key_type", &req.KeyType); err != nil {
		return nil, err
	}
	var days int
	if sent, err := optionalField(b.ValidityPeriodDays, "validity_period_days", &days); err != nil {
		return nil, err
	} else if sent {
		if err := CheckValidityDays(days); err != nil {
			return nil, err
		}
		req.ValidityDays = days
	}
	cert, err := c.s.Generate(c.r.Context(), c.account, req)
	if err != nil {
		return nil, err
	}
	return APICertificate(cert), nil
}

func handleGet(c *call) (any, error) {
	cert, err := c.s.store.Get(c.r.Context(), c.account, c.cert)
	if err != nil {
		return nil, err
	}
	return APICertificate(cert), nil
}

func handleDelete(c *call) (any, error) {
	cert, err := c.s.Rules().Delete(c.r.Context(), c.account, c.cert)
	if err != nil {
		return nil, err
	}
	return APICertificate(cert), nil
}

func handleActivate(c *call) (any, error) {
	if err := decodeBody(c, &struct{}{}, true); err != nil {
		return nil, err
	}
	cert, err := c.s.Rules().Activate(c.r.Context(), c.account, c.cert)
	if err != nil {
		return nil, err
	}
	// 202 Accepted, as Cloudflare's schema: deployment is under way.
	return withStatus{http.StatusAccepted, APICertificate(cert)}, nil
}

func handleDeactivate(c *call) (any, error) {
	if err := decodeBody(c, &struct{}{}, true); err != nil {
		return nil, err
	}
	cert, err := c.s.Rules().Deactivate(c.r.Context(), c.account, c.cert)
	if err != nil {
		return nil, err
	}
	// 201, as Cloudflare's schema has it for deactivate.
	return withStatus{http.StatusCreated, APICertificate(cert)}, nil
}

func handleDownload(c *call) (any, error) {
	format := c.r.URL.Query().Get("format")
	if format == "" {
		format = FormatPEM
	}
	b, err := c.s.Download(c.r.Context(), c.account, c.cert, format)
	if err != nil {
		return nil, err
	}
	if format == FormatCRT {
		return rawResult{contentType: "application/pkix-cert", filename: c.cert + ".crt", body: b}, nil
	}
	return rawResult{contentType: "application/x-pem-file", filename: c.cert + ".pem", body: b}, nil
}

func configResult(a storage.Account) (any, error) {
	out, err := APIConfiguration(a)
	if err != nil {
		return nil, err
	}
	return out, nil
}

func handleGetConfig(c *call) (any, error) {
	a, err := c.s.store.Account(c.r.Context(), c.account)
	if err != nil {
		return nil, err
	}
	return configResult(a)
}

func handlePutConfig(c *call) (any, error)   { return configure(c, true) }
func handlePatchConfig(c *call) (any, error) { return configure(c, false) }

// ConfigurationBody is the body of PUT/PATCH /configuration. Settings collections other than
// "certificate" are stored verbatim and returned as sent.
type ConfigurationBody struct {
	Settings map[string]json.RawMessage `json:"settings"`
}

// ParseConfiguration validates a PUT/PATCH /configuration body and returns
// the change it asks for. Exported for the fuzz target and the CLI.
func ParseConfiguration(body ConfigurationBody, replace bool) (storage.ConfigChange, error) {
	if body.Settings == nil {
		return storage.ConfigChange{}, invalid("/settings", "settings is required")
	}
	ch := storage.ConfigChange{Replace: replace, Settings: map[string]json.RawMessage{}}
	for k, v := range body.Settings {
		if k == "certificate" {
			continue
		}
		if t := strings.TrimSpace(string(v)); !strings.HasPrefix(t, "{") {
			return ch, invalid("/settings/"+k, "settings.%s must be an object", k)
		}
		ch.Settings[k] = v
	}
	raw, ok := body.Settings["certificate"]
	if !ok || strings.TrimSpace(string(raw)) == "null" {
		if replace {
			// PUT replaces the whole settings object: no certificate
			// setting means the account's own certificates are off.
			none := ""
			ch.CertificateID = &none
		}
		return ch, nil
	}
	var cs api.CertificateSetting
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cs); err != nil {
		e := jsonError(err)
		e.errs[0].Message = "settings.certificate: " + e.errs[0].Message
		e.errs[0].Source = &api.Source{Pointer: "/settings/certificate"}
		return ch, e
	}
	u, err := uuid.Parse(cs.ID)
	if err != nil || len(cs.ID) != 36 {
		return ch, invalid("/settings/certificate/id", "settings.certificate.id must be a certificate UUID or %s", api.NilUUID)
	}
	id := u.String()
	ch.CertificateID = &id
	return ch, nil
}

func configure(c *call, replace bool) (any, error) {
	var b ConfigurationBody
	if err := decodeBody(c, &b, false); err != nil {
		return nil, err
	}
	ch, err := ParseConfiguration(b, replace)
	if err != nil {
		return nil, err
	}
	if ch.Force, err = forceParam(c); err != nil {
		return nil, err
	}
	a, err := c.s.Rules().Configure(c.r.Context(), c.account, ch)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, invalid("/settings/certificate/id", "settings.certificate.id: no such certificate in this account")
	}
	if err != nil {
		return nil, err
	}
	return configResult(a)
}

// ValidateUpload checks the fields of an upload that do not need the
// certificate parsed.
func ValidateUpload(b api.UploadRequest) error {
	if !b.CA {
		return invalid("/ca", "ca must be true: only CA certificates can be inspection roots")
	}
	if len(b.Name) > 255 {
		return invalid("/name", "name is longer than 255 characters")
	}
	if strings.IndexFunc(b.Name, unicode.IsControl) >= 0 {
		return invalid("/name", "name contains control characters")
	}
	if strings.TrimSpace(b.Certificates) == "" {
		return invalid("/certificates", "certificates is required: the CA certificate in PEM")
	}
	if strings.TrimSpace(b.PrivateKey) == "" {
		return invalid("/private_key", "private_key is required: Gateway needs it to sign with the CA")
	}
	return nil
}

func handleUpload(c *call) (any, error) {
	var b api.UploadRequest
	if err := decodeBody(c, &b, false); err != nil {
		return nil, err
	}
	if err := ValidateUpload(b); err != nil {
		return nil, err
	}
	cert, err := c.s.Upload(c.r.Context(), c.account, b.Name, b.Certificates, b.PrivateKey)
	if err != nil {
		return nil, err
	}
	m, err := MTLSResult(cert)
	if err != nil {
		return nil, err
	}
	return api.MTLSUpload{MTLSCertificate: m, UpdatedAt: api.Time{Time: cert.UpdatedAt}}, nil
}

// MTLSResult is the mtls_certificates view of a custom certificate, as list,
// get and delete answer it.
func MTLSResult(c storage.Certificate) (api.MTLSCertificate, error) {
	x, err := x509.ParseCertificate(c.DER)
	if err != nil {
		return api.MTLSCertificate{}, fmt.Errorf("controlplane: stored certificate %s: %w", c.ID, err)
	}
	ac := APICertificate(c)
	return api.MTLSCertificate{
		ID: c.ID, Name: c.Name, CA: true, Certificates: ac.Certificate, ExpiresOn: ac.ExpiresOn,
		Issuer: c.IssuerRaw, SerialNumber: x.SerialNumber.String(), Signature: x.SignatureAlgorithm.String(),
		Type: api.TypeCustom, UploadedOn: ac.UploadedOn,
	}, nil
}

// handleListCustom lists the account's uploaded roots in the mTLS
// certificate store's shape.
func handleListCustom(c *call) (any, error) {
	certs, _, err := c.s.store.List(c.r.Context(), c.account)
	if err != nil {
		return nil, err
	}
	out := []api.MTLSCertificate{}
	for _, cert := range certs {
		if cert.Type != api.TypeCustom {
			continue
		}
		m, err := MTLSResult(cert)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// custom returns the custom certificate c.cert; a gateway-managed one is
// not in the mTLS store, so it is not found there.
func custom(c *call) (storage.Certificate, error) {
	cert, err := c.s.store.Get(c.r.Context(), c.account, c.cert)
	if err != nil {
		return cert, err
	}
	if cert.Type != api.TypeCustom {
		return cert, storage.ErrNotFound
	}
	return cert, nil
}

func handleGetCustom(c *call) (any, error) {
	cert, err := custom(c)
	if err != nil {
		return nil, err
	}
	return MTLSResult(cert)
}

// handleDeleteCustom deletes an uploaded root under the same rule as the
// gateway delete: only when inactive (so never while in use or installed
// on devices).
func handleDeleteCustom(c *call) (any, error) {
	if _, err := custom(c); err != nil {
		return nil, err
	}
	cert, err := c.s.Rules().Delete(c.r.Context(), c.account, c.cert)
	if err != nil {
		return nil, err
	}
	return MTLSResult(cert)
}
