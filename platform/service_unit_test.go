package platform

import (
	"strings"
	"testing"
)

func TestSystemdUnit(t *testing.T) {
	unit := SystemdUnit("certagent test", "/usr/local/bin/certagent", []string{"run"}, []string{"/srv/roots", "/etc/ssl/certs", "relative", "/srv/roots/", "/etc/ssl", "/var/lib/certagent/x", "/home"})
	lines := strings.Split(unit, "\n")
	has := func(want string) bool {
		for _, l := range lines {
			if l == want {
				return true
			}
		}
		return false
	}
	for _, want := range []string{
		"[Unit]", "Wants=network-online.target", "After=network-online.target",
		"[Service]", "ExecStart=/usr/local/bin/certagent run", "Restart=on-failure", "RestartSec=5s",
		"NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=no", "PrivateTmp=yes",
		"ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectControlGroups=yes",
		"RuntimeDirectory=certagent", "RuntimeDirectoryMode=0755", "StateDirectory=certagent",
		// Given paths, sorted and deduplicated; relative ones, ones under
		// another and ones under the unit's own directories dropped.
		"ReadWritePaths=-/etc/ssl -/home -/srv/roots",
		"[Install]", "WantedBy=multi-user.target",
	} {
		if !has(want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	if strings.Contains(unit, "RestartSec=120") || strings.Contains(unit, "MemoryDenyWriteExecute=yes") {
		t.Errorf("unit has a directive it must not:\n%s", unit)
	}
	if strings.Contains(unit, "{{") {
		t.Errorf("unit contains a template action; kardianos would expand it")
	}
	// Every directive is explained by a comment line above it or its group.
	prevComment := false
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "#"):
			prevComment = true
		case l == "" || strings.HasPrefix(l, "["):
			prevComment = false
		case strings.Contains(l, "="):
			if !prevComment && !strings.HasPrefix(l, "Description=") && !strings.HasPrefix(l, "ExecStart=") {
				t.Errorf("directive without an explanation: %s", l)
			}
		}
	}
}

func TestExecLineQuoting(t *testing.T) {
	tests := []struct {
		exe  string
		args []string
		want string
	}{
		{"/usr/bin/certagent", []string{"run"}, "/usr/bin/certagent run"},
		{"/opt/cert agent/certagent", []string{"run"}, `"/opt/cert agent/certagent" run`},
		{"/opt/x", []string{"50%", "$HOME"}, `/opt/x 50%% "$$HOME"`},
	}
	for _, tt := range tests {
		if got := execLine(tt.exe, tt.args); got != tt.want {
			t.Errorf("execLine(%q, %q): got %s, want %s", tt.exe, tt.args, got, tt.want)
		}
	}
}
