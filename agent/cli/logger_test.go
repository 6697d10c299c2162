package cli

import (
	"io"
	"os"
	"strings"
	"testing"
)

// Every command's logger redacts the API token (sync --verbose used one
// that did not).
func TestNewLoggerRedacts(t *testing.T) {
	const token = "cpt_0123456789abcdef.s3cr3t-t0ken-value"
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	log := newLogger("debug", token)
	os.Stderr = stderr
	log.Info("fetch failed", "url", "https://plane.example/?t="+token, "error", "401 for "+token)
	log.Debug("request", "api_token", "anything")
	w.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	if strings.Contains(out, token) || strings.Contains(out, "anything") {
		t.Errorf("got %s, want the token and api_token's value redacted", out)
	}
	if got, want := strings.Count(out, "REDACTED"), 3; got != want {
		t.Errorf("got %d REDACTED, want %d in %s", got, want, out)
	}
}
