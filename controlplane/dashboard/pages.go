package dashboard

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/storage"
)

// page is what every template gets.
type page struct {
	Title string
	// Nav names the current section ("certificates", "devices",
	// "settings"); "" on the login and error pages.
	Nav string
	// LoggedIn is false on the login page and on errors without a session.
	LoggedIn    bool
	AccountName string
	AccountID   string
	CanWrite    bool
	CSRF        string
	// Flash is a one-shot message; FlashErr marks a refusal.
	Flash    string
	FlashErr bool
	// Body is the page's own data.
	Body any
}

var templateFuncs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"day": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02")
	},
	// dict builds a map from key, value pairs, to pass several values to
	// a sub-template.
	"dict": func(kv ...any) (map[string]any, error) {
		if len(kv)%2 != 0 {
			return nil, errors.New("dict: odd number of arguments")
		}
		m := make(map[string]any, len(kv)/2)
		for i := 0; i < len(kv); i += 2 {
			k, ok := kv[i].(string)
			if !ok {
				return nil, fmt.Errorf("dict: key %v is not a string", kv[i])
			}
			m[k] = kv[i+1]
		}
		return m, nil
	},
}

// parsePages parses each page with the shared layout.
func parsePages() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, name := range []string{"login", "error", "certificates", "turn-on", "delete", "devices", "settings"} {
		t, err := template.New("layout.html").Funcs(templateFuncs).ParseFS(assets, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("dashboard: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// render writes a page with status. ss may be nil (login, errors).
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, ss *session, status int, name string, p page) {
	if ss != nil {
		p.LoggedIn = true
		p.CanWrite = ss.p.CanWrite()
		p.AccountID = ss.p.AccountID
		p.CSRF = ss.csrf
		if a, err := d.svc.Rules().Account(r.Context(), ss.p.AccountID); err == nil {
			p.AccountName = a.Name
		}
		// The live update's refetch (?live=1) must not eat a message meant
		// for the page the browser is about to load.
		if p.Flash == "" && r.URL.Query().Get("live") == "" {
			p.Flash, p.FlashErr = d.sessions.takeFlash(ss)
		}
	}
	var buf bytes.Buffer
	if err := d.pages[name].Execute(&buf, p); err != nil {
		d.log.Error("render page", "page", name, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// errorPage answers status with a message page.
func (d *Dashboard) errorPage(w http.ResponseWriter, r *http.Request, ss *session, status int, msg string) {
	d.render(w, r, ss, status, "error", page{Title: http.StatusText(status), Flash: msg, FlashErr: true,
		Body: struct{ Status int }{status}})
}

// internalError logs err and answers 500 without its details.
func (d *Dashboard) internalError(w http.ResponseWriter, r *http.Request, ss *session, err error) {
	d.log.Error("dashboard request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	d.errorPage(w, r, ss, http.StatusInternalServerError, "Internal error: the details are in the server log.")
}

// refuse answers a Service error with the API's status and message,
// showing the certificates page (or the turn-on page) with the refusal.
func (d *Dashboard) refuse(w http.ResponseWriter, r *http.Request, ss *session, err error) {
	status, msg := errorMessage(err, r.URL.Path)
	if status >= 500 {
		d.internalError(w, r, ss, err)
		return
	}
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		d.errorPage(w, r, ss, status, msg)
		return
	}
	d.renderCertificates(w, r, ss, status, msg)
}

// errorMessage is the API's status and message for a Service error, as
// the dashboard shows it.
func errorMessage(err error, path string) (int, string) {
	status, msgs := controlplane.ErrorResponse(err, path)
	parts := make([]string, len(msgs))
	for i, m := range msgs {
		parts[i] = m.Message
	}
	return status, "Refused: " + strings.Join(parts, "; ")
}

// done records a success message and sends the browser back to the list
// (post/redirect/get, so a reload does not repeat the action).
func (d *Dashboard) done(w http.ResponseWriter, r *http.Request, ss *session, msg string) {
	d.sessions.setFlash(ss, msg, false)
	http.Redirect(w, r, Prefix+"certificates", http.StatusSeeOther)
}

func (d *Dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		if ss, ok := d.sessions.get(c.Value); ok {
			if live, err := d.tokenLive(r.Context(), ss); err == nil && live {
				http.Redirect(w, r, Prefix+"certificates", http.StatusSeeOther)
				return
			}
		}
	}
	// Fixed messages only: the query never puts its own text on the page.
	switch r.URL.Query().Get("ended") {
	case "revoked":
		d.showLogin(w, r, http.StatusOK, msgRevoked, true)
	case "expired":
		d.showLogin(w, r, http.StatusOK, msgEnded, true)
	default:
		d.showLogin(w, r, http.StatusOK, "", false)
	}
}

// Why a session ended.
const (
	msgEnded   = "Your session has ended (logged out, idle too long, or the server restarted). Log in again."
	msgRevoked = "Your session has ended: its API token was revoked. Log in with a valid token."
)

func (d *Dashboard) showLogin(w http.ResponseWriter, r *http.Request, status int, msg string, isErr bool) {
	csrf, err := randomToken()
	if err != nil {
		d.internalError(w, r, nil, err)
		return
	}
	d.setCookie(w, r, loginCookie, csrf, 600)
	d.render(w, r, nil, status, "login", page{Title: "Log in", CSRF: csrf, Flash: msg, FlashErr: isErr})
}

// login checks the login form's CSRF token (double-submitted: cookie and
// field) and the API token, then starts a session.
func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if !sameOrigin(r) {
		d.errorPage(w, r, nil, http.StatusForbidden, "Refused: the request did not come from this dashboard (cross-origin).")
		return
	}
	c, err := r.Cookie(loginCookie)
	got := ""
	if parseForm(r) == nil {
		got = r.PostFormValue(csrfField)
	}
	if err != nil || got == "" || c.Value != got {
		d.showLogin(w, r, http.StatusForbidden, "Refused: missing or wrong CSRF token. Try again.", true)
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	p, err := d.svc.Authenticate(r.Context(), token)
	if err != nil {
		if errors.Is(err, controlplane.ErrUnauthenticated) && errors.Unwrap(err) == nil {
			d.showLogin(w, r, http.StatusUnauthorized, "Authentication error: that is not a valid, unrevoked API token.", true)
			return
		}
		d.internalError(w, r, nil, err)
		return
	}
	if p.Scope != storage.ScopeRead && p.Scope != storage.ScopeWrite {
		d.showLogin(w, r, http.StatusForbidden, fmt.Sprintf("A %s token cannot use the dashboard: log in with a read or write token.", p.Scope), true)
		return
	}
	cookie, _, err := d.sessions.create(p)
	if err != nil {
		d.internalError(w, r, nil, err)
		return
	}
	d.setCookie(w, r, loginCookie, "", -1)
	d.setCookie(w, r, sessionCookie, cookie, 0)
	d.log.Info("dashboard login", "account", p.AccountID, "token_id", p.TokenID, "scope", p.Scope)
	http.Redirect(w, r, Prefix+"certificates", http.StatusSeeOther)
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request, ss *session) {
	d.sessions.end(ss)
	d.setCookie(w, r, sessionCookie, "", -1)
	d.showLogin(w, r, http.StatusOK, "You are logged out.", false)
}
