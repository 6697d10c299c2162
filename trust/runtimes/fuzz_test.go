package runtimes

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzConfigReaders feeds arbitrary bytes to everything that reads a file
// someone else wrote: the profile script (status reads it back), a user's
// ~/.aws/config and ~/.curlrc, systemctl's and launchctl's environment
// listings, and CA files. None may panic, and what they return must come
// from the input.
func FuzzConfigReaders(f *testing.F) {
	f.Add([]byte(header + "\nif [ -r /b ]; then\n\t[ -n \"${NODE_EXTRA_CA_CERTS:-}\" ] || export NODE_EXTRA_CA_CERTS=/b\nfi\n"))
	f.Add([]byte("[default]\nca_bundle = /x.pem\n[core]\ncustom_ca_certs_file=/y\n"))
	f.Add([]byte("cacert = \"/z.pem\"\n--cacert:/w\n"))
	f.Add([]byte("A=1\n=2\nB\nC=$'x\\n'\n"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		p := filepath.Join(root, ProfileScript)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, append([]byte(header+"\n"), data...), 0o644); err != nil {
			t.Fatal(err)
		}
		for k, v := range WiredSettings(root) {
			if !strings.Contains(string(data), k+"="+v) {
				t.Errorf("WiredSettings invented %s=%s", k, v)
			}
		}
		cfg := filepath.Join(root, "cfg")
		if err := os.WriteFile(cfg, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if v := iniValue(cfg, "default", "ca_bundle"); v != "" && !strings.Contains(string(data), v) {
			t.Errorf("iniValue invented %q", v)
		}
		_ = curlrcCACert(cfg)
		for k := range parseEnv(data) {
			if k == "" {
				t.Error("parseEnv returned an empty name")
			}
		}
		_ = pemFingerprints(data)
	})
}
