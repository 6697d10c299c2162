package agent

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

// FuzzLoadConfig: any config file either loads into a valid config or is
// an ErrConfig naming the problem; it never panics.
func FuzzLoadConfig(f *testing.F) {
	f.Add([]byte(`{"control_plane_url":"https://x.example/client/v4","account_id":"0123456789abcdef0123456789abcdef","api_token":"t"}`))
	f.Add([]byte(`{"stores":"system,dir:/a","poll_interval":30,"remove_retired":0,"pin_sha256":[""]}`))
	f.Add([]byte(`{"retired_fingerprints":["F5:E1"],"log_level":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		p := platform.Paths{ConfigFile: filepath.Join(dir, "config.json"), StateDir: "/var/lib/certagent"}
		if err := os.WriteFile(p.ConfigFile, data, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, local := range []bool{true, false} {
			c, err := LoadConfig(p, LoadOptions{Local: local, GOOS: "linux"})
			if err != nil {
				if !errors.Is(err, ErrConfig) {
					t.Fatalf("error %v does not wrap ErrConfig", err)
				}
				continue
			}
			if len(c.Stores) == 0 || c.PollInterval < MinPollInterval || !filepath.IsAbs(c.StateDir) {
				t.Fatalf("accepted an invalid config: %+v", c)
			}
			if !local && (c.APIToken == "" || !api.ValidAccountID(c.AccountID)) {
				t.Fatalf("accepted a config without token or account: %+v", c)
			}
		}
	})
}

// FuzzLoadLedger: a damaged ledger is ErrLedgerCorrupt (the agent then
// refuses to act), never a panic; a loaded one survives a round trip.
func FuzzLoadLedger(f *testing.F) {
	l := NewLedger()
	ca := trusttest.NewCA(f)
	l.set(entryFor(LedgerKey{Store: "dir:/a", FP: ca.FP}, ca.Cert, StateInstalled, ca.X509.NotBefore))
	l.Certs[ca.FP] = ledgerCert(ca.Cert)
	good, err := l.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(`{"version":1,"entries":[{"store":"x","fingerprint":"00","state":"installed"}],"certs":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "ledger.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := LoadLedger(path)
		if err != nil {
			if !errors.Is(err, ErrLedgerCorrupt) {
				t.Fatalf("error %v does not wrap ErrLedgerCorrupt", err)
			}
			return
		}
		if err := l.Save(path); err != nil {
			t.Fatal(err)
		}
		again, err := LoadLedger(path)
		if err != nil {
			t.Fatalf("a saved ledger does not load: %v", err)
		}
		if !again.Equal(l) {
			t.Fatal("ledger changed in a round trip")
		}
	})
}

// FuzzEvaluate: whatever the certificate list holds, only deployed,
// policy-accepted roots whose PEM matches their fingerprint are desired.
func FuzzEvaluate(f *testing.F) {
	ca := trusttest.NewCA(f)
	good, _ := json.Marshal([]api.Certificate{{ID: "a", BindingStatus: api.StatusAvailable, Certificate: string(ca.PEM()), Fingerprint: ca.FP.String()}})
	f.Add(good)
	f.Add([]byte(`[{"id":"x","binding_status":"active","certificate":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}]`))
	f.Add([]byte(`[{"binding_status":"inactive"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var certs []api.Certificate
		if json.Unmarshal(data, &certs) != nil {
			return
		}
		ev, err := Evaluate(certs, trust.Policy{}, nil)
		if err != nil {
			if !errors.Is(err, ErrIntegrity) {
				t.Fatalf("error %v does not wrap ErrIntegrity", err)
			}
			return
		}
		for _, c := range ev.Desired {
			if _, err := (trust.Policy{}).Check(trust.Candidate{PEM: c.PEM()}); err != nil {
				t.Fatalf("desired root fails the policy: %v", err)
			}
		}
	})
}

// FuzzParsePin never panics and accepts only 32-byte values.
func FuzzParsePin(f *testing.F) {
	f.Add("sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
	f.Add("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParsePin(s)
	})
}
