// Package dashboard is certplane's web page for admins: the product docs'
// certificate flows (generate, activate, confirm and turn on, deactivate,
// delete, download, upload) served under /dashboard/ on the API's listener.
//
// It calls the same controlplane.Service as the API, never the API over
// HTTP, and maps every refusal through controlplane.ErrorResponse, so a
// rule refuses with the same status and the same words whichever door the
// admin used.
//
// Login takes an API token and starts a server-side session: the browser
// holds only a random session id in an HttpOnly, SameSite=Strict cookie
// (Secure under TLS). The session keeps the token's id, not its secret, and
// re-reads the token's row on every request, so revoking the token ends the
// session at once. Sessions live in this process's memory: a restart logs
// everyone out, and each replica has its own. Every state change carries a
// per-session CSRF token; pages forbid inline script and framing.
package dashboard

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/storage"
)

// Prefix is where the dashboard lives on the listener.
const Prefix = "/dashboard/"

// Defaults for Options.
const (
	DefaultIdleTimeout = 30 * time.Minute
	DefaultMaxAge      = 12 * time.Hour
)

// Cookie names. The login cookie carries the login form's CSRF token
// before there is a session.
const (
	sessionCookie = "certplane_session"
	loginCookie   = "certplane_login"
	csrfField     = "csrf_token"
	csrfHeader    = "X-CSRF-Token"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Options configure a Dashboard.
type Options struct {
	// Service is the control plane the dashboard drives. Required.
	Service *controlplane.Service
	// Logger receives errors; nil discards.
	Logger hclog.Logger
	// Now is the clock of sessions; nil means the service's clock.
	Now func() time.Time
	// IdleTimeout ends a session unused this long; zero means
	// DefaultIdleTimeout. MaxAge ends any session this old; zero means
	// DefaultMaxAge.
	IdleTimeout time.Duration
	MaxAge      time.Duration
	// Secure marks cookies Secure. Set it when the listener serves TLS (a
	// request that arrived over TLS gets Secure cookies regardless).
	Secure bool
	// Stopping, when it ends, releases held live-update requests so a
	// graceful shutdown does not wait for them; nil means never.
	Stopping context.Context
}

// Dashboard serves the pages.
type Dashboard struct {
	svc      *controlplane.Service
	log      hclog.Logger
	now      func() time.Time
	secure   bool
	stopping context.Context
	sessions *sessions
	pages    map[string]*template.Template
	static   fs.FS
}

// New returns a Dashboard over opts.Service.
func New(opts Options) (*Dashboard, error) {
	if opts.Service == nil {
		return nil, errors.New("dashboard: no service")
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Now == nil {
		opts.Now = opts.Service.Rules().Now
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.Stopping == nil {
		opts.Stopping = context.Background()
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, fmt.Errorf("dashboard: static assets: %w", err)
	}
	return &Dashboard{
		svc: opts.Service, log: opts.Logger, now: opts.Now, secure: opts.Secure, stopping: opts.Stopping,
		sessions: newSessions(opts.IdleTimeout, opts.MaxAge, opts.Now), pages: pages, static: static,
	}, nil
}

// Handler returns the dashboard's handler for paths under Prefix (and
// "/dashboard", which redirects).
func (d *Dashboard) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /dashboard", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
	})
	mux.HandleFunc("GET /dashboard/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"certificates", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /dashboard/static/{file}", d.serveStatic)
	mux.HandleFunc("GET /dashboard/login", d.loginPage)
	mux.HandleFunc("POST /dashboard/login", d.login)
	mux.HandleFunc("POST /dashboard/logout", d.authed(d.logout, false))

	mux.HandleFunc("GET /dashboard/certificates", d.authed(d.certificatesPage, false))
	mux.HandleFunc("GET /dashboard/certificates.json", d.authed(d.certificatesJSON, false))
	mux.HandleFunc("POST /dashboard/certificates/generate", d.authed(d.generate, true))
	mux.HandleFunc("POST /dashboard/certificates/upload", d.authed(d.upload, true))
	mux.HandleFunc("POST /dashboard/certificates/{id}/activate", d.authed(d.activate, true))
	mux.HandleFunc("POST /dashboard/certificates/{id}/deactivate", d.authed(d.deactivate, true))
	mux.HandleFunc("GET /dashboard/certificates/{id}/delete", d.authed(d.deletePage, false))
	mux.HandleFunc("POST /dashboard/certificates/{id}/delete", d.authed(d.delete, true))
	mux.HandleFunc("GET /dashboard/certificates/{id}/turn-on", d.authed(d.turnOnPage, false))
	mux.HandleFunc("POST /dashboard/certificates/{id}/turn-on", d.authed(d.turnOn, true))
	mux.HandleFunc("GET /dashboard/certificates/{id}/download", d.authed(d.download, false))
	mux.HandleFunc("GET /dashboard/devices", d.authed(d.devicesPage, false))
	mux.HandleFunc("GET /dashboard/settings", d.authed(d.settingsPage, false))
	mux.HandleFunc("POST /dashboard/settings", d.authed(d.saveSettings, true))

	mux.HandleFunc("/dashboard/", func(w http.ResponseWriter, r *http.Request) {
		d.errorPage(w, r, nil, http.StatusNotFound, "No such page.")
	})
	return d.logRequests(d.secureHeaders(mux))
}

