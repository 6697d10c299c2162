package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane/cli"
)

// TestCLIDevices drives the device commands against a served database
// that a device token checked in to over HTTP.
func TestCLIDevices(t *testing.T) {
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "certplane.db")
	srv := startServer(t, dir, &offsetClock{}, "1ms")
	account := runCLI(t, "account", "create", "--db", db, "--data-dir", dir, "--name", "cli")
	tok := runCLI(t, "token", "create", "--db", db, "--account", account, "--scope", "device")
	c := newClient(t, srv.url, account, tok)
	ctx := context.Background()
	certs, err := c.List(ctx)
	require.NoError(t, err)
	require.Len(t, certs, 1)
	first := certs[0]
	_, err = c.Generate(ctx, 30)
	requireAPIError(t, err, 403, 10001)

	id := uuid.NewString()
	res, err := c.CheckIn(ctx, id, "", api.CheckIn{Hostname: "laptop-1", OS: "linux", OSVersion: "debian 13", AgentVersion: "1.0",
		Roots: []api.RootState{{Fingerprint: first.Fingerprint, Stores: []api.StoreState{
			{Store: "system", State: api.StateTrusted}, {Store: "nss", User: "alice", State: api.StateTrustPending}}}}})
	require.NoError(t, err)
	require.NotEmpty(t, res.DeviceSecret)

	list := runCLI(t, "devices", "list", "--db", db, "--account", account)
	assert.Contains(t, list, id)
	assert.Contains(t, list, "laptop-1")
	var page struct {
		Devices    []api.Device   `json:"devices"`
		ResultInfo api.ResultInfo `json:"result_info"`
	}
	require.NoError(t, json.Unmarshal([]byte(runCLI(t, "devices", "list", "--db", db, "--account", account, "--json", "--stale", "false")), &page))
	assert.Equal(t, 1, page.ResultInfo.TotalCount)
	show := runCLI(t, "devices", "show", id, "--db", db, "--account", account)
	assert.Contains(t, show, "nss:alice")
	assert.Contains(t, show, "trust_pending")

	rd := runCLI(t, "cert", "readiness", first.ID, "--db", db, "--account", account)
	assert.Contains(t, rd, "ready on 0 of 1 active devices (0%; minimum 95%)")
	assert.Contains(t, rd, "nss:alice")
	var r api.Readiness
	require.NoError(t, json.Unmarshal([]byte(runCLI(t, "cert", "readiness", first.ID, "--db", db, "--account", account, "--json")), &r))
	assert.Equal(t, 1, r.Partial)

	// The guard holds on the CLI's door too; --force overrides.
	next := runCLI(t, "cert", "generate", "--db", db, "--data-dir", dir, "--account", account)
	runCLI(t, "cert", "activate", next, "--db", db, "--account", account)
	require.Eventually(t, func() bool {
		return bytes.Contains([]byte(runCLI(t, "cert", "list", "--db", db, "--account", account)), []byte("available  yes")) &&
			!bytes.Contains([]byte(runCLI(t, "cert", "list", "--db", db, "--account", account)), []byte("pending"))
	}, 10*time.Second, 10*time.Millisecond)
	var stderr bytes.Buffer
	code := cli.Main(ctx, []string{"cert", "use", next, "--db", db, "--account", account}, cli.Env{Stdout: &bytes.Buffer{}, Stderr: &stderr})
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr.String(), "ready on 0 of 1 active devices (0%), below the minimum of 95%")
	assert.Contains(t, stderr.String(), "--force")
	assert.Equal(t, next, runCLI(t, "cert", "use", next, "--force", "--db", db, "--account", account))

	assert.Equal(t, "min_readiness 0.5, device_active_days 14",
		runCLI(t, "account", "set", "--db", db, "--account", account, "--min-readiness", "0.5", "--device-active-days", "14"))
	assert.JSONEq(t, `{"min_readiness":0.5,"device_active_days":3}`,
		runCLI(t, "account", "set", "--db", db, "--account", account, "--device-active-days", "3", "--json"))

	assert.Equal(t, "deleted "+id, runCLI(t, "devices", "delete", "--id", id, "--db", db, "--account", account))
	for _, args := range [][]string{
		{"devices", "show", "--db", db, "--account", account, "--id", "laptop"},
		{"devices", "list", "--db", db, "--account", account, "--stale", "maybe"},
		{"devices", "frob", "--db", db, "--account", account},
		{"account", "set", "--db", db, "--account", account},
		{"account", "set", "--db", db, "--account", account, "--min-readiness", "2"},
		{"account", "set", "--db", db, "--account", account, "--device-active-days", "365"},
	} {
		var stderr bytes.Buffer
		code := cli.Main(ctx, args, cli.Env{Stdout: &bytes.Buffer{}, Stderr: &stderr})
		assert.Equal(t, 2, code, "certplane %v: %s", args, stderr.String())
	}
	code = cli.Main(ctx, []string{"devices", "show", "--db", db, "--account", account, "--id", id}, cli.Env{Stdout: &bytes.Buffer{}, Stderr: &stderr})
	assert.Equal(t, 1, code, "a deleted device is gone")
}
