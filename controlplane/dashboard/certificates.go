package dashboard

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/longpoll"
	"github.com/certagent/certagent/controlplane/storage"
)

// Status words of the product docs' dashboard.
const (
	LabelInactive       = "Inactive"
	LabelPending        = "Pending"
	LabelAvailable      = "Available"
	LabelAvailableInUse = "Available and In-Use"
)

// StatusLabel returns the dashboard's word for a certificate's state.
func StatusLabel(status api.BindingStatus, inUse bool) string {
	switch status {
	case api.StatusAvailable, api.StatusActive:
		if inUse {
			return LabelAvailableInUse
		}
		return LabelAvailable
	case api.StatusPendingDeployment, api.StatusPendingDeletion:
		return LabelPending
	}
	return LabelInactive
}

// action is one button of a row: enabled, or disabled with the reason.
type action struct {
	OK  bool
	Why string
}

func allow() action             { return action{OK: true} }
func deny(why string) action    { return action{Why: why} }
func (a action) Disabled() bool { return !a.OK }

// certRow is one certificate as the list shows it.
type certRow struct {
	ID          string
	Name        string
	Issuer      string
	Fingerprint string
	Short       string
	Status      string
	// StatusDetail says which way a Pending certificate is going.
	StatusDetail string
	StatusClass  string
	Pending      bool
	Type         string
	Created      time.Time
	Expires      time.Time
	Expired      bool
	// Readiness is "trusted on N of M devices"; ReadinessPercent the
	// ratio; ReadinessBelow whether the guard would refuse turning it on.
	Readiness        string
	ReadinessPercent string
	ReadinessBelow   bool

	Activate, TurnOn, Deactivate, Delete action
}

// shortFingerprint is the first four bytes of a colon-separated
// fingerprint, enough to tell roots apart on screen.
func shortFingerprint(fp string) string {
	parts := strings.Split(fp, ":")
	if len(parts) <= 4 {
		return fp
	}
	return strings.Join(parts[:4], ":") + "…"
}

// rows builds the list's rows, deciding which actions apply with the same
// rules the store enforces (the store still has the last word).
func rows(certs []storage.Certificate, now time.Time) []certRow {
	availableOrPending := 0
	for _, c := range certs {
		if c.Status == api.StatusAvailable || c.Status == api.StatusPendingDeployment {
			availableOrPending++
		}
	}
	out := make([]certRow, 0, len(certs))
	for _, c := range certs {
		r := certRow{
			ID: c.ID, Issuer: c.IssuerRaw, Fingerprint: c.Fingerprint, Short: shortFingerprint(c.Fingerprint),
			Status: StatusLabel(c.Status, c.InUse), Created: c.CreatedAt, Expires: c.ExpiresOn,
			Expired: !c.ExpiresOn.IsZero() && now.After(c.ExpiresOn), Type: "Managed", Readiness: "–",
		}
		// A custom root shows its upload name and full issuer; a managed
		// one its common name and issuing organisation.
		r.Name = c.Name
		if x, err := x509.ParseCertificate(c.DER); err == nil && r.Name == "" {
			r.Name, r.Issuer = x.Subject.CommonName, c.IssuerOrg
		}
		if r.Name == "" {
			r.Name, r.Issuer = c.IssuerOrg, c.IssuerRaw
		}
		if c.Type == api.TypeCustom {
			r.Type = "Custom"
		}
		switch c.Status {
		case api.StatusPendingDeployment:
			r.Pending, r.StatusDetail, r.StatusClass = true, "activating", "pending"
		case api.StatusPendingDeletion:
			r.Pending, r.StatusDetail, r.StatusClass = true, "deactivating", "pending"
		case api.StatusAvailable, api.StatusActive:
			r.StatusClass = "available"
			if c.InUse {
				r.StatusClass = "inuse"
			}
		default:
			r.StatusClass = "inactive"
		}

		switch {
		case c.Status == api.StatusAvailable:
			r.Activate = deny("Already Available.")
		case c.Status == api.StatusPendingDeployment:
			r.Activate = deny("Being activated.")
		case availableOrPending >= storage.MaxAvailable:
			r.Activate = deny(fmt.Sprintf("%d are Available already; deactivate one first.", storage.MaxAvailable))
		default:
			r.Activate = allow()
		}
		switch {
		case c.InUse:
			r.TurnOn = deny("Already in use.")
		case c.Status != api.StatusAvailable:
			r.TurnOn = deny("Only an Available certificate can be turned on.")
		default:
			r.TurnOn = allow()
		}
		switch {
		case c.InUse:
			r.Deactivate = deny("In use: turn another on first.")
		case c.Status == api.StatusInactive:
			r.Deactivate = deny("Already Inactive.")
		case c.Status == api.StatusPendingDeletion:
			r.Deactivate = deny("Being deactivated.")
		default:
			r.Deactivate = allow()
		}
		if c.Status == api.StatusInactive && !c.InUse {
			r.Delete = allow()
		} else {
			r.Delete = deny("Only an Inactive certificate can be deleted.")
		}
		out = append(out, r)
	}
	return out
}

