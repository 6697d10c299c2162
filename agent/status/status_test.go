package status

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var now = time.Date(2026, 11, 29, 7, 0, 0, 0, time.UTC)

const (
	fpA = "3F:2A:1B:4C:5D:6E:7F:80:91:A2:B3:C4:D5:E6:F7:08:19:2A:3B:4C:5D:6E:7F:80:91:A2:B3:C4:D5:E6:F7:08"
	fpB = "9E:1B:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD"
	fpR = "F5:E1:56:C4:89:78:77:AD:79:3A:1E:83:FA:77:83:F1:9C:B0:C6:1B:58:2C:2F:50:11:B3:37:72:7C:62:3D:EF"
)

func yes() *bool { b := true; return &b }

func healthy() *Report {
	return &Report{
		Version: "1.2.3", OS: "linux", GeneratedAt: now,
		Daemon: Daemon{Running: true, PID: 4242, StartedAt: now.Add(-3*time.Hour - 12*time.Minute), Service: "running", Source: "localapi"},
		Config: Config{File: "/etc/certagent/config.json", Managed: "/etc/certagent/managed.json", ManagedKeys: []string{"poll_interval"},
			Valid: true, PollInterval: time.Minute, StateDir: "/var/lib/certagent", ReloadedAt: now.Add(-3 * time.Hour)},
		ControlPlane: ControlPlane{URL: "https://certplane.example.com/client/v4", AccountID: "0123456789abcdef0123456789abcdef",
			Reachable: true, LastPoll: now.Add(-12 * time.Second), LastSuccess: now.Add(-12 * time.Second), ClockSkew: time.Second,
			NextPoll: now.Add(48 * time.Second)},
		LastSync: now.Add(-12 * time.Second), LastChange: now.Add(-2 * time.Hour),
		Stores: []Store{{Name: "system", Available: true, Targets: 1},
			{Name: "nss", Available: true, Targets: 2, Skipped: []Skipped{{User: "bob", Reason: "no NSS database (never ran a browser)"}}}},
		Certificates: []Certificate{{
			ID: "5c1e2d3f-0000-4000-8000-000000000001", Fingerprint: fpA, Subject: "Acme Inspection Root",
			NotAfter: now.Add(1825 * 24 * time.Hour), InUse: true, State: CertAvailable,
			Placements: []Placement{
				{Store: "system", State: PlacementInstalled, Trusted: yes()},
				{Store: "nss", User: "alice", Path: "/home/alice/.pki/nssdb", State: PlacementInstalled},
				{Store: "nss", User: "alice", Path: "/home/alice/.mozilla/firefox/ab.default", State: PlacementInstalled},
				{Store: "nss", User: "bob", State: PlacementSkipped, Reason: "no NSS database (never ran a browser)"},
			},
		}},
		Device: Device{ID: "7d4e1f2a-3b5c-4d6e-8f90-a1b2c3d4e5f6", CheckIn: "accepted", Accepted: true,
			LastCheckIn: now.Add(-2 * time.Hour), LastAttempt: now.Add(-2 * time.Hour)},
		Retired: []Removal{{Fingerprint: fpR, Subject: "Cloudflare for Teams ECC Certificate Authority", Store: "system",
			RemovedAt: now.Add(-2 * time.Hour), Why: "retired"}},
	}
}

