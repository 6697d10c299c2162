package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/platform"
)

func readArchive(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(data))
	require.NoError(t, err)
	tr := tar.NewReader(gz)
	out := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		out[strings.TrimPrefix(h.Name, "certagent-bugreport/")] = b
	}
	return out
}

func TestBugreportNeverContainsToken(t *testing.T) {
	const inline = "cfut_inline_SECRET_token_0123456789"
	const fromFile = "cfut_file_SECRET_token_9876543210"
	const managed = "cfut_managed_SECRET_token_5555"
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(fromFile+"\n"), 0o600))
	anchors := filepath.Join(dir, "anchors")
	require.NoError(t, os.Mkdir(anchors, 0o755))
	state := filepath.Join(dir, "state")
	require.NoError(t, os.Mkdir(state, 0o755))

	tests := []struct {
		name   string
		config map[string]any
		secret string
	}{
		{"inline token", map[string]any{"api_token": inline}, inline},
		{"token file", map[string]any{"api_token_file": tokenFile}, fromFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := map[string]any{
				"control_plane_url": "https://certplane.example.com/client/v4",
				"account_id":        "0123456789abcdef0123456789abcdef",
				"stores":            []string{"dir:" + anchors},
				"state_dir":         state,
			}
			for k, v := range tt.config {
				cfg[k] = v
			}
			b, _ := json.Marshal(cfg)
			cfgPath := filepath.Join(dir, tt.name+".json")
			require.NoError(t, os.WriteFile(cfgPath, b, 0o600))
			managedPath := filepath.Join(dir, "managed.json")
			require.NoError(t, os.WriteFile(managedPath, []byte(`{"poll_interval":"90s","api_token":"`+managed+`"}`), 0o600))
			require.NoError(t, agent.NewLedger().Save(filepath.Join(state, "ledger.json")))
			logs := filepath.Join(dir, "logs")
			require.NoError(t, os.MkdirAll(logs, 0o755))
			// A log line that leaked the token (an old version, a proxy).
			require.NoError(t, os.WriteFile(filepath.Join(logs, "certagent.log"), []byte("GET /x Authorization: Bearer "+tt.secret+"\n"), 0o600))

			paths := platform.Paths{ConfigFile: cfgPath, ManagedFile: managedPath, StateDir: state, LogDir: logs,
				Socket: filepath.Join(dir, "no-daemon.sock")}
			data, err := buildBugreport(context.Background(), paths)
			require.NoError(t, err)
			files := readArchive(t, data)
			for _, want := range []string{"status.json", "status.txt", "config.json", "managed.json", "ledger.json", "system.json", "logs/certagent.log"} {
				if _, ok := files[want]; !ok {
					t.Errorf("archive lacks %s (notes: %s)", want, files["notes.txt"])
				}
			}
			var storeListing bool
			for name := range files {
				storeListing = storeListing || strings.HasPrefix(name, "stores/")
			}
			require.True(t, storeListing, "store listings present")
			for name, content := range files {
				for _, s := range []string{inline, fromFile, managed} {
					if bytes.Contains(content, []byte(s)) {
						t.Errorf("%s contains a secret", name)
					}
				}
			}
			require.Contains(t, string(files["config.json"]), "account_id", "the config is there, redacted")
			if _, ok := tt.config["api_token"]; ok {
				require.Contains(t, string(files["config.json"]), `"api_token": "REDACTED"`)
			}
			require.Contains(t, string(files["managed.json"]), `"api_token": "REDACTED"`)
			require.Contains(t, string(files["logs/certagent.log"]), "Bearer REDACTED")
			// With no daemon, status says so.
			var st map[string]any
			require.NoError(t, json.Unmarshal(files["status.json"], &st))
			require.Equal(t, false, st["daemon"].(map[string]any)["running"])
		})
	}
}

func TestBugreportBrokenConfigWithheld(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.json")
	require.NoError(t, os.WriteFile(cfgPath, []byte(`{"api_token": "cfut_broken_SECRET_abc", `), 0o600))
	got := redactedConfig(cfgPath)
	require.NotContains(t, string(got), "cfut_broken_SECRET_abc")
	require.Contains(t, string(got), "withheld")
}

func TestSanitizeName(t *testing.T) {
	for in, want := range map[string]string{"dir:/srv/roots": "dir__srv_roots", "../x": ".._x", "": "unnamed"} {
		if got := sanitizeName(in); got != want {
			t.Errorf("sanitizeName(%q): got %q, want %q", in, got, want)
		}
	}
}
