// Package localapi is the daemon's local control surface, after Tailscale's
// LocalAPI: HTTP over a unix socket (a named pipe on Windows), with every
// handler in one map under /localapi/v0/. Reads (status, certs) are open to
// every local user; writes (sync, purge) need root or an Administrators
// token, decided from the kernel's peer credentials, never from anything
// the client sends. Requests carrying Origin or Referer are refused: no
// browser page may drive the daemon, even through a proxy that reaches the
// socket.
package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/agent/status"
	"github.com/certagent/certagent/platform"
)

// Prefix is the path every LocalAPI handler lives under.
const Prefix = "/localapi/v0/"

// Backend is what the LocalAPI needs from the daemon.
type Backend interface {
	// Status returns the live status report.
	Status(ctx context.Context) (*status.Report, error)
	// CertsPEM returns the PEM of every certificate the agent manages.
	CertsPEM(ctx context.Context) ([]byte, error)
	// Sync runs one reconcile pass now and returns its report (nil when
	// no pass ran), with an error when it failed.
	Sync(ctx context.Context, dryRun bool) (*agent.PassReport, error)
	// Purge removes everything the agent installed and returns its report.
	Purge(ctx context.Context) (*agent.PurgeReport, error)
}

// handler is one LocalAPI endpoint.
type handler struct {
	method string
	// write reports whether the endpoint changes the machine, and so needs
	// an admin peer.
	write bool
	serve func(s *Server, w http.ResponseWriter, r *http.Request)
}

// handlers are every endpoint, by the path after Prefix.
var handlers = map[string]handler{
	"status": {method: http.MethodGet, serve: (*Server).serveStatus},
	"certs":  {method: http.MethodGet, serve: (*Server).serveCerts},
	"whoami": {method: http.MethodGet, serve: (*Server).serveWhoami},
	"sync":   {method: http.MethodPost, write: true, serve: (*Server).serveSync},
	"purge":  {method: http.MethodPost, write: true, serve: (*Server).servePurge},
}

// Server serves the LocalAPI.
type Server struct {
	backend Backend
	log     hclog.Logger
}

// NewServer returns a Server over b.
func NewServer(b Backend, log hclog.Logger) *Server {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Server{backend: b, log: log}
}

type peerKey struct{}

// peerOf returns the peer credentials the connection carried, and whether
// the kernel identified the peer.
func peerOf(ctx context.Context) (platform.PeerCred, bool) {
	pc, ok := ctx.Value(peerKey{}).(platform.PeerCred)
	return pc, ok
}

// Serve answers requests on ln until ctx is done, then shuts down,
// giving in-flight requests a few seconds.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			pc, err := platform.PeerCredOf(c)
			if err != nil {
				s.log.Debug("localapi peer unidentified; writes refused", "error", err)
				return ctx
			}
			return context.WithValue(ctx, peerKey{}, pc)
		},
		ErrorLog: s.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("localapi: serve: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("localapi: serve: %w", err)
		}
		return nil
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Origin") != "" || r.Header.Get("Referer") != "" {
		// A browser sent this (CSRF through a proxy or a local web page).
		writeError(w, http.StatusForbidden, "browser requests are not allowed")
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, Prefix)
	h, found := handlers[name]
	if !ok || !found {
		writeError(w, http.StatusNotFound, "no such LocalAPI endpoint: "+r.URL.Path)
		return
	}
	if r.Method != h.method {
		w.Header().Set("Allow", h.method)
		writeError(w, http.StatusMethodNotAllowed, "use "+h.method)
		return
	}
	if h.write {
		pc, ok := peerOf(r.Context())
		if !ok || !pc.Admin {
			s.log.Info("localapi write refused", "endpoint", name, "uid", pc.UID, "pid", pc.PID, "user", pc.User)
			writeError(w, http.StatusForbidden, name+" changes the machine's trust stores and needs root or Administrator (try: sudo certagent "+name+")")
			return
		}
		s.log.Info("localapi write", "endpoint", name, "uid", pc.UID, "pid", pc.PID, "user", pc.User)
	}
	h.serve(s, w, r)
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	rep, err := s.backend.Status(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) serveCerts(w http.ResponseWriter, r *http.Request) {
	pem, err := s.backend.CertsPEM(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(pem)
}

func (s *Server) serveWhoami(w http.ResponseWriter, r *http.Request) {
	pc, ok := peerOf(r.Context())
	if !ok {
		writeError(w, http.StatusForbidden, "peer credentials unavailable")
		return
	}
	writeJSON(w, http.StatusOK, pc)
}

func (s *Server) serveSync(w http.ResponseWriter, r *http.Request) {
	dry := r.URL.Query().Get("dry_run")
	rep, err := s.backend.Sync(r.Context(), dry == "1" || dry == "true")
	writeResult(w, rep, err)
}

func (s *Server) servePurge(w http.ResponseWriter, r *http.Request) {
	rep, err := s.backend.Purge(r.Context())
	writeResult(w, rep, err)
}

// writeResult sends a report even with an error: a pass that failed in
// one store still has per-target results worth showing.
func writeResult[R any](w http.ResponseWriter, rep *R, err error) {
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, reportError[R]{Error: err.Error(), Report: rep})
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// reportError is a failed call's body, with the report when there is one.
type reportError[R any] struct {
	Error  string `json:"error"`
	Report *R     `json:"report,omitempty"`
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