func degraded() *Report {
	r := healthy()
	r.Config.Problems = []string{"config /etc/certagent/config.json: poll_interval: want a duration like \"60s\", got \"soon\""}
	r.ControlPlane.Reachable = false
	r.ControlPlane.LastPoll = now.Add(-30 * time.Second)
	r.ControlPlane.LastSuccess = now.Add(-5 * time.Minute)
	r.ControlPlane.Failures = 4
	r.ControlPlane.LastError = "list certificates: dial tcp 203.0.113.7:443: connect: connection refused"
	r.Stores[1].Available = false
	r.Stores[1].Error = "trust: store unavailable: certutil not found in /usr/bin, /usr/local/bin"
	r.Certificates[0].Placements = []Placement{
		{Store: "system", State: PlacementInstalled, Trusted: yes()},
		{Store: "nss", User: "alice", Path: "/home/alice/.pki/nssdb", State: PlacementFailed, Error: "certutil missing"},
	}
	r.Certificates = append(r.Certificates,
		Certificate{ID: "5c1e2d3f-0000-4000-8000-000000000002", Fingerprint: fpB, Subject: "Acme Next Root",
			NotAfter: now.Add(12 * 24 * time.Hour), State: CertAvailable,
			Placements: []Placement{{Store: "system", State: PlacementInstalled, Trusted: yes()}}},
		Certificate{ID: "5c1e2d3f-0000-4000-8000-000000000003", Fingerprint: strings.Repeat("AB:", 31) + "AB", Subject: "Weak Root",
			State: CertRejected, Reason: "RSA key of 1024 bits (want ≥ 2048)"},
	)
	r.Device.CheckIn, r.Device.Accepted, r.Device.LastAttempt = "refused", false, now.Add(-time.Minute)
	r.Device.Error = "api: PUT /accounts/0123456789abcdef0123456789abcdef/certplane/devices/7d4e1f2a-3b5c-4d6e-8f90-a1b2c3d4e5f6: HTTP 403: 10001 the token's scope is read; checking in needs a device token"
	r.Health = Warnings(r, now)
	return r
}