// certificatesBody is the certificates page's data.
type certificatesBody struct {
	Rows     []certRow
	Revision int64
	Quota    storage.Quota
	// Days is the custom validity the form shows again after a refusal.
	Days string
	// UploadOpen keeps the upload form open after a refused upload.
	UploadOpen    bool
	DefaultDays   int
	MaxDays       int
	MaxCustom     int
	MaxAvailable  int
	GenerationCap int
}

func (d *Dashboard) certificatesPage(w http.ResponseWriter, r *http.Request, ss *session) {
	d.renderCertificates(w, r, ss, http.StatusOK, "")
}

// renderCertificates shows the list with status and an optional refusal.
func (d *Dashboard) renderCertificates(w http.ResponseWriter, r *http.Request, ss *session, status int, refusal string) {
	ctx := r.Context()
	certs, rev, err := d.svc.Rules().List(ctx, ss.p.AccountID)
	if err != nil {
		d.internalError(w, r, ss, err)
		return
	}
	q, err := d.svc.Rules().GenerationQuota(ctx, ss.p.AccountID)
	if err != nil {
		d.internalError(w, r, ss, err)
		return
	}
	rs := rows(certs, d.now())
	if err := d.addReadiness(ctx, ss.p.AccountID, rs); err != nil {
		d.internalError(w, r, ss, err)
		return
	}
	body := certificatesBody{
		Rows: rs, Revision: rev, Quota: q, DefaultDays: 1825, MaxDays: 10950,
		MaxCustom: storage.MaxCustom, MaxAvailable: storage.MaxAvailable, GenerationCap: storage.GenerationsPerDay,
	}
	if refusal != "" {
		body.Days = r.PostFormValue("days")
		body.UploadOpen = strings.HasSuffix(r.URL.Path, "/upload")
	}
	d.render(w, r, ss, status, "certificates", page{Title: "Certificates", Nav: "certificates",
		Flash: refusal, FlashErr: refusal != "", Body: body})
}

