package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane/storage"
)

// APIPrefix is where the v4 API lives, as on api.cloudflare.com.
const APIPrefix = "/client/v4"

// MaxBodyBytes bounds request bodies. The largest legitimate body, a custom
// upload with an RSA-4096 key and its certificate, is under 10 KiB.
const MaxBodyBytes = 64 << 10

// handlerFunc serves one method of one route. It returns the envelope's
// result, or one of the raw results below, or an error.
type handlerFunc func(c *call) (any, error)

// notModified answers 304 with the ETag.
type notModified struct{ etag string }

// withStatus is an envelope result answered with a status other than 200,
// where Cloudflare's schema says so (activate 202, deactivate 201).
type withStatus struct {
	status int
	result any
}

// rawResult is a non-JSON body (downloads).
type rawResult struct {
	contentType string
	filename    string
	body        []byte
}

// route is one API path (below APIPrefix, in http.ServeMux pattern syntax)
// and the handler of each method it serves.
type route struct {
	path    string
	methods map[string]handlerFunc
}

// deviceMethod is the one method a device-scope token may use on the
// route at path: GET on the certificate list, PUT on a device (check in);
// "" for every other route.
func deviceMethod(path string) string {
	switch path {
	case "/accounts/{account}/gateway/certificates":
		return http.MethodGet
	case "/accounts/{account}/certplane/devices/{device}":
		return http.MethodPut
	}
	return ""
}

// call is one request on its way through a handler.
type call struct {
	w       http.ResponseWriter
	r       *http.Request
	s       *Service
	account string
	cert    string
	device  string
	p       Principal
	// stopping ends when the server shuts down, so held long-polls answer.
	stopping context.Context
}

// reqInfo carries what the request log needs out of the handler.
type reqInfo struct {
	account string
	// parked says the request was parked (park): it logs itself when
	// answered, with log and start.
	parked bool
	log    hclog.Logger
	start  time.Time
}

type ctxKey struct{}

