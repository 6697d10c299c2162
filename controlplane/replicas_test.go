package controlplane_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/seal"
	"github.com/certagent/certagent/controlplane/storage"
	"github.com/certagent/certagent/controlplane/storage/sqlite"
)

// TestTwoReplicasOneDatabase runs two Services, each with its own
// connection pools and deployer, on one SQLite file, as two `certplane
// serve` processes would: every transition is completed exactly once, and a
// long-poll held by one replica wakes on the other's change.
func TestTwoReplicasOneDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "certplane.db")
	sealer, err := seal.New(bytes.Repeat([]byte{1}, seal.KeySize))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	var replicas [2]*controlplane.Service
	var logs [2]*syncBuffer
	for i := range replicas {
		db, err := sqlite.Open(ctx, path)
		require.NoError(t, err)
		t.Cleanup(func() { db.Close() })
		logs[i] = &syncBuffer{}
		replicas[i], err = controlplane.New(db, controlplane.Options{
			Sealer: sealer, DeployDelay: 30 * time.Millisecond, PollInterval: 20 * time.Millisecond,
			Logger: hclog.New(&hclog.LoggerOptions{Output: logs[i], JSONFormat: true}),
		})
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			replicas[i].Run(ctx)
		}()
	}
	a, b := replicas[0], replicas[1]
	acct, err := a.CreateAccount(ctx, "shared")
	require.NoError(t, err)
	tok, err := b.CreateToken(ctx, acct.ID, storage.ScopeRead)
	require.NoError(t, err)

	// Replica B holds a long-poll on the current list.
	hb := b.Handler(ctx)
	list := func(hdr ...string) *http.Response {
		req, _ := http.NewRequest("GET", controlplane.APIPrefix+"/accounts/"+acct.ID+"/gateway/certificates?wait=50s", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if len(hdr) == 2 {
			req.Header.Set(hdr[0], hdr[1])
		}
		rec := newRecorder()
		hb.ServeHTTP(rec, req)
		return rec.Result()
	}
	first, err := a.Generate(ctx, acct.ID, controlplane.GenerateRequest{})
	require.NoError(t, err)
	etag := list().Header.Get("ETag")
	woke := make(chan *http.Response, 1)
	go func() { woke <- list("If-None-Match", etag) }()
	require.Eventually(t, func() bool { return b.Hub().Waiting(acct.ID) == 1 }, 10*time.Second, time.Millisecond)

	// A's change reaches B's waiter through B's revision check (B's own
	// writes would wake it directly, so only A writes here): the
	// activation, completed by either deployer, makes first available.
	_, err = a.Rules().Activate(ctx, acct.ID, first.ID)
	require.NoError(t, err)
	res := <-woke
	assert.Equal(t, 200, res.StatusCode)
	assert.NotEqual(t, etag, res.Header.Get("ETag"))
	var env struct{ Result []api.Certificate }
	require.NoError(t, json.NewDecoder(res.Body).Decode(&env))
	for _, c := range env.Result {
		if c.ID == first.ID {
			assert.Equal(t, api.StatusAvailable, c.BindingStatus, "woken when it became available, not when it went pending")
		}
	}

	var ids []string
	for i := 1; i < 3; i++ {
		c, err := replicas[i%2].Generate(ctx, acct.ID, controlplane.GenerateRequest{})
		require.NoError(t, err)
		ids = append(ids, c.ID)
	}

	before, err := a.Rules().Revision(ctx, acct.ID)
	require.NoError(t, err)
	for i, id := range ids {
		_, err := replicas[i%2].Rules().Activate(ctx, acct.ID, id)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		certs, _, err := b.Rules().List(ctx, acct.ID)
		if err != nil {
			return false
		}
		for _, c := range certs {
			if c.Status != api.StatusAvailable {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)
	after, err := a.Rules().Revision(ctx, acct.ID)
	require.NoError(t, err)
	assert.Equal(t, before+int64(2*len(ids)), after, "2 activations + 2 completions, each exactly once")

	// A deployer logs its pass after the commit that the loop above saw:
	// wait for the lines, then count them exactly.
	completedTransitions := func() int {
		completed := 0
		for _, l := range logs {
			for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(line), &m) == nil && m["@message"] == "completed transitions" {
					completed += int(m["count"].(float64))
				}
			}
		}
		return completed
	}
	require.Eventually(t, func() bool { return completedTransitions() >= len(ids)+1 }, 10*time.Second, 5*time.Millisecond)
	completed := completedTransitions()
	assert.Equal(t, len(ids)+1, completed, "the two deployers together completed each transition once")
}