// certificatesJSON is the live-update feed: the account's revision, held
// until it differs from ?since= (at most 25 s), whether a certificate is
// pending, and each certificate's status word. The page's script refetches
// the table when the revision moves. It waits on the service's ChangeHub,
// which wakes at every committed change, pending states included (the
// agents' hub wakes only for what agents act on).
func (d *Dashboard) certificatesJSON(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx := r.Context()
	account := ss.p.AccountID
	if since := r.URL.Query().Get("since"); since != "" {
		seen, err := strconv.ParseInt(since, 10, 64)
		if err != nil {
			d.jsonError(w, http.StatusBadRequest, "since must be a revision number")
			return
		}
		_, err = d.svc.ChangeHub().Wait(ctx, d.stopping.Done(), account, min(25*time.Second, longpoll.MaxWait), func(ctx context.Context) (int64, bool, error) {
			rev, err := d.svc.Rules().Revision(ctx, account)
			return rev, rev == seen, err
		})
		if err != nil && ctx.Err() == nil {
			d.log.Error("dashboard live update failed", "account", account, "error", err)
			d.jsonError(w, http.StatusInternalServerError, "internal error")
			return
		}
	}
	certs, rev, err := d.svc.Rules().List(ctx, account)
	if err != nil {
		d.log.Error("dashboard live update failed", "account", account, "error", err)
		d.jsonError(w, http.StatusInternalServerError, "internal error")
		return
	}
	type item struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	out := struct {
		Revision     int64  `json:"revision"`
		Pending      bool   `json:"pending"`
		Certificates []item `json:"certificates"`
	}{Revision: rev, Certificates: make([]item, len(certs))}
	for i, c := range certs {
		out.Certificates[i] = item{c.ID, StatusLabel(c.Status, c.InUse)}
		if _, pending := storage.Target(c.Status); pending {
			out.Pending = true
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func (d *Dashboard) jsonError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// certID returns the path's certificate id in canonical form, or "" when
// it is not a UUID (refused as not found, as the API does).
func certID(r *http.Request) string {
	id := r.PathValue("id")
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 {
		return ""
	}
	return u.String()
}

func (d *Dashboard) generate(w http.ResponseWriter, r *http.Request, ss *session) {
	req := controlplane.GenerateRequest{}
	switch v := r.PostFormValue("validity"); v {
	case "", "recommended":
		req.ValidityDays = 1825
	case "custom":
		days, err := strconv.Atoi(strings.TrimSpace(r.PostFormValue("days")))
		if err != nil {
			d.refuse(w, r, ss, controlplane.CheckValidityDays(0))
			return
		}
		if err := controlplane.CheckValidityDays(days); err != nil {
			d.refuse(w, r, ss, err)
			return
		}
		req.ValidityDays = days
	default:
		d.refuse(w, r, ss, controlplane.CheckValidityDays(0))
		return
	}
	c, err := d.svc.Generate(r.Context(), ss.p.AccountID, req)
	if err != nil {
		d.refuse(w, r, ss, err)
		return
	}
	d.done(w, r, ss, fmt.Sprintf("Generated certificate %s (%d days). It is Inactive: activate it to deploy it.", shortFingerprint(c.Fingerprint), req.ValidityDays))
}

// uploadField reads a PEM field from a file input, else from its textarea.
func uploadField(r *http.Request, name string) (string, error) {
	if r.MultipartForm != nil {
		if fhs := r.MultipartForm.File[name+"_file"]; len(fhs) > 0 && fhs[0].Size > 0 {
			f, err := fhs[0].Open()
			if err != nil {
				return "", err
			}
			defer f.Close()
			b, err := io.ReadAll(io.LimitReader(f, controlplane.MaxBodyBytes))
			return string(b), err
		}
	}
	return r.PostFormValue(name), nil
}

func (d *Dashboard) upload(w http.ResponseWriter, r *http.Request, ss *session) {
	// authed parsed the form (urlencoded or multipart) for the CSRF token.
	cert, err := uploadField(r, "certificates")
	if err != nil {
		d.internalError(w, r, ss, err)
		return
	}
	key, err := uploadField(r, "private_key")
	if err != nil {
		d.internalError(w, r, ss, err)
		return
	}
	req := api.UploadRequest{Name: strings.TrimSpace(r.PostFormValue("name")), Certificates: cert, PrivateKey: key, CA: true}
	if err := controlplane.ValidateUpload(req); err != nil {
		d.refuse(w, r, ss, err)
		return
	}
	c, err := d.svc.Upload(r.Context(), ss.p.AccountID, req.Name, req.Certificates, req.PrivateKey)
	if err != nil {
		d.refuse(w, r, ss, err)
		return
	}
	d.done(w, r, ss, fmt.Sprintf("Uploaded custom certificate %s. It is Inactive: activate it to deploy it.", shortFingerprint(c.Fingerprint)))
}

// lifecycle runs one of the row actions on the path's certificate.
func (d *Dashboard) lifecycle(w http.ResponseWriter, r *http.Request, ss *session,
	op func(ctx context.Context, account, cert string) (storage.Certificate, error), msg string) {
	id := certID(r)
	if id == "" {
		d.refuse(w, r, ss, storage.ErrNotFound)
		return
	}
	c, err := op(r.Context(), ss.p.AccountID, id)
	if err != nil {
		d.refuse(w, r, ss, err)
		return
	}
	d.done(w, r, ss, fmt.Sprintf(msg, shortFingerprint(c.Fingerprint)))
}

func (d *Dashboard) activate(w http.ResponseWriter, r *http.Request, ss *session) {
	d.lifecycle(w, r, ss, d.svc.Rules().Activate, "Activating certificate %s: it is Pending until deployed, then Available.")
}

func (d *Dashboard) deactivate(w http.ResponseWriter, r *http.Request, ss *session) {
	d.lifecycle(w, r, ss, d.svc.Rules().Deactivate, "Deactivating certificate %s: it is Pending until withdrawn, then Inactive.")
}

// deletePage asks for confirmation: deleting loses the key for good.
func (d *Dashboard) deletePage(w http.ResponseWriter, r *http.Request, ss *session) {
	id := certID(r)
	certs, _, err := d.svc.Rules().List(r.Context(), ss.p.AccountID)
	if err != nil {
		d.internalError(w, r, ss, err)
		return
	}
	for _, row := range rows(certs, d.now()) {
		if row.ID == id {
			d.render(w, r, ss, http.StatusOK, "delete", page{Title: "Delete certificate", Nav: "certificates", Body: row})
			return
		}
	}
	d.refuse(w, r, ss, storage.ErrNotFound)
}

func (d *Dashboard) delete(w http.ResponseWriter, r *http.Request, ss *session) {
	d.lifecycle(w, r, ss, d.svc.Rules().Delete, "Deleted certificate %s.")
}

// turnOnBody is the confirmation page's data.
type turnOnBody struct {
	Row certRow
	// InUse is the row of the certificate in use now, if any.
	InUse *certRow
	// Readiness of Row; NotReady the first devices not ready for it.
	Readiness readiness
	NotReady  []storage.NotReadyDevice
	// Guard is the readiness guard's answer: "" when it allows turning
	// the certificate on, else the API's refusal.
	Guard string
	// Force keeps the override ticked after a refusal.
	Force bool
}

// notReadyShown is how many not-ready devices the turn-on page lists.
const notReadyShown = 10

func (d *Dashboard) turnOnPage(w http.ResponseWriter, r *http.Request, ss *session) {
	d.renderTurnOn(w, r, ss, http.StatusOK, "")
}

func (d *Dashboard) renderTurnOn(w http.ResponseWriter, r *http.Request, ss *session, status int, refusal string) {
	ctx := r.Context()
	id := certID(r)
	certs, _, err := d.svc.Rules().List(ctx, ss.p.AccountID)
	if err != nil {
		d.internalError(w, r, ss, err)
		return
	}
	var body turnOnBody
	found := false
	for _, row := range rows(certs, d.now()) {
		if row.ID == id {
			body.Row, found = row, true
		}
		if row.Status == LabelAvailableInUse {
			cp := row
			body.InUse = &cp
		}
	}
	if !found {
		d.refuse(w, r, ss, storage.ErrNotFound)
		return
	}
	body.Readiness, body.NotReady, err = d.certReadiness(ctx, ss.p.AccountID, id, 0, notReadyShown)
	if err != nil {
		d.internalError(w, r, ss, err)
		return
	}
	body.Row.Readiness = body.Readiness.Text()
	if err := d.svc.Rules().CheckReady(ctx, ss.p.AccountID, id); err != nil {
		st, msg := errorMessage(err, r.URL.Path)
		if st >= 500 {
			d.internalError(w, r, ss, err)
			return
		}
		body.Guard = strings.TrimPrefix(msg, "Refused: ")
	}
	body.Force = r.Method == http.MethodPost && r.PostFormValue("force") == "1"
	d.render(w, r, ss, status, "turn-on", page{Title: "Confirm and turn on certificate", Nav: "certificates",
		Flash: refusal, FlashErr: refusal != "", Body: body})
}

// turnOn turns the certificate on, through the readiness guard unless the
// admin ticked the override.
func (d *Dashboard) turnOn(w http.ResponseWriter, r *http.Request, ss *session) {
	id := certID(r)
	if id == "" {
		d.refuse(w, r, ss, storage.ErrNotFound)
		return
	}
	use := d.svc.Use
	if r.PostFormValue("force") == "1" {
		use = d.svc.UseForce
	}
	if _, err := use(r.Context(), ss.p.AccountID, id); err != nil {
		status, msg := errorMessage(err, r.URL.Path)
		if status == http.StatusConflict {
			d.renderTurnOn(w, r, ss, status, msg)
			return
		}
		d.refuse(w, r, ss, err)
		return
	}
	if r.PostFormValue("force") == "1" {
		d.log.Warn("certificate turned on past the readiness guard", "account", ss.p.AccountID, "certificate", id, "token_id", ss.p.TokenID)
	}
	d.done(w, r, ss, "Turned on: Gateway now inspects with this certificate (Available and In-Use).")
}

func (d *Dashboard) download(w http.ResponseWriter, r *http.Request, ss *session) {
	id := certID(r)
	format := r.URL.Query().Get("format")
	if format == "" {
		format = controlplane.FormatPEM
	}
	if id == "" {
		d.refuse(w, r, ss, storage.ErrNotFound)
		return
	}
	b, err := d.svc.Download(r.Context(), ss.p.AccountID, id, format)
	if err != nil {
		d.refuse(w, r, ss, err)
		return
	}
	ctype := "application/x-pem-file"
	if format == controlplane.FormatCRT {
		ctype = "application/pkix-cert"
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", id+"."+format))
	w.Write(b)
}
