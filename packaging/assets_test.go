package packaging_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"howett.net/plist"

	"github.com/certagent/certagent/internal/testenv"
	"github.com/certagent/certagent/packaging"
	"github.com/certagent/certagent/packaging/macpkg"
	"github.com/certagent/certagent/packaging/winpkg"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust/stores"
)

func asset(t *testing.T, name string) []byte {
	t.Helper()
	b, err := fs.ReadFile(packaging.Assets, name)
	require.NoError(t, err)
	return b
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		describe string
		commits  int
		want     packaging.Version
	}{
		{"v1.2.3", 40, packaging.Version{Semver: "1.2.3", MSI: "1.2.3", Mac: "1.2.3", Display: "1.2.3"}},
		{"1.2.3", 40, packaging.Version{Semver: "1.2.3", MSI: "1.2.3", Mac: "1.2.3", Display: "1.2.3"}},
		{"v1.2.3-dirty", 40, packaging.Version{Semver: "1.2.3", MSI: "1.2.3", Mac: "1.2.3", Display: "1.2.3-dirty"}},
		{"v1.2.3-5-gabcdef0", 45, packaging.Version{Semver: "1.2.4-git5", MSI: "1.2.4.5", Mac: "1.2.3.5", Display: "1.2.4-git5"}},
		{"v1.2.3-5-gabcdef0-dirty", 45, packaging.Version{Semver: "1.2.4-git5", MSI: "1.2.4.5", Mac: "1.2.3.5", Display: "1.2.4-git5-dirty"}},
		{"abcdef0", 12, packaging.Version{Semver: "0.0.1-git12", MSI: "0.0.1.12", Mac: "0.0.0.12", Display: "0.0.1-git12"}},
		{"abcdef0-dirty", 12, packaging.Version{Semver: "0.0.1-git12", MSI: "0.0.1.12", Mac: "0.0.0.12", Display: "0.0.1-git12-dirty"}},
	}
	for _, tt := range tests {
		got, err := packaging.ParseVersion(tt.describe, tt.commits)
		if err != nil {
			t.Errorf("ParseVersion(%q): %v", tt.describe, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseVersion(%q): got %+v, want %+v", tt.describe, got, tt.want)
		}
	}
	for _, bad := range []string{"", "dev", "v1.2", "v1.2.3; rm -rf /", "../1.2.3", "v256.0.0", "v1.2.3-x-gabc", "g12345"} {
		if _, err := packaging.ParseVersion(bad, 1); !errors.Is(err, packaging.ErrBadVersion) {
			t.Errorf("ParseVersion(%q): got %v, want %v", bad, err, packaging.ErrBadVersion)
		}
	}
	if _, err := packaging.ParseVersion("v1.0.0", -1); !errors.Is(err, packaging.ErrBadVersion) {
		t.Errorf("negative commit count: got %v, want %v", err, packaging.ErrBadVersion)
	}
}

