package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzRedactedConfig writes arbitrary JSON config files holding a secret
// under a secret-looking key; whatever the shape, the secret's value must
// not survive into the bug report's copy.
func FuzzRedactedConfig(f *testing.F) {
	f.Add(`{"account_id":"x"}`, "api_token", "cfut_secret_1234")
	f.Add(`{"nested":{"a":1}}`, "client_secret", "pw-987654321")
	f.Add(`not json`, "password", "hunter2hunter2")
	f.Fuzz(func(t *testing.T, base, key, secret string) {
		if len(secret) < 8 || !isSecretKey(key) || strings.HasSuffix(strings.ToLower(key), "_file") {
			return
		}
		var m map[string]any
		if json.Unmarshal([]byte(base), &m) != nil || m == nil {
			m = map[string]any{}
		}
		m[key] = secret
		m["nested"] = map[string]any{key: secret}
		m["list"] = []any{map[string]any{key: secret}}
		b, err := json.Marshal(m)
		if err != nil {
			return
		}
		// A secret that is also a key name or plain JSON syntax cannot be
		// told apart from structure; real tokens never are.
		enc, _ := json.Marshal(secret)
		if strings.Count(string(b), strings.Trim(string(enc), `"`)) != 3 {
			return
		}
		p := filepath.Join(t.TempDir(), "config.json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out := redactedConfig(p)
		if strings.Contains(string(out), strings.Trim(string(enc), `"`)) {
			t.Fatalf("secret under %q survived redaction: %s", key, out)
		}
	})
}