// Handler returns the HTTP API. stopping, when it ends, releases held
// long-poll requests so a graceful shutdown does not wait for them; nil
// means never.
func (s *Service) Handler(stopping context.Context) http.Handler {
	if stopping == nil {
		stopping = context.Background()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	for _, rt := range s.routes() {
		pattern := APIPrefix + rt.path
		allow := make([]string, 0, len(rt.methods))
		for method, h := range rt.methods {
			mux.Handle(method+" "+pattern, s.endpoint(h, deviceMethod(rt.path), stopping))
			allow = append(allow, method)
		}
		sort.Strings(allow)
		// The method-less pattern catches every other method with the
		// envelope ServeMux's own 405 would not write. HEAD is named
		// because "GET" patterns also match it, and the API serves none.
		notAllowed := s.methodNotAllowed(allow)
		mux.Handle(pattern, notAllowed)
		if rt.methods[http.MethodGet] != nil && rt.methods[http.MethodHead] == nil {
			mux.Handle(http.MethodHead+" "+pattern, notAllowed)
		}
	}
	mux.HandleFunc("/", s.noRoute)
	list := s.endpoint(handleList, deviceMethod("/accounts/{account}/gateway/certificates"), stopping)
	// Requests parked by this handler are answered and closed when it
	// stops (Service.Run stops any left when it returns).
	context.AfterFunc(stopping, func() { s.parked.stop(stopping) })
	return s.logRequests(s.recoverPanics(s.route(mux, list)))
}

// listPrefix and listSuffix frame the list route's path.
const (
	listPrefix = APIPrefix + "/accounts/"
	listSuffix = "/gateway/certificates"
)

// route refuses unclean paths and hands requests to mux, except the list
// GET, which goes straight to its endpoint: it is every agent's poll and
// long-poll, and a held request parks with the frames above it on its
// stack. Skipping ServeMux's (and a wrapper's) frames keeps a parked
// request's stack small enough for the GC to shrink it to half, which
// is most of what a held long-poll costs beyond Go's HTTP server itself
// (docs/performance.md §4); it also skips the pattern match of every poll.
func (s *Service) route(mux, list http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.cleanPath(w, r) {
			return
		}
		if r.Method == http.MethodGet {
			p := r.URL.Path
			if acct, ok := strings.CutPrefix(p, listPrefix); ok && r.URL.RawPath == "" {
				if acct, ok = strings.CutSuffix(acct, listSuffix); ok && acct != "" && !strings.Contains(acct, "/") {
					r.SetPathValue("account", acct)
					list.ServeHTTP(w, r)
					return
				}
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// recoverPanics answers a handler's panic with the 500 envelope (and logs
// it) instead of net/http's dropped connection; it also gives handlers the
// TLS state of a connection Listener terminated.
func (s *Service) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			r.TLS = tlsState(r)
		}
		rec := &StatusRecorder{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil || v == http.ErrAbortHandler {
				if v != nil {
					panic(v)
				}
				return
			}
			e := newError(http.StatusInternalServerError, CodeInternal, "internal error")
			e.cause = fmt.Errorf("controlplane: panic: %v", v)
			if rec.Status == 0 {
				s.writeError(rec, r, e)
			} else {
				s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", e.cause)
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

func (s *Service) routes() []route {
	const gw = "/accounts/{account}/gateway"
	const cp = "/accounts/{account}/certplane"
	return []route{
		{gw + "/certificates", map[string]handlerFunc{http.MethodGet: handleList, http.MethodPost: handleGenerate}},
		{gw + "/certificates/{cert}", map[string]handlerFunc{http.MethodGet: handleGet, http.MethodDelete: handleDelete}},
		{gw + "/certificates/{cert}/activate", map[string]handlerFunc{http.MethodPost: handleActivate}},
		{gw + "/certificates/{cert}/deactivate", map[string]handlerFunc{http.MethodPost: handleDeactivate}},
		{gw + "/certificates/{cert}/download", map[string]handlerFunc{http.MethodGet: handleDownload}},
		{gw + "/configuration", map[string]handlerFunc{
			http.MethodGet: handleGetConfig, http.MethodPut: handlePutConfig, http.MethodPatch: handlePatchConfig}},
		{"/accounts/{account}/mtls_certificates", map[string]handlerFunc{
			http.MethodGet: handleListCustom, http.MethodPost: handleUpload}},
		{"/accounts/{account}/mtls_certificates/{cert}", map[string]handlerFunc{
			http.MethodGet: handleGetCustom, http.MethodDelete: handleDeleteCustom}},
		// certplane's extension (DESIGN.md §8).
		{cp + "/devices", map[string]handlerFunc{http.MethodGet: handleListDevices}},
		{cp + "/devices/{device}", map[string]handlerFunc{
			http.MethodPut: handleCheckIn, http.MethodGet: handleGetDevice, http.MethodDelete: handleDeleteDevice}},
		{cp + "/certificates/{cert}/readiness", map[string]handlerFunc{http.MethodGet: handleReadiness}},
		{cp + "/settings", map[string]handlerFunc{http.MethodGet: handleGetSettings, http.MethodPatch: handlePatchSettings}},
	}
}

// cleanPath answers a path that is not in canonical form ("//",
// "/./", "/../") with the no-route envelope, where ServeMux would redirect
// to the cleaned path (an API client that sent it has a bug to see), and
// reports whether the request goes on.
func (s *Service) cleanPath(w http.ResponseWriter, r *http.Request) bool {
	if r.RequestURI == "*" {
		// The HTTP/2 preface's PRI * (OPTIONS * is net/http's own): ServeMux would
		// answer an empty 400.
		s.writeError(w, r, newError(http.StatusBadRequest, CodeBadRequest, "no resource %q here", r.RequestURI))
		return false
	}
	p := r.URL.EscapedPath()
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	if clean != p {
		s.noRoute(w, r)
		return false
	}
	return true
}

func (s *Service) noRoute(w http.ResponseWriter, r *http.Request) {
	e := notFound(r.URL.Path)
	e.errs = append(e.errs, api.Message{Code: CodeNoRoute, Message: "No route for that URI"})
	s.writeError(w, r, e)
}

func (s *Service) methodNotAllowed(allow []string) http.Handler {
	list := strings.Join(allow, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", list)
		s.writeError(w, r, newError(http.StatusMethodNotAllowed, CodeMethodNotAllowed,
			"method %s not allowed here; use %s", r.Method, list))
	})
}

// endpoint serves one method of one route: it authorizes the call, checks
// the certificate id, runs h and writes what h returns.
func (s *Service) endpoint(h handlerFunc, deviceMethod string, stopping context.Context) http.Handler {
	// Three calls, so this frame stays small: a held long-poll parks
	// below it (see route).
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := s.prepare(w, r, deviceMethod, stopping)
		if c == nil {
			return
		}
		res, err := h(c)
		s.respond(c, res, err)
	})
}

// prepare authorizes a call and checks its path parameters; nil means
// the answer was written.
func (s *Service) prepare(w http.ResponseWriter, r *http.Request, deviceMethod string, stopping context.Context) *call {
	c := &call{w: w, r: r, s: s, account: r.PathValue("account"), cert: r.PathValue("cert"), stopping: stopping}
	if info, ok := r.Context().Value(ctxKey{}).(*reqInfo); ok {
		info.account = c.account
	}
	if e := s.authorize(c, deviceMethod); e != nil {
		s.writeError(w, r, e)
		return nil
	}
	if dev := r.PathValue("device"); dev != "" {
		id, err := ParseDeviceID(dev)
		if err != nil {
			s.writeError(w, r, newError(http.StatusBadRequest, CodeDeviceID,
				"device id must be a UUID (8-4-4-4-12 hex), as the agent makes on first start"))
			return nil
		}
		c.device = id
	}
	if c.cert != "" {
		if u, err := uuid.Parse(c.cert); err != nil || u.String() != strings.ToLower(c.cert) || len(c.cert) != 36 {
			s.writeError(w, r, notFound(r.URL.Path))
			return nil
		}
		c.cert = strings.ToLower(c.cert)
	}
	return c
}

// respond writes what a handler returned.
func (s *Service) respond(c *call, res any, err error) {
	w, r := c.w, c.r
	if err != nil {
		var dl *storage.DailyLimitError
		if errors.As(err, &dl) {
			w.Header().Set("Retry-After", retryAfter(dl.Next, s.store.Now()))
		}
		s.writeError(w, r, toAPIError(err, r.URL.Path))
		return
	}
	switch v := res.(type) {
	case withStatus:
		s.writeEnvelope(w, r, v.status, v.result)
	case notModified:
		writeNotModified(w, v)
	case paged:
		s.writePaged(w, r, v)
	case listBody:
		writeList(w, v)
	case parkedAnswer:
		// Answered later, by the parked request.
	case rawResult:
		w.Header().Set("Content-Type", v.contentType)
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", v.filename))
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Write(v.body)
	default:
		s.writeEnvelope(w, r, http.StatusOK, res)
	}
}

func writeNotModified(w http.ResponseWriter, v notModified) {
	w.Header().Set("ETag", v.etag)
	w.WriteHeader(http.StatusNotModified)
}

func writeList(w http.ResponseWriter, v listBody) {
	h := w.Header()
	h.Set("ETag", v.v.etag)
	h.Set("Cache-Control", "private, no-cache")
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(v.v.body)
}

// authorize checks the bearer token against the route's account and the
// method's scope.
func (s *Service) authorize(c *call, dm string) *apiError {
	p, e, challenge := s.bearer(c.r.Context(), c.r.Header.Get("Authorization"))
	if e != nil {
		if challenge != "" {
			c.w.Header().Set("WWW-Authenticate", challenge)
		}
		return e
	}
	c.p = p
	if !api.ValidAccountID(c.account) {
		return notFound(c.r.URL.Path)
	}
	if p.AccountID != c.account {
		return newError(http.StatusForbidden, CodeAuth, "Authentication error: the token does not belong to this account")
	}
	if p.Scope == storage.ScopeDevice {
		if dm != c.r.Method {
			return newError(http.StatusForbidden, CodeScope, "the token's scope is device; it can only list certificates and check in")
		}
		return nil
	}
	if dm == http.MethodPut && c.r.Method == http.MethodPut {
		return requireDeviceWriter(p)
	}
	if c.r.Method != http.MethodGet && c.r.Method != http.MethodHead && !p.CanWrite() {
		return toAPIError(ErrReadOnly, c.r.URL.Path)
	}
	return nil
}

// bearer authenticates an Authorization header value. On failure it
// returns the answer (401, or 500 when the database failed) and the
// WWW-Authenticate challenge to send with a 401.
func (s *Service) bearer(ctx context.Context, authorization string) (Principal, *apiError, string) {
	scheme, token, _ := strings.Cut(authorization, " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Principal{}, newError(http.StatusUnauthorized, CodeAuth, "Authentication error"), `Bearer realm="certplane"`
	}
	p, err := s.Authenticate(ctx, token)
	if err != nil {
		if errors.Is(err, ErrUnauthenticated) && errors.Unwrap(err) == nil {
			return Principal{}, newError(http.StatusUnauthorized, CodeAuth, "Authentication error"), `Bearer realm="certplane", error="invalid_token"`
		}
		e := newError(http.StatusInternalServerError, CodeInternal, "internal error")
		e.cause = err
		return Principal{}, e, ""
	}
	return p, nil, ""
}

// retryAfter is the Retry-After value (whole seconds, rounded up, at least
// 1) for a refusal that lifts at next.
func retryAfter(next, now time.Time) string {
	d := next.Sub(now)
	secs := int64(d / time.Second)
	if d%time.Second != 0 {
		secs++
	}
	return strconv.FormatInt(max(secs, 1), 10)
}

func (s *Service) writeEnvelope(w http.ResponseWriter, r *http.Request, status int, result any) {
	raw, err := json.Marshal(result)
	if err != nil {
		e := newError(http.StatusInternalServerError, CodeInternal, "internal error")
		e.cause = fmt.Errorf("controlplane: encode result: %w", err)
		s.writeError(w, r, e)
		return
	}
	// Spliced rather than marshalled through api.Envelope: a RawMessage
	// field is re-validated and compacted byte by byte, which was a quarter
	// of the list's cost.
	b := make([]byte, 0, len(raw)+64)
	b = append(b, `{"success":true,"errors":[],"messages":[],"result":`...)
	b = append(b, raw...)
	b = append(b, "}\n"...)
	writeBody(w, status, b)
}

// writePaged writes a list with its result_info.
func (s *Service) writePaged(w http.ResponseWriter, r *http.Request, p paged) {
	raw, err := json.Marshal(p.result)
	if err == nil {
		var info []byte
		if info, err = json.Marshal(p.info); err == nil {
			b := make([]byte, 0, len(raw)+len(info)+96)
			b = append(b, `{"success":true,"errors":[],"messages":[],"result":`...)
			b = append(b, raw...)
			b = append(b, `,"result_info":`...)
			b = append(b, info...)
			b = append(b, "}\n"...)
			writeBody(w, http.StatusOK, b)
			return
		}
	}
	e := newError(http.StatusInternalServerError, CodeInternal, "internal error")
	e.cause = fmt.Errorf("controlplane: encode result: %w", err)
	s.writeError(w, r, e)
}

func (s *Service) writeError(w http.ResponseWriter, r *http.Request, e *apiError) {
	if e.cause != nil {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", e.cause)
	}
	writeJSON(w, e.status, apiEnvelope(e))
}

// apiEnvelope is e's failure envelope.
func apiEnvelope(e *apiError) api.Envelope {
	return api.Envelope{Success: false, Errors: e.errs, Messages: []api.Message{}, Result: json.RawMessage("null")}
}

func writeJSON(w http.ResponseWriter, status int, env api.Envelope) {
	b, err := json.Marshal(env)
	if err != nil {
		// Envelopes of errors always encode; keep the shape regardless.
		b = []byte(`{"success":false,"errors":[{"code":1000,"message":"internal error"}],"messages":[],"result":null}`)
		status = http.StatusInternalServerError
	}
	writeBody(w, status, append(b, '\n'))
}

func writeBody(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	if w.Header().Get("Cache-Control") == "" {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.WriteHeader(status)
	w.Write(b)
}

// decodeBody reads the request body as one JSON object into v. Unknown
// fields are rejected (a typo such as "validity_days" must not silently
// become the default). An empty body is allowed when allowEmpty, because
// `curl -X POST …/activate` sends none.
func decodeBody(c *call, v any, allowEmpty bool) error {
	return decodeBodyLimit(c, v, allowEmpty, MaxBodyBytes)
}

// decodeBodyLimit is decodeBody with its own size limit.
func decodeBodyLimit(c *call, v any, allowEmpty bool, limit int64) error {
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return newError(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "request body larger than %d bytes", limit)
		}
		return newError(http.StatusBadRequest, CodeMalformedJSON, "reading request body: %v", err)
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		if allowEmpty {
			return nil
		}
		return newError(http.StatusBadRequest, CodeMalformedJSON, "request body is empty; want a JSON object")
	}
	if trimmed[0] != '{' {
		return newError(http.StatusBadRequest, CodeMalformedJSON, "request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return newError(http.StatusBadRequest, CodeMalformedJSON, "malformed JSON: data after the object")
	}
	return nil
}

// jsonError turns a decoding error into a clear 400.
func jsonError(err error) *apiError {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return newError(http.StatusBadRequest, CodeMalformedJSON, "malformed JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "body"
		}
		e := newError(http.StatusBadRequest, CodeMalformedJSON, "field %s: want %s, got JSON %s", field, te.Type, te.Value)
		e.errs[0].Source = &api.Source{Pointer: "/" + strings.ReplaceAll(field, ".", "/")}
		return e
	case errors.Is(err, io.ErrUnexpectedEOF):
		return newError(http.StatusBadRequest, CodeMalformedJSON, "malformed JSON: unexpected end of body")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return newError(http.StatusBadRequest, CodeValidation, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return newError(http.StatusBadRequest, CodeMalformedJSON, "malformed JSON: %v", err)
}

// StatusRecorder remembers the status a handler wrote, for a request log
// (the API's and the dashboard's) and the panic handler.
type StatusRecorder struct {
	http.ResponseWriter
	// Status is the status written; 0 until the handler writes.
	Status int
}

func (r *StatusRecorder) WriteHeader(code int) {
	if r.Status == 0 {
		r.Status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (the list
// endpoint parks held requests with Hijack).
func (r *StatusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *StatusRecorder) Write(b []byte) (int, error) {
	if r.Status == 0 {
		r.Status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// logRequests logs method, path, status, duration and account of every
// request. Never the Authorization header or the query string's secrets
// (there are none: tokens only travel in the header).
func (s *Service) logRequests(next http.Handler) http.Handler {
	log := s.log.Named("http")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !log.IsInfo() {
			// Not logged: no recorder, no request copy (a held long-poll
			// would keep them for its whole wait).
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		info := &reqInfo{log: log, start: start}
		rec := &StatusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), ctxKey{}, info)))
		if info.parked {
			return
		}
		if rec.Status == 0 {
			rec.Status = http.StatusOK
		}
		args := []any{"method", r.Method, "path", r.URL.Path, "status", rec.Status, "duration", time.Since(start).String()}
		if info.account != "" {
			args = append(args, "account", info.account)
		}
		log.Info("request", args...)
	})
}