// The pkg, the LaunchDaemon, both profiles and the agent must agree on one
// identifier, or MDM settings and the service-management rule silently
// miss.
func TestMacOSIdentifiers(t *testing.T) {
	assert.Equal(t, platform.ManagedPreferenceDomain, macpkg.Label, "managed-preferences domain")

	var daemon struct {
		Label             string
		ProgramArguments  []string
		RunAtLoad         bool
		KeepAlive         bool
		StandardErrorPath string
	}
	_, err := plist.Unmarshal(asset(t, "macos/"+macpkg.Label+".plist"), &daemon)
	require.NoError(t, err)
	assert.Equal(t, macpkg.Label, daemon.Label)
	assert.Equal(t, []string{macpkg.AppDir + "/certagent", "run"}, daemon.ProgramArguments)
	assert.True(t, daemon.RunAtLoad, "RunAtLoad")
	assert.True(t, daemon.KeepAlive, "KeepAlive")

	type payload struct {
		PayloadType       string
		PayloadIdentifier string
		PayloadUUID       string
		Rules             []struct{ RuleType, RuleValue string }
		ControlPlaneURL   string `plist:"control_plane_url"`
		AccountID         string `plist:"account_id"`
		APIToken          string `plist:"api_token"`
	}
	type profile struct {
		PayloadType    string
		PayloadScope   string
		PayloadUUID    string
		PayloadContent []payload
	}
	uuid := regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$`)
	seen := map[string]bool{}
	read := func(name string) profile {
		var p profile
		_, err := plist.Unmarshal(asset(t, "macos/"+name), &p)
		require.NoError(t, err, name)
		assert.Equal(t, "Configuration", p.PayloadType, name)
		assert.Equal(t, "System", p.PayloadScope, name)
		require.Len(t, p.PayloadContent, 1, name)
		for _, u := range []string{p.PayloadUUID, p.PayloadContent[0].PayloadUUID} {
			assert.Regexp(t, uuid, u, name)
			assert.False(t, seen[u], "UUID %s reused", u)
			seen[u] = true
		}
		return p
	}
	settings := read("certagent-settings.mobileconfig").PayloadContent[0]
	assert.Equal(t, platform.ManagedPreferenceDomain, settings.PayloadType, "custom settings payload type is the domain")
	assert.NotEmpty(t, settings.ControlPlaneURL)
	assert.NotEmpty(t, settings.AccountID)
	assert.NotEmpty(t, settings.APIToken)
	sm := read("certagent-service-management.mobileconfig").PayloadContent[0]
	assert.Equal(t, "com.apple.servicemanagement", sm.PayloadType)
	require.Len(t, sm.Rules, 1)
	assert.Equal(t, "Label", sm.Rules[0].RuleType)
	assert.Equal(t, macpkg.Label, sm.Rules[0].RuleValue)

	// The Jamf custom schema names the same domain and keys.
	var schema struct {
		Domain     string                     `json:"__preferencedomain"`
		Properties map[string]json.RawMessage `json:"properties"`
	}
	require.NoError(t, json.Unmarshal(asset(t, "macos/"+macpkg.Label+".json"), &schema))
	assert.Equal(t, platform.ManagedPreferenceDomain, schema.Domain)
	for _, k := range []string{"control_plane_url", "account_id", "api_token"} {
		assert.Contains(t, schema.Properties, k, "Jamf schema")
	}

	for _, s := range []string{"preinstall", "postinstall", "uninstall.sh"} {
		assert.Contains(t, string(asset(t, "macos/"+s)), "LABEL="+macpkg.Label, s)
	}
	assert.Contains(t, string(asset(t, "macos/uninstall.sh")), "pkgutil --forget "+macpkg.PkgID)
	assert.Contains(t, string(asset(t, "macos/uninstall.sh")), "uninstall --purge")
}

// The ADMX policies, the MSI's registry values and the agent's policy key
// must name the same values.
func TestWindowsPolicyNames(t *testing.T) {
	var admx struct {
		Policies []struct {
			Name         string `xml:"name,attr"`
			Class        string `xml:"class,attr"`
			Key          string `xml:"key,attr"`
			DisplayName  string `xml:"displayName,attr"`
			ExplainText  string `xml:"explainText,attr"`
			Presentation string `xml:"presentation,attr"`
			Text         []struct {
				ID        string `xml:"id,attr"`
				ValueName string `xml:"valueName,attr"`
			} `xml:"elements>text"`
		} `xml:"policies>policy"`
	}
	require.NoError(t, xml.Unmarshal(asset(t, "windows/certagent.admx"), &admx))
	var adml struct {
		Strings []struct {
			ID string `xml:"id,attr"`
		} `xml:"resources>stringTable>string"`
		Presentations []struct {
			ID       string `xml:"id,attr"`
			TextBoxs []struct {
				RefID string `xml:"refId,attr"`
			} `xml:"textBox"`
		} `xml:"resources>presentationTable>presentation"`
	}
	require.NoError(t, xml.Unmarshal(asset(t, "windows/en-US/certagent.adml"), &adml))
	strs := map[string]bool{}
	for _, s := range adml.Strings {
		strs[s.ID] = true
	}
	pres := map[string][]string{}
	for _, p := range adml.Presentations {
		for _, tb := range p.TextBoxs {
			pres[p.ID] = append(pres[p.ID], tb.RefID)
		}
	}
	ref := func(s, prefix string) string {
		require.True(t, strings.HasPrefix(s, "$("+prefix+".") && strings.HasSuffix(s, ")"), "%q", s)
		return strings.TrimSuffix(strings.TrimPrefix(s, "$("+prefix+"."), ")")
	}
	var values []string
	for _, p := range admx.Policies {
		assert.Equal(t, "Machine", p.Class, p.Name)
		assert.Equal(t, `SOFTWARE\Policies\certagent`, p.Key, p.Name)
		assert.True(t, strs[ref(p.DisplayName, "string")], "%s: display name string", p.Name)
		assert.True(t, strs[ref(p.ExplainText, "string")], "%s: explain string", p.Name)
		require.Len(t, p.Text, 1, p.Name)
		assert.Contains(t, pres[ref(p.Presentation, "presentation")], p.Text[0].ID, "%s: presentation", p.Name)
		values = append(values, p.Text[0].ValueName)
	}
	var want []string
	for _, v := range winpkg.Properties {
		want = append(want, v)
	}
	slices.Sort(values)
	slices.Sort(want)
	assert.Equal(t, want, values, "ADMX value names = MSI registry values")

	wxs := string(asset(t, "windows/certagent.wxs"))
	for prop, name := range winpkg.Properties {
		re := regexp.MustCompile(`Name="` + name + `"\s+Type="string" Value="\[` + prop + `\]"`)
		assert.True(t, re.MatchString(wxs), "wxs writes %s from [%s]", name, prop)
	}
	assert.Contains(t, wxs, `UpgradeCode="`+strings.Trim(winpkg.UpgradeCode, "{}")+`"`)
}

// unitDirectives parses a unit into directive -> values, requiring a
// comment right above every directive when commented is set.
func unitDirectives(t *testing.T, unit []byte, commented bool) map[string][]string {
	t.Helper()
	directives := map[string][]string{}
	prevComment := false
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			prevComment = false
		case strings.HasPrefix(line, "#"):
			prevComment = true
		case strings.HasPrefix(line, "["):
			prevComment = false
		default:
			k, v, ok := strings.Cut(line, "=")
			require.True(t, ok, "not a directive: %q", line)
			if commented {
				assert.True(t, prevComment, "%s has no comment above it", k)
			}
			directives[k] = append(directives[k], v)
		}
	}
	return directives
}

// The shipped unit: the hardening and restart policy the issue asks for,
// every directive explained by a comment, and exactly the directives of the
// unit `certagent service install` renders, so package and tarball installs
// cannot drift apart.
func TestSystemdUnit(t *testing.T) {
	unit := asset(t, "linux/certagent.service")
	directives := unitDirectives(t, unit, true)
	for k, v := range map[string]string{
		"ExecStart": "/usr/bin/certagent run", "Restart": "on-failure", "RestartSec": "5s",
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "After": "network-online.target",
		"Wants": "network-online.target", "WantedBy": "multi-user.target", "StateDirectory": "certagent",
	} {
		assert.Equal(t, []string{v}, directives[k], k)
	}
	rw := strings.Fields(strings.Join(directives["ReadWritePaths"], " "))
	for _, p := range []string{"-/etc/ssl", "-/usr/local/share/ca-certificates", "-/etc/pki", "-/home"} {
		assert.Contains(t, rw, p, "ReadWritePaths")
	}

	// Everything but the writable paths is the unit `certagent service
	// install` renders. Those come from the stores (stores.SandboxPaths)
	// and depend on the machine, so the shipped unit carries a static
	// superset: every path any store kind writes on this machine must lie
	// inside one of them, or the packaged service fails as firefox-policy
	// once did (read-only file system).
	rendered := unitDirectives(t, []byte(platform.SystemdUnit("certagent trust-store agent", "/usr/bin/certagent", []string{"run"}, nil)), false)
	delete(directives, "Documentation") // the package also ships the man page
	delete(directives, "ReadWritePaths")
	delete(rendered, "ReadWritePaths")
	assert.Equal(t, rendered, directives, "packaging/linux/certagent.service has drifted from platform.SystemdUnit: make them agree")
	write, _ := stores.SandboxPaths(nil, stores.Env{})
	require.NotEmpty(t, write)
	for _, p := range write {
		covered := false
		for _, g := range rw {
			g = strings.TrimPrefix(g, "-")
			if p == g || strings.HasPrefix(p, strings.TrimSuffix(g, "/")+"/") {
				covered = true
			}
		}
		assert.True(t, covered, "the stores write %s, which the shipped unit's ReadWritePaths= does not grant", p)
	}

	// systemd's own parser agrees.
	t.Run("systemd-analyze verify", func(t *testing.T) {
		analyze := testenv.RequireTool(t, "systemd-analyze", "systemd")
		f := filepath.Join(t.TempDir(), "certagent.service")
		require.NoError(t, os.WriteFile(f, bytes.Replace(unit, []byte("/usr/bin/certagent run"), []byte("/bin/true run"), 1), 0o644))
		// --man=no: man:certagent(8) is installed by the package, not here.
		out, err := exec.Command(analyze, "verify", "--man=no", f).CombinedOutput()
		assert.NoError(t, err, "%s", out)
		assert.Empty(t, strings.TrimSpace(string(out)), "systemd-analyze verify")
	})
}

