package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const secretToken = "cfut_s3cr3tT0kenValue0123456789"

func TestLoggerNeverLogsToken(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(LogOptions{Output: &buf, JSON: true, Level: "trace", Secrets: []string{secretToken}})
	l.Info("config loaded", "api_token", secretToken)
	l.Info("request", "header", "Authorization: Bearer "+secretToken)
	l.Error("poll failed", "error", fmt.Errorf("GET /x?token=%s: 401", secretToken))
	l.Named("source").With("token", "whatever-value").Warn("retrying")
	l.Debug("url https://x/" + secretToken)
	l.StandardLogger(nil).Printf("http: %s", secretToken)

	other := "another-token-read-later"
	AddSecret(l, other)
	l.Info("token file changed", "value", other)

	out := buf.String()
	require.NotContains(t, out, secretToken)
	require.NotContains(t, out, other)
	require.NotContains(t, out, "whatever-value")
	require.Equal(t, 7, strings.Count(out, "\n"), "every line still logged:\n%s", out)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), "JSON lines under a service manager: %s", line)
	}
	require.Contains(t, out, Redacted)
}

func TestLoggerRateLimitsRepeats(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := NewLogger(LogOptions{Output: &buf, Level: "info", RepeatWindow: 5 * time.Minute, Now: func() time.Time { return now }})
	fail := errors.New("dial tcp 203.0.113.7:443: connection refused")
	for range 10 { // ten polls a minute apart... within the window
		l.Warn("poll failed", "error", fail)
		now = now.Add(20 * time.Second)
	}
	l.Warn("poll failed", "error", errors.New("a different error"))
	now = now.Add(5 * time.Minute)
	l.Warn("poll failed", "error", fail)
	l.Info("pass done") // info is never suppressed
	l.Info("pass done")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 5, "got:\n%s", buf.String())
	require.Contains(t, lines[2], "repeated=9")
	require.NotContains(t, lines[0], "repeated")
}

func TestLoggerTextOnTerminal(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(LogOptions{Output: &buf, Level: "warn"})
	l.Info("hidden")
	l.Warn("shown", "store", "nss")
	out := buf.String()
	require.NotContains(t, out, "hidden")
	require.Contains(t, out, "[WARN]  certagent: shown: store=nss")
}

func TestLogFileRotates(t *testing.T) {
	dir := t.TempDir()
	lf, err := OpenLogFile(dir)
	require.NoError(t, err)
	lf.max = 100
	line := []byte(strings.Repeat("x", 39) + "\n")
	for range 6 {
		_, err := lf.Write(line)
		require.NoError(t, err)
	}
	require.NoError(t, lf.Close())
	cur, err := os.ReadFile(filepath.Join(dir, "certagent.log"))
	require.NoError(t, err)
	old, err := os.ReadFile(filepath.Join(dir, "certagent.log.1"))
	require.NoError(t, err)
	if len(cur) > 100 || len(old) > 100 {
		t.Errorf("generations over the limit: %d and %d bytes", len(cur), len(old))
	}
	require.Equal(t, 6*len(line), len(cur)+len(old)+2*len(line), "the oldest generation is dropped, the rest kept")
}