func down() *Report {
	r := healthy()
	r.Daemon = Daemon{Running: false, Service: "stopped", Source: "state file",
		Error: "dial unix /run/certagent/certagent.sock: connect: no such file or directory"}
	r.ControlPlane.LastPoll = now.Add(-26 * time.Hour)
	r.ControlPlane.LastSuccess = now.Add(-26 * time.Hour)
	r.LastSync = now.Add(-26 * time.Hour)
	r.Health = Warnings(r, now)
	return r
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name     string
		report   *Report
		wantExit int
	}{
		{"healthy", healthy(), 0},
		{"degraded", degraded(), 1},
		{"down", down(), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.report.Health = Warnings(tt.report, now)
			if got := ExitCode(tt.report.Health); got != tt.wantExit {
				t.Errorf("exit code: got %d, want %d (health %+v)", got, tt.wantExit, tt.report.Health)
			}
			var buf bytes.Buffer
			require.NoError(t, Render(&buf, tt.report, now))
			golden := filepath.Join("testdata", tt.name+".golden")
			if *update {
				require.NoError(t, os.WriteFile(golden, buf.Bytes(), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "run go test -update to create it")
			if got := buf.String(); got != string(want) {
				t.Errorf("render mismatch (go test ./agent/status -update to accept)\ngot:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestEvaluateCodes(t *testing.T) {
	codes := func(ws []Warning) []string {
		var out []string
		for _, w := range ws {
			out = append(out, w.Code)
		}
		return out
	}
	tests := []struct {
		name   string
		mutate func(r *Report)
		want   []string
	}{
		{"healthy", func(r *Report) {}, nil},
		{"token rejected beats unreachable", func(r *Report) {
			r.ControlPlane.HTTPStatus, r.ControlPlane.Failures, r.ControlPlane.LastError = 401, 5, "HTTP 401: invalid token"
		}, []string{CodeTokenRejected}},
		{"two misses are a blip", func(r *Report) {
			r.ControlPlane.Failures, r.ControlPlane.LastError = 2, "timeout"
			r.ControlPlane.LastSuccess = now.Add(-2 * time.Minute)
		}, nil},
		{"three intervals without an answer", func(r *Report) {
			r.ControlPlane.Failures, r.ControlPlane.LastError = 1, "timeout"
			r.ControlPlane.LastSuccess = now.Add(-4 * time.Minute)
		}, []string{CodeUnreachable}},
		{"clock skew", func(r *Report) { r.ControlPlane.ClockSkew = -7 * time.Minute }, []string{CodeClockSkew}},
		{"expiring in 29 days", func(r *Report) { r.Certificates[0].NotAfter = now.Add(29 * 24 * time.Hour) }, []string{CodeRootExpiring}},
		{"expiring in 31 days is fine", func(r *Report) { r.Certificates[0].NotAfter = now.Add(31 * 24 * time.Hour) }, nil},
		{"trust pending", func(r *Report) {
			r.Certificates[0].Placements[0].State = PlacementTrustPending
			r.Certificates[0].Placements[0].Reason = "installed in System keychain; trust needs an MDM profile"
		}, []string{CodeTrustPending}},
		{"in use root missing", func(r *Report) { r.Certificates[0].Placements[1].State = PlacementMissing }, []string{CodeInUseNotInstalled}},
		{"other root failed", func(r *Report) {
			r.Certificates[0].InUse = false
			r.Certificates[0].Placements[1].State, r.Certificates[0].Placements[1].Error = PlacementFailed, "boom"
		}, []string{CodeInstallFailed}},
		{"invalid config is down", func(r *Report) {
			r.Config.Valid, r.Config.Problems = false, []string{"account_id: want 32 hex"}
		}, []string{CodeConfigInvalid}},
		{"daemon down first", func(r *Report) {
			r.Daemon.Running = false
			r.Certificates[0].NotAfter = now.Add(24 * time.Hour)
		}, []string{CodeDaemonDown, CodeRootExpiring}},
		{"skipped is not a failure", func(r *Report) {}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := healthy()
			tt.mutate(r)
			got := codes(Warnings(r, now))
			require.Equal(t, tt.want, got)
		})
	}
}

func TestStoreFix(t *testing.T) {
	r := healthy()
	r.Stores[1].Available, r.Stores[1].Error = false, "trust: store unavailable: certutil not found"
	ws := Warnings(r, now)
	require.Len(t, ws, 1)
	if !strings.Contains(ws[0].Fix, "libnss3-tools") || !strings.Contains(ws[0].Fix, "nss-tools") {
		t.Errorf("fix %q does not name the package", ws[0].Fix)
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		ws   []Warning
		want int
	}{
		{nil, 0},
		{[]Warning{{Severity: SeverityDegraded}}, 1},
		{[]Warning{{Severity: SeverityDegraded}, {Severity: SeverityDown}}, 2},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.ws); got != tt.want {
			t.Errorf("ExitCode(%v): got %d, want %d", tt.ws, got, tt.want)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := degraded()
	var buf bytes.Buffer
	require.NoError(t, WriteJSON(&buf, r))
	var back Report
	require.NoError(t, json.Unmarshal(buf.Bytes(), &back))
	require.Equal(t, len(r.Certificates), len(back.Certificates))
	require.Equal(t, r.Health, back.Health)
	require.Equal(t, r.ControlPlane.ClockSkew, back.ControlPlane.ClockSkew)
	require.True(t, *back.Certificates[0].Placements[0].Trusted)
}

func TestStartHintPerOS(t *testing.T) {
	for goos, want := range map[string]string{"linux": "systemctl start certagent", "darwin": "launchctl", "windows": "Start-Service"} {
		if got := StartHint(goos); strings.Contains(got, "?") {
			t.Errorf("%s: got %q, want a plain instruction without a stray ?", goos, got)
		}
		if got := StartHint(goos); !strings.Contains(got, want) {
			t.Errorf("%s: got %q, want it to mention %q", goos, got, want)
		}
	}
}

// TestRenderNeutralisesTerminalControls: a local user names a Firefox
// profile (and so a target path) with escape sequences; an uploaded root's
// subject carries a bidi override. The admin's terminal must see none of
// them.
func TestRenderNeutralisesTerminalControls(t *testing.T) {
	r := healthy()
	r.Certificates[0].Subject = "Acme \u202eevil\u202c Root"
	r.Certificates[0].Placements[2].Path = "/home/alice/.mozilla/firefox/\x1b]0;owned\x07\x1b[2J\u009b31m"
	r.ControlPlane.LastError = "api: GET /x: HTTP 500: 1 \x1b[8mhidden \x9b8m" // a raw 8-bit CSI too
	var b strings.Builder
	require.NoError(t, Render(&b, r, now))
	out := b.String()
	for _, bad := range []string{"\x1b", "\x07", "\u009b", "\x9b", "\u202e", "\u202c"} {
		assert.NotContains(t, out, bad)
	}
	assert.Contains(t, out, "/home/alice/.mozilla/firefox/?]0;owned??[2J?31m")
	assert.Contains(t, out, "Acme ?evil? Root")
	assert.Equal(t, "a\tb\nc ✗ ≥", Printable("a\tb\nc ✗ ≥"), "ordinary text and layout survive")
}