// TestMacVersionsAreMonotonic: in the order builds are made (a tag, commits
// after it, the next tag), the pkg's dotted version only grows, as Jamf,
// Munki and Intune compare it; and no file name carries a commit hash.
func TestMacVersionsAreMonotonic(t *testing.T) {
	builds := []struct {
		describe string
		commits  int
	}{{"abcdef0", 3}, {"abcdef1", 4}, {"v1.2.3", 10}, {"v1.2.3-1-gabc1234", 11}, {"v1.2.3-12-gabc1235", 22}, {"v1.2.4", 23}, {"v1.10.0-2-gabc1236", 40}}
	dotted := func(s string) []int {
		var out []int
		for _, f := range strings.Split(s, ".") {
			n, err := strconv.Atoi(f)
			require.NoError(t, err, "%q is not dotted numbers", s)
			out = append(out, n)
		}
		for len(out) < 4 {
			out = append(out, 0)
		}
		return out
	}
	var prev []int
	for _, b := range builds {
		v, err := packaging.ParseVersion(b.describe, b.commits)
		require.NoError(t, err)
		assert.NotContains(t, v.Display, "abc", "the file name carries the commit hash")
		cur := dotted(v.Mac)
		if prev != nil {
			assert.Equal(t, 1, slices.Compare(cur, prev), "%s: Mac %s must sort after the previous build's", b.describe, v.Mac)
		}
		prev = cur
	}
}
