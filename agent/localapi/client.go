package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/agent/status"
	"github.com/certagent/certagent/platform"
)

// Sentinel errors of the client.
var (
	// ErrNotRunning means nothing answered on the endpoint: the CLI falls
	// back to reading the state directory.
	ErrNotRunning = errors.New("localapi: daemon not running")
	// ErrForbidden means the daemon refused the request for this user.
	ErrForbidden = errors.New("localapi: forbidden")
)

// Client talks to the daemon's LocalAPI.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client for the endpoint at path (a unix socket path
// or a named pipe name).
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := platform.DialLocalAPI(ctx, path)
			if err != nil {
				return nil, &dialError{err}
			}
			return c, nil
		},
		DisableKeepAlives: true,
	}
	return &Client{path: path, hc: &http.Client{Transport: tr}}
}

// Path is the endpoint the client dials.
func (c *Client) Path() string { return c.path }

// Status returns the daemon's live status report.
func (c *Client) Status(ctx context.Context) (*status.Report, error) {
	var r status.Report
	if err := c.do(ctx, http.MethodGet, "status", &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// CertsPEM returns the PEM of every certificate the daemon manages.
func (c *Client) CertsPEM(ctx context.Context) ([]byte, error) {
	var raw rawBody
	if err := c.do(ctx, http.MethodGet, "certs", &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// WhoAmI returns how the daemon sees this process.
func (c *Client) WhoAmI(ctx context.Context) (platform.PeerCred, error) {
	var pc platform.PeerCred
	err := c.do(ctx, http.MethodGet, "whoami", &pc)
	return pc, err
}

// Sync asks the daemon for one reconcile pass now and returns its report.
// A failed pass returns its error and still its report; the report is nil
// when the daemon sent none (it refused, or no pass ran).
func (c *Client) Sync(ctx context.Context, dryRun bool) (*agent.PassReport, error) {
	ep := "sync"
	if dryRun {
		ep += "?dry_run=1"
	}
	var rep *agent.PassReport
	err := c.do(ctx, http.MethodPost, ep, &rep)
	return rep, err
}

// Purge asks the daemon to remove everything it installed, and returns
// its report (nil when the daemon sent none).
func (c *Client) Purge(ctx context.Context) (*agent.PurgeReport, error) {
	var rep *agent.PurgeReport
	err := c.do(ctx, http.MethodPost, "purge", &rep)
	return rep, err
}

// rawBody receives a response body verbatim.
type rawBody []byte

func (c *Client) do(ctx context.Context, method, endpoint string, out any) error {
	if _, ok := ctx.Deadline(); !ok && method == http.MethodGet {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://certagent.local"+Prefix+endpoint, nil)
	if err != nil {
		return fmt.Errorf("localapi: %w", err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var de *dialError
		if errors.As(err, &de) {
			return fmt.Errorf("%w: %v", ErrNotRunning, de.err)
		}
		return fmt.Errorf("localapi: %s %s: %w", method, endpoint, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("localapi: %s %s: read: %w", method, endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb struct {
			Error  string          `json:"error"`
			Report json.RawMessage `json:"report"`
		}
		_ = json.Unmarshal(body, &eb)
		if eb.Error == "" {
			eb.Error = resp.Status
		}
		if resp.StatusCode == http.StatusForbidden {
			return fmt.Errorf("%w: %s", ErrForbidden, eb.Error)
		}
		if out != nil && len(eb.Report) > 0 && string(eb.Report) != "null" {
			_ = json.Unmarshal(eb.Report, out)
		}
		return fmt.Errorf("localapi: %s: %s", endpoint, eb.Error)
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *rawBody:
		*o = body
		return nil
	default:
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("localapi: %s: decode: %w", endpoint, err)
		}
		return nil
	}
}

// dialError marks a failure to reach the endpoint at all: only that means
// "not running" (a daemon that answers and then fails is running).
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }
