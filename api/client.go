package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MaxResponseBytes bounds how much of a response body the client reads. A
// full list of 15 certificates is about 40 KiB; anything near this limit is
// not an answer we should act on.
const MaxResponseBytes = 4 << 20

// Sentinel errors for errors.Is.
var (
	// ErrNotModified is returned by ListIfChanged when the server answered
	// 304 to our If-None-Match.
	ErrNotModified = errors.New("api: not modified")
	// ErrMalformed wraps every answer that is not a well-formed envelope:
	// HTML error pages, truncated JSON, empty bodies, oversize bodies.
	ErrMalformed = errors.New("api: malformed response")
	// ErrRedirect wraps every 3xx answer (other than 304 to our
	// If-None-Match). The client never follows one: the token goes to the
	// configured origin only, and an answer from anywhere else is not the
	// control plane's (DESIGN.md §6.2).
	ErrRedirect = errors.New("api: redirect refused")
)

// Error is a failed API call: the server answered with an HTTP status and,
// usually, an envelope with success:false.
type Error struct {
	Method     string
	Path       string
	StatusCode int
	// Errors are the envelope's errors; empty when the body had none.
	Errors []Message
	// Detail says what the body was when it was not an envelope ("text/html
	// body: a proxy or captive portal?"), or "".
	Detail string
	// RetryAfter is the server's Retry-After (429, 503), or 0.
	RetryAfter time.Duration
	// Location is a 3xx answer's Location header (cleaned for printing),
	// or "".
	Location string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "api: %s %s: HTTP %d", e.Method, e.Path, e.StatusCode)
	if isRedirect(e.StatusCode) {
		loc := e.Location
		if loc == "" {
			loc = "(no Location)"
		}
		fmt.Fprintf(&b, ": redirect to %s refused: the agent only talks to the configured control_plane_url", loc)
	}
	for i, m := range e.Errors {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		// The server's text goes to logs and terminals: no control
		// characters, bounded length.
		fmt.Fprintf(&b, "%d %s", m.Code, clean(m.Message, 200))
		if i == 4 && len(e.Errors) > 5 {
			fmt.Fprintf(&b, "; and %d more", len(e.Errors)-5)
			break
		}
	}
	if len(e.Errors) == 0 && e.Detail != "" {
		b.WriteString(" (" + e.Detail + ")")
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// clean makes server-supplied text safe to print: control characters
// become '?', and it is cut to max bytes.
func clean(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

// Unwrap lets errors.Is(err, ErrRedirect) match a refused redirect.
func (e *Error) Unwrap() error {
	if isRedirect(e.StatusCode) {
		return ErrRedirect
	}
	return nil
}

// isRedirect reports whether status is a 3xx other than 304 (which is an
// answer to If-None-Match, handled on its own).
func isRedirect(status int) bool {
	return status >= 300 && status <= 399 && status != http.StatusNotModified
}

// Code returns the first error code, or 0.
func (e *Error) Code() int {
	if len(e.Errors) == 0 {
		return 0
	}
	return e.Errors[0].Code
}

// IsAuth reports whether err is an authentication or authorisation failure
// (401 or 403), which retrying will not fix.
func IsAuth(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden)
}

// StatusCode returns the HTTP status of an *Error in err's chain, or 0.
func StatusCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

var accountIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// ValidAccountID reports whether id is 32 lower-case hex characters.
func ValidAccountID(id string) bool { return accountIDPattern.MatchString(id) }

// Client calls the Gateway certificate API of one account.
type Client struct {
	base      *url.URL
	accountID string
	token     string
	hc        *http.Client
	userAgent string
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithHTTPClient sets the HTTP client (timeouts, TLS pinning, transport).
func WithHTTPClient(hc *http.Client) ClientOption { return func(c *Client) { c.hc = hc } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) ClientOption { return func(c *Client) { c.userAgent = ua } }

// NewClient returns a client for baseURL (for example
// "https://api.cloudflare.com/client/v4") and one account.
func NewClient(baseURL, accountID, token string, opts ...ClientOption) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("api: control plane URL %q: %w", baseURL, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("api: control plane URL %q: scheme must be https or http", baseURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("api: control plane URL %q: no host", baseURL)
	}
	if !ValidAccountID(accountID) {
		return nil, fmt.Errorf("api: account id %q: want 32 lower-case hex characters", accountID)
	}
	c := &Client{
		base:      u,
		accountID: accountID,
		token:     token,
		hc:        &http.Client{Timeout: 30 * time.Second},
		userAgent: "certagent",
	}
	for _, o := range opts {
		o(c)
	}
	// Every request of this client (list, long-poll, get, download, and
	// whatever is added later) goes through c.hc: refusing redirects here,
	// once, means none can be followed. A copy, so the caller's client is
	// left as it was.
	hc := *c.hc
	hc.CheckRedirect = refuseRedirect
	c.hc = &hc
	return c, nil
}

// refuseRedirect stops net/http from following any redirect: the 3xx
// answer itself comes back, and the client turns it into an error. Go
// would otherwise resend the Authorization header to a Location on the
// same host but another port, and install whatever that answered.
func refuseRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// AccountID returns the account the client works on.
func (c *Client) AccountID() string { return c.accountID }

// ListResult is a certificate list with the validators the server gave.
type ListResult struct {
	Certificates []Certificate
	// ETag is the server's entity tag for this list, or "".
	ETag string
	// Date is the server's Date header (zero when absent); status uses it to
	// report clock skew.
	Date time.Time
}

// List returns every certificate of the account. Certificates whose
// "certificate" field is missing are completed with a GET each.
func (c *Client) List(ctx context.Context) ([]Certificate, error) {
	res, err := c.ListIfChanged(ctx, "", 0)
	if err != nil {
		return nil, err
	}
	return res.Certificates, nil
}

// ListIfChanged lists the certificates unless they still match etag, in
// which case it returns ErrNotModified (with Date set on the result). When
// wait is positive and the server supports it, the server holds the request
// up to wait until the list changes (certplane's long-poll extension).
func (c *Client) ListIfChanged(ctx context.Context, etag string, wait time.Duration) (*ListResult, error) {
	path := c.gatewayPath("certificates")
	q := url.Values{}
	if wait > 0 && etag != "" {
		q.Set("wait", fmt.Sprintf("%ds", int(wait/time.Second)))
	}
	hdr := http.Header{}
	if etag != "" {
		hdr.Set("If-None-Match", etag)
	}
	var certs []Certificate
	resp, err := c.doWith(ctx, c.clientForWait(wait), http.MethodGet, path, q, hdr, nil, &certs)
	res := &ListResult{}
	if resp != nil {
		res.ETag = resp.Header.Get("ETag")
		if d, perr := http.ParseTime(resp.Header.Get("Date")); perr == nil {
			res.Date = d
		}
	}
	if err != nil {
		if errors.Is(err, ErrNotModified) {
			return res, err
		}
		return nil, err
	}
	if certs == nil {
		// "result": null on success is not a list; treat it as malformed
		// rather than as "the account has no certificates".
		return nil, fmt.Errorf("%w: GET %s: result is null, want a list", ErrMalformed, path)
	}
	for i := range certs {
		if strings.TrimSpace(certs[i].Certificate) != "" {
			continue
		}
		if certs[i].ID == "" {
			return nil, fmt.Errorf("%w: GET %s: certificate %d has neither id nor PEM", ErrMalformed, path, i)
		}
		full, err := c.Get(ctx, certs[i].ID)
		if err != nil {
			return nil, fmt.Errorf("api: fetching PEM of %s: %w", certs[i].ID, err)
		}
		if strings.TrimSpace(full.Certificate) == "" {
			return nil, fmt.Errorf("%w: GET certificate %s: no PEM", ErrMalformed, certs[i].ID)
		}
		certs[i].Certificate = full.Certificate
	}
	res.Certificates = certs
	return res, nil
}

// ErrBadID is returned for a certificate id that cannot be part of a URL
// path: empty, "." or "..", or with a slash or control character.
var ErrBadID = errors.New("api: bad certificate id")

// checkID refuses ids that would change which URL is requested. Ids come
// from callers and from list answers, so they are untrusted.
func checkID(id string) error {
	if id == "" || id == "." || id == ".." || len(id) > 128 || strings.ContainsAny(id, "/\\?#%") ||
		strings.IndexFunc(id, func(r rune) bool { return r < 0x21 || r == 0x7f }) >= 0 {
		return fmt.Errorf("%w: %q", ErrBadID, clean(id, 64))
	}
	return nil
}

// Get returns one certificate.
func (c *Client) Get(ctx context.Context, id string) (*Certificate, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	var out Certificate
	if _, err := c.do(ctx, http.MethodGet, c.gatewayPath("certificates", id), nil, nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Generate creates a new gateway-managed root; it starts inactive.
// validityDays 0 means the server's default.
func (c *Client) Generate(ctx context.Context, validityDays int) (*Certificate, error) {
	var out Certificate
	body := GenerateRequest{ValidityPeriodDays: validityDays}
	if _, err := c.do(ctx, http.MethodPost, c.gatewayPath("certificates"), nil, nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Activate deploys a certificate (inactive → pending_deployment → available).
func (c *Client) Activate(ctx context.Context, id string) (*Certificate, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	return c.post(ctx, c.gatewayPath("certificates", id, "activate"))
}

// Deactivate withdraws a certificate (→ pending_deletion → inactive).
func (c *Client) Deactivate(ctx context.Context, id string) (*Certificate, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	return c.post(ctx, c.gatewayPath("certificates", id, "deactivate"))
}

// Delete removes an inactive certificate. A success whose result is null
// (some v4 endpoints answer deletes that way) returns a Certificate with
// only the id set.
func (c *Client) Delete(ctx context.Context, id string) (*Certificate, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if _, err := c.do(ctx, http.MethodDelete, c.gatewayPath("certificates", id), nil, nil, nil, &raw); err != nil {
		return nil, err
	}
	out := Certificate{ID: id}
	if string(raw) != "null" {
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, fmt.Errorf("api: DELETE certificate %s: %w: result: %v", id, ErrMalformed, err)
		}
	}
	return &out, nil
}

// GetConfiguration returns the account's Gateway configuration.
func (c *Client) GetConfiguration(ctx context.Context) (*GatewayConfiguration, error) {
	var out GatewayConfiguration
	if _, err := c.do(ctx, http.MethodGet, c.gatewayPath("configuration"), nil, nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetInUse turns certificate id on for inspection (PATCH, so other settings
// are left alone). NilUUID turns the account's own certificates off.
func (c *Client) SetInUse(ctx context.Context, id string) (*GatewayConfiguration, error) {
	var out GatewayConfiguration
	body := ConfigurationRequest{Settings: GatewaySettings{Certificate: &CertificateSetting{ID: id, InUse: id != NilUUID}}}
	if _, err := c.do(ctx, http.MethodPatch, c.gatewayPath("configuration"), nil, nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Upload adds a custom (BYO-PKI) root with its private key. It then appears
// in List with the same id and type "custom".
func (c *Client) Upload(ctx context.Context, name, certPEM, keyPEM string) (*MTLSUpload, error) {
	var out MTLSUpload
	body := UploadRequest{Name: name, Certificates: certPEM, PrivateKey: keyPEM, CA: true}
	path := "/accounts/" + c.accountID + "/mtls_certificates"
	if _, err := c.do(ctx, http.MethodPost, path, nil, nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Download returns a certificate in "pem" or "crt" (DER) form, through
// certplane's download extension.
func (c *Client) Download(ctx context.Context, id, format string) ([]byte, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	q := url.Values{"format": {format}}
	path := c.gatewayPath("certificates", id, "download")
	req, err := c.newRequest(ctx, http.MethodGet, path, q, nil, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("api: GET %s: %w", path, c.redact(err))
	}
	defer resp.Body.Close()
	body, err := readLimited(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("api: GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, c.failure(http.MethodGet, path, resp, body)
	}
	if len(body) == 0 {
		return nil, fmt.Errorf("api: GET %s: %w: empty body", path, ErrMalformed)
	}
	return body, nil
}

func (c *Client) post(ctx context.Context, path string) (*Certificate, error) {
	var out Certificate
	if _, err := c.do(ctx, http.MethodPost, path, nil, nil, struct{}{}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) gatewayPath(parts ...string) string {
	p := "/accounts/" + c.accountID + "/gateway"
	for _, s := range parts {
		p += "/" + url.PathEscape(s)
	}
	return p
}

func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, hdr http.Header, body any) (*http.Request, error) {
	u := *c.base
	// path is already escaped (gatewayPath); keep that form on the wire and
	// the decoded one in Path, or an escaped id would be escaped twice.
	decoded, err := url.PathUnescape(path)
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	u.Path = c.base.Path + decoded
	u.RawPath = c.base.EscapedPath() + path
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("api: encoding %s %s body: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// clientForWait returns the HTTP client for a long-poll of up to wait: the
// configured one with its timeout stretched by wait, so a server that holds
// the request as asked is not cut off by a whole-request timeout shorter
// than the hold.
func (c *Client) clientForWait(wait time.Duration) *http.Client {
	if wait <= 0 || c.hc.Timeout <= 0 {
		return c.hc
	}
	cp := *c.hc
	cp.Timeout += wait
	return &cp
}

// do sends a request and decodes a successful envelope's result into out.
// The response is returned (body closed) so callers can read headers.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, hdr http.Header, body, out any) (*http.Response, error) {
	return c.doWith(ctx, c.hc, method, path, q, hdr, body, out)
}

// doWith is do through hc.
func (c *Client) doWith(ctx context.Context, hc *http.Client, method, path string, q url.Values, hdr http.Header, body, out any) (*http.Response, error) {
	req, err := c.newRequest(ctx, method, path, q, hdr, body)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: %w", method, path, c.redact(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified {
		return resp, ErrNotModified
	}
	raw, err := readLimited(resp.Body)
	if err != nil {
		return resp, fmt.Errorf("api: %s %s: HTTP %d: %w", method, path, resp.StatusCode, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp, c.failure(method, path, resp, raw)
	}
	env, err := decodeEnvelope(resp, raw)
	if err != nil {
		return resp, fmt.Errorf("api: %s %s: HTTP %d: %w", method, path, resp.StatusCode, err)
	}
	if !env.Success {
		if len(env.Errors) == 0 {
			return resp, fmt.Errorf("api: %s %s: HTTP %d: %w: success is false but there are no errors", method, path, resp.StatusCode, ErrMalformed)
		}
		return resp, &Error{Method: method, Path: path, StatusCode: resp.StatusCode, Errors: c.withoutToken(env.Errors)}
	}
	if out != nil {
		if len(env.Result) == 0 {
			return resp, fmt.Errorf("api: %s %s: %w: success without a result", method, path, ErrMalformed)
		}
		if _, raw := out.(*json.RawMessage); !raw && string(env.Result) == "null" {
			if _, list := out.(*[]Certificate); !list {
				return resp, fmt.Errorf("api: %s %s: %w: success with a null result", method, path, ErrMalformed)
			}
		}
		if err := json.Unmarshal(env.Result, out); err != nil {
			return resp, fmt.Errorf("api: %s %s: %w: result: %v", method, path, ErrMalformed, err)
		}
	}
	return resp, nil
}

// failure builds the error for a non-2xx answer, keeping the envelope's
// errors when the body is one.
func (c *Client) failure(method, path string, resp *http.Response, raw []byte) error {
	e := &Error{Method: method, Path: path, StatusCode: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	if isRedirect(resp.StatusCode) {
		loc := resp.Header.Get("Location")
		if len(c.token) >= 4 {
			loc = strings.ReplaceAll(loc, c.token, "REDACTED")
		}
		e.Location = clean(loc, 200)
	}
	env, err := decodeEnvelope(resp, raw)
	if err != nil {
		// A failure's messages are only words for the admin, whatever its
		// Content-Type says; an answer that changes the desired set must
		// still be labelled JSON (decodeEnvelope).
		var plain Envelope
		if json.Unmarshal(raw, &plain) == nil {
			env = &plain
		}
	}
	if env != nil {
		e.Errors = c.withoutToken(env.Errors)
	}
	if len(e.Errors) == 0 {
		e.Detail = bodyKind(resp, raw)
	}
	return e
}

// withoutToken returns the server's messages with our token replaced: a
// proxy or server that echoes the Authorization header ("invalid token
// X") must not carry the token into errors, which reach status.json (read
// by every local user), logs and terminals.
func (c *Client) withoutToken(ms []Message) []Message {
	if len(c.token) < 4 { // a shorter "token" would redact ordinary words
		return ms
	}
	out := make([]Message, len(ms))
	for i, m := range ms {
		m.Message = strings.ReplaceAll(m.Message, c.token, "REDACTED")
		out[i] = m
	}
	return out
}

// redactedError is a transport error whose text carried our token: Go's
// HTTP client quotes a malformed header line it received, and a hostile
// server can put the token there. The text is redacted; errors.Is still
// sees the cause (context.Canceled, a timeout).
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact returns err with our token replaced in its text.
func (c *Client) redact(err error) error {
	if len(c.token) < 4 || !strings.Contains(err.Error(), c.token) {
		return err
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), c.token, "REDACTED"), err: err}
}

// bodyKind describes a body that carried no envelope errors, for Error.
func bodyKind(resp *http.Response, raw []byte) string {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	trimmed := bytes.TrimSpace(raw)
	switch {
	case len(trimmed) == 0:
		return "empty body"
	case mt == "text/html" || trimmed[0] == '<':
		return "HTML body, not an API answer: a proxy, load balancer or captive portal?"
	case mt != "" && mt != "application/json":
		return mt + " body, not an API answer"
	default:
		return "body is not an API envelope"
	}
}

// retryAfter parses a Retry-After header: delay seconds or an HTTP date.
// Nonsense and the past give 0; more than a day is capped, so a hostile
// answer cannot park the agent.
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(h, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > 86400 {
			secs = 86400
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	}
	if d < 0 {
		return 0
	}
	return min(d, 24*time.Hour)
}

func readLimited(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading body: %w", err)
	}
	if len(b) > MaxResponseBytes {
		return nil, fmt.Errorf("%w: body larger than %d bytes", ErrMalformed, MaxResponseBytes)
	}
	return b, nil
}

func decodeEnvelope(resp *http.Response, raw []byte) (*Envelope, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrMalformed)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		mt, _, perr := mime.ParseMediaType(ct)
		if mt == "text/html" || (len(raw) > 0 && raw[0] == '<') {
			return nil, fmt.Errorf("%w: got %s, not JSON (a proxy or captive portal?): %.80q", ErrMalformed, mt, raw)
		}
		// The API always labels its answers; JSON under another label is
		// something else that happens to parse (a proxy's text/plain page,
		// a file served by a misconfigured origin).
		if perr != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, fmt.Errorf("%w: Content-Type %q, want application/json", ErrMalformed, clean(ct, 80))
		}
	}
	var env Envelope
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&env); err != nil {
		return nil, fmt.Errorf("%w: not a v4 envelope: %v", ErrMalformed, err)
	}
	if len(bytes.TrimSpace(raw[dec.InputOffset():])) != 0 {
		return nil, fmt.Errorf("%w: trailing data after the envelope", ErrMalformed)
	}
	if !env.Success && len(env.Errors) == 0 && len(env.Result) == 0 {
		// {} or {"success":false} alone: there is no way to tell what happened.
		return nil, fmt.Errorf("%w: envelope has neither success nor errors", ErrMalformed)
	}
	return &env, nil
}