// logRequests logs method, path, status and duration of every dashboard
// request, like the API's log. Never the query, a cookie or a form field.
func (d *Dashboard) logRequests(next http.Handler) http.Handler {
	log := d.log.Named("http")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &controlplane.StatusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.Status == 0 {
			rec.Status = http.StatusOK
		}
		log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.Status, "duration", time.Since(start).String())
	})
}

// contentSecurityPolicy allows the dashboard's own script, style and
// fetches, nothing inline, and no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// secureHeaders sets the headers every dashboard response carries.
func (d *Dashboard) secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		// same-origin, not no-referrer: under no-referrer browsers send
		// "Origin: null" on form posts, and the origin check needs the origin.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		if !strings.HasPrefix(r.URL.Path, Prefix+"static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// isSecure reports whether cookies must be Secure for r.
func (d *Dashboard) isSecure(r *http.Request) bool { return d.secure || r.TLS != nil }

func (d *Dashboard) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, Secure: d.isSecure(r), SameSite: http.SameSiteStrictMode,
	})
}

// sameOrigin reports whether a state-changing request came from a page of
// this server. Browsers send Origin on every POST; a request without one
// is not from a browser page (curl), and still needs the CSRF token.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// handlerFunc is a page or action of a logged-in session.
type handlerFunc func(w http.ResponseWriter, r *http.Request, ss *session)

// authed wraps h: it needs a live session whose token is still valid,
// and for POSTs a same-origin request with the session's CSRF token; write
// actions also need a write token.
func (d *Dashboard) authed(h handlerFunc, write bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Cookie(sessionCookie)
		var ss *session
		ok := false
		if c != nil {
			ss, ok = d.sessions.get(c.Value)
		}
		reason, ended := msgEnded, "expired"
		if ok {
			live, err := d.tokenLive(r.Context(), ss)
			if err != nil {
				d.internalError(w, r, ss, err)
				return
			}
			if !live {
				d.sessions.end(ss)
				ok = false
				reason, ended = msgRevoked, "revoked"
			}
		}
		if !ok {
			d.setCookie(w, r, sessionCookie, "", -1)
			if r.Method == http.MethodGet && !strings.HasSuffix(r.URL.Path, ".json") && !strings.HasSuffix(r.URL.Path, "/download") {
				target := Prefix + "login"
				if c != nil {
					target += "?ended=" + ended
				}
				http.Redirect(w, r, target, http.StatusSeeOther)
				return
			}
			d.errorPage(w, r, nil, http.StatusUnauthorized, reason)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = http.MaxBytesReader(w, r.Body, controlplane.MaxBodyBytes)
			if !sameOrigin(r) {
				d.errorPage(w, r, ss, http.StatusForbidden, "Refused: the request did not come from this dashboard (cross-origin).")
				return
			}
			if err := parseForm(r); err != nil {
				var mbe *http.MaxBytesError
				if errors.As(err, &mbe) {
					d.errorPage(w, r, ss, http.StatusRequestEntityTooLarge,
						fmt.Sprintf("Refused: request body larger than %d bytes", controlplane.MaxBodyBytes))
					return
				}
				d.errorPage(w, r, ss, http.StatusBadRequest, "Refused: the form could not be read.")
				return
			}
			got := r.Header.Get(csrfHeader)
			if got == "" {
				got = r.PostFormValue(csrfField)
			}
			if !d.sessions.checkCSRF(ss, got) {
				d.errorPage(w, r, ss, http.StatusForbidden, "Refused: missing or wrong CSRF token. Reload the page and try again.")
				return
			}
			if write && !ss.p.CanWrite() {
				d.refuse(w, r, ss, controlplane.ErrReadOnly)
				return
			}
		}
		h(w, r, ss)
	}
}

// parseForm reads an urlencoded or multipart body (files up to
// MaxBodyBytes stay in memory).
func parseForm(r *http.Request) error {
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		return r.ParseMultipartForm(controlplane.MaxBodyBytes)
	}
	return r.ParseForm()
}

// tokenLive reports whether the session's token still exists, is not
// revoked, and still has the account and scope it logged in with.
func (d *Dashboard) tokenLive(ctx context.Context, ss *session) (bool, error) {
	t, err := d.svc.Rules().Backend().Token(ctx, ss.p.TokenID)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("dashboard: re-check token %s: %w", ss.p.TokenID, err)
	}
	return !t.Revoked() && t.AccountID == ss.p.AccountID && t.Scope == ss.p.Scope, nil
}

func (d *Dashboard) serveStatic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	b, err := fs.ReadFile(d.static, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	switch {
	case strings.HasSuffix(name, ".js"):
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	case strings.HasSuffix(name, ".css"):
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case strings.HasSuffix(name, ".svg"):
		w.Header().Set("Content-Type", "image/svg+xml")
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(b)
}

// Mount returns a handler that serves the dashboard under Prefix and
// everything else with next (the API).
func (d *Dashboard) Mount(next http.Handler) http.Handler {
	dash := d.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/dashboard" || strings.HasPrefix(r.URL.Path, Prefix) {
			dash.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
