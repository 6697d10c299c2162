package controlplane_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/seal"
	"github.com/certagent/certagent/controlplane/storage"
	"github.com/certagent/certagent/controlplane/storage/sqlite"
	"github.com/certagent/certagent/controlplane/storage/storagetest"
)

// countingBackend counts the reads that load certificates or keys, to
// prove the 304 path does not.
type countingBackend struct {
	storage.Backend
	certReads atomic.Int64
	// failSnapshots makes Snapshot fail, as a database that went away.
	failSnapshots atomic.Bool
}

// errSnapshot is what Snapshot fails with under failSnapshots.
var errSnapshot = errors.New("test: the database went away")

func (c *countingBackend) Snapshot(ctx context.Context, id string) (storage.Account, []storage.Certificate, error) {
	c.certReads.Add(1)
	if c.failSnapshots.Load() {
		return storage.Account{}, nil, errSnapshot
	}
	return c.Backend.Snapshot(ctx, id)
}

func (c *countingBackend) Certificate(ctx context.Context, a, id string) (storage.Certificate, error) {
	c.certReads.Add(1)
	return c.Backend.Certificate(ctx, a, id)
}

func (c *countingBackend) SealedKey(ctx context.Context, a, id string) ([]byte, error) {
	c.certReads.Add(1)
	return c.Backend.SealedKey(ctx, a, id)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fixture struct {
	svc      *controlplane.Service
	backend  *countingBackend
	clock    *storagetest.Clock
	handler  http.Handler
	account  string
	first    string
	write    string
	read     string
	logs     *syncBuffer
	dbPath   string
	stopping context.CancelFunc
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	dir := tb.TempDir()
	path := filepath.Join(dir, "certplane.db")
	db, err := sqlite.Open(context.Background(), path)
	require.NoError(tb, err)
	tb.Cleanup(func() { db.Close() })
	sealer, err := seal.New(bytes.Repeat([]byte{0x42}, seal.KeySize))
	require.NoError(tb, err)
	logs := &syncBuffer{}
	f := &fixture{
		backend: &countingBackend{Backend: db},
		clock:   storagetest.NewClock(time.Now().UTC()),
		logs:    logs,
		dbPath:  path,
	}
	f.svc, err = controlplane.New(f.backend, controlplane.Options{
		Sealer: sealer, Now: f.clock.Now, DeployDelay: time.Minute,
		Logger: hclog.New(&hclog.LoggerOptions{Output: logs, JSONFormat: true, Level: hclog.Info}),
	})
	require.NoError(tb, err)
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	f.stopping = cancel
	f.handler = f.svc.Handler(ctx)
	a, err := f.svc.CreateAccount(context.Background(), "acme")
	require.NoError(tb, err)
	f.account, f.first = a.ID, a.InUseID
	f.write, err = f.svc.CreateToken(context.Background(), a.ID, storage.ScopeWrite)
	require.NoError(tb, err)
	f.read, err = f.svc.CreateToken(context.Background(), a.ID, storage.ScopeRead)
	require.NoError(tb, err)
	return f
}

func (f *fixture) gw(rest string) string {
	return controlplane.APIPrefix + "/accounts/" + f.account + "/gateway" + rest
}

type response struct {
	status int
	header http.Header
	body   []byte
	env    api.Envelope
}

func (f *fixture) do(tb testing.TB, method, path, token, body string, hdr ...string) response {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	r := response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		require.NoError(tb, json.Unmarshal(r.body, &r.env), "body: %s", r.body)
	}
	return r
}

func (f *fixture) revision(tb testing.TB) int64 {
	tb.Helper()
	rev, err := f.svc.Rules().Revision(context.Background(), f.account)
	require.NoError(tb, err)
	return rev
}

// available generates a certificate and makes it available.
func (f *fixture) available(tb testing.TB) string {
	tb.Helper()
	ctx := context.Background()
	c, err := f.svc.Generate(ctx, f.account, controlplane.GenerateRequest{})
	if err != nil {
		f.clock.Advance(storage.GenerationWindow)
		c, err = f.svc.Generate(ctx, f.account, controlplane.GenerateRequest{})
	}
	require.NoError(tb, err)
	_, err = f.svc.Rules().Activate(ctx, f.account, c.ID)
	require.NoError(tb, err)
	f.clock.Advance(time.Minute)
	_, err = f.svc.Rules().CompleteDue(ctx)
	require.NoError(tb, err)
	return c.ID
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }
