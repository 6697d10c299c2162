package platform_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"howett.net/plist"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/platform"
)

// A macOS managed-preferences plist, as an MDM custom-settings payload for
// dev.certagent.agent leaves it, configures the agent: the values the plist
// decoder produces are the ones the config parser wants. (The decoded
// settings go through a JSON managed file so the test runs on every OS.)
func TestManagedPlistConfiguresTheAgent(t *testing.T) {
	dir := t.TempDir()
	managed := filepath.Join(dir, "managed.json")
	b, err := plist.Marshal(map[string]any{
		"control_plane_url": "https://certplane.example.com/client/v4",
		"account_id":        "0123456789abcdef0123456789abcdef",
		"api_token":         "read-token",
		"poll_interval":     120,
		"remove_retired":    false,
		"stores":            []string{"system", "bundle:/Library/certagent/bundle.pem"},
		"PayloadUUID":       "8B6C0E7E-0000-5000-8000-000000000000",
	}, plist.BinaryFormat)
	require.NoError(t, err)
	settings, err := platform.DecodeManagedPlist(b)
	require.NoError(t, err)
	js, err := json.Marshal(settings)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(managed, js, 0o600))

	cfg, err := agent.LoadConfig(platform.Paths{
		ConfigFile:  filepath.Join(dir, "config.json"), // absent: everything is managed
		ManagedFile: managed,
		StateDir:    filepath.Join(dir, "state"),
	}, agent.LoadOptions{GOOS: "darwin"})
	require.NoError(t, err)
	assert.Equal(t, "https://certplane.example.com/client/v4", cfg.ControlPlaneURL)
	assert.Equal(t, 2*time.Minute, cfg.PollInterval)
	assert.False(t, cfg.RemoveRetired)
	assert.Equal(t, []string{"system", "bundle:/Library/certagent/bundle.pem"}, cfg.Stores)
	assert.Equal(t, managed, cfg.Source.Managed)
}
