package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/internal/testenv"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust/trusttest"
)

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), mode))
	require.NoError(t, os.Chmod(path, mode))
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	writeFile(t, tokenFile, "secret-token-value\n", 0o600)
	looseToken := filepath.Join(dir, "loose-token")
	writeFile(t, looseToken, "secret-token-value\n", 0o644)
	caFile := filepath.Join(dir, "ca.pem")
	writeFile(t, caFile, string(trusttest.NewCA(t).PEM()), 0o644)
	// Whoever can write ca_file can impersonate the control plane.
	looseCA := filepath.Join(dir, "loose-ca.pem")
	writeFile(t, looseCA, string(trusttest.NewCA(t).PEM()), 0o666)
	state := filepath.Join(dir, "state")

	base := `"control_plane_url":"https://api.example.com/client/v4","account_id":"0123456789abcdef0123456789abcdef","state_dir":"` + state + `"`
	withToken := base + `,"api_token_file":"` + tokenFile + `"`

	tests := []struct {
		name    string
		file    string // "" means no file
		managed string // "" means no managed file
		local   bool
		mode    os.FileMode // of the config file; 0 means 0600
		mmode   os.FileMode // of the managed file; 0 means 0600
		wantErr string      // substring; "" means success
		check   func(t *testing.T, c *Config)
	}{
		{
			name: "minimal with defaults",
			file: `{` + withToken + `}`,
			check: func(t *testing.T, c *Config) {
				assert.Equal(t, "secret-token-value", c.APIToken)
				assert.Equal(t, DefaultPollInterval, c.PollInterval)
				assert.True(t, c.RemoveRetired)
				assert.Equal(t, []string{"system", "nss"}, c.Stores)
				assert.Equal(t, "info", c.LogLevel)
				assert.Len(t, c.Retired(), 1)
			},
		},
		{
			name: "every key",
			file: `{` + base + `,"api_token":"tok","poll_interval":"5m","stores":["dir:/srv/ca","bundle:/etc/ssl/ours.pem"],` +
				`"remove_retired":false,"retired_fingerprints":["` + strings.Repeat("ab", 32) + `"],"log_level":"DEBUG",` +
				`"ca_file":"` + caFile + `","pin_sha256":"sha256//` + strings.Repeat("A", 43) + `="}`,
			check: func(t *testing.T, c *Config) {
				assert.Equal(t, 5*time.Minute, c.PollInterval)
				assert.Equal(t, []string{"dir:/srv/ca", "bundle:/etc/ssl/ours.pem"}, c.Stores)
				assert.False(t, c.RemoveRetired)
				assert.Nil(t, c.Retired())
				assert.Len(t, c.RetiredFingerprints, 1)
				assert.Equal(t, "debug", c.LogLevel)
				assert.Len(t, c.PinSHA256, 1)
			},
		},
		{
			name:    "managed settings win key by key",
			file:    `{` + withToken + `,"poll_interval":"10m","log_level":"warn"}`,
			managed: `{"poll_interval":30,"stores":"system, dir:/srv/ca","remove_retired":0}`,
			check: func(t *testing.T, c *Config) {
				assert.Equal(t, 30*time.Second, c.PollInterval)
				assert.Equal(t, "warn", c.LogLevel, "keys the MDM does not set come from the file")
				assert.Equal(t, []string{"system", "dir:/srv/ca"}, c.Stores)
				assert.False(t, c.RemoveRetired)
				assert.Equal(t, []string{"poll_interval", "remove_retired", "stores"}, c.Source.ManagedKeys)
			},
		},
		{
			name:    "managed settings alone",
			managed: `{` + withToken + `}`,
			check: func(t *testing.T, c *Config) {
				assert.True(t, c.Source.FileMissing)
				assert.Equal(t, "secret-token-value", c.APIToken)
			},
		},
		{name: "no file at all", wantErr: "does not exist"},
		{name: "no file, local commands still work", local: true, check: func(t *testing.T, c *Config) {
			assert.Equal(t, state, c.StateDir[:len(state)])
		}},
		{name: "not JSON", file: `control_plane_url = "x"`, wantErr: "not a JSON object"},
		{name: "trailing garbage", file: `{` + withToken + `} {}`, wantErr: "trailing data"},
		{name: "unknown key (typo)", file: `{` + withToken + `,"poll_intervall":"5m"}`, wantErr: "poll_intervall: unknown key"},
		{name: "unknown managed key", file: `{` + withToken + `}`, managed: `{"storez":["system"]}`, wantErr: "managed.json: storez: unknown key"},
		{name: "bad duration", file: `{` + withToken + `,"poll_interval":"often"}`, wantErr: "poll_interval"},
		{name: "too short", file: `{` + withToken + `,"poll_interval":"1s"}`, wantErr: "outside"},
		{name: "missing url", file: `{"account_id":"0123456789abcdef0123456789abcdef","api_token":"x"}`, wantErr: "control_plane_url: missing"},
		{name: "http to a remote host", file: `{` + strings.Replace(withToken, "https://api.example.com", "http://api.example.com", 1) + `}`, wantErr: "only allowed to a loopback"},
		{name: "http to loopback", file: `{` + strings.Replace(withToken, "https://api.example.com", "http://127.0.0.1:8080", 1) + `}`},
		{name: "credentials in url", file: `{` + strings.Replace(withToken, "https://", "https://u:p@", 1) + `}`, wantErr: "credentials in the URL"},
		{name: "bad account", file: `{` + strings.Replace(withToken, "0123456789abcdef0123456789abcdef", "ACME", 1) + `}`, wantErr: "account_id"},
		{name: "no token", file: `{` + base + `}`, wantErr: "api_token: missing"},
		{name: "token and file", file: `{` + withToken + `,"api_token":"x"}`, wantErr: "not both"},
		{name: "token file readable by others", file: `{` + base + `,"api_token_file":"` + looseToken + `"}`, wantErr: "chmod 600"},
		{name: "inline token in a world-readable config", file: `{` + base + `,"api_token":"secret-token-value"}`, mode: 0o644, wantErr: "config.json holds the token but is readable by group or others"},
		{name: "inline token in a group-readable managed file", managed: `{` + base + `,"api_token":"secret-token-value"}`, mmode: 0o640, wantErr: "managed.json holds the token but is readable"},
		{name: "inline token in a 0600 config", file: `{` + base + `,"api_token":"secret-token-value"}`, check: func(t *testing.T, c *Config) {
			assert.Equal(t, "secret-token-value", c.APIToken)
		}},
		{name: "token-less world-readable config, token from managed 0600", file: `{` + base + `}`, managed: `{"api_token":"secret-token-value"}`, mode: 0o644, check: func(t *testing.T, c *Config) {
			assert.Equal(t, "secret-token-value", c.APIToken)
		}},
		{name: "inline token in the wrong shape is not echoed", file: `{` + base + `,"api_token":["secret-token-value"]}`, wantErr: "api_token: want a string"},
		{name: "token file missing", file: `{` + base + `,"api_token_file":"` + filepath.Join(dir, "nope") + `"}`, wantErr: "api_token_file"},
		{name: "relative store path", file: `{` + withToken + `,"stores":["dir:ca"]}`, wantErr: "absolute path"},
		{name: "unknown store", file: `{` + withToken + `,"stores":["keychain"]}`, wantErr: "unknown store"},
		{name: "duplicate store", file: `{` + withToken + `,"stores":["system","system"]}`, wantErr: "twice"},
		{name: "duplicate store spelled differently", file: `{` + withToken + `,"stores":["dir:/srv/ca/","dir:/srv//ca"]}`, wantErr: "twice"},
		{name: "store paths are cleaned", file: `{` + withToken + `,"stores":["dir:/srv/ca/"]}`, check: func(t *testing.T, c *Config) {
			assert.Equal(t, []string{"dir:/srv/ca"}, c.Stores)
		}},
		{name: "empty stores", file: `{` + withToken + `,"stores":[]}`, wantErr: "at least one store"},
		{name: "bad retired fingerprint", file: `{` + withToken + `,"retired_fingerprints":["F5:E1"]}`, wantErr: "retired_fingerprints"},
		{name: "bad pin", file: `{` + withToken + `,"pin_sha256":"abc"}`, wantErr: "pin_sha256"},
		{name: "bad log level", file: `{` + withToken + `,"log_level":"loud"}`, wantErr: "log_level"},
		{name: "ca_file others can write", file: `{` + withToken + `,"ca_file":"` + looseCA + `"}`, wantErr: "writable by group or others"},
		{name: "ca_file without certificates", file: `{` + withToken + `,"ca_file":"` + tokenFile + `"}`, wantErr: "no PEM certificate"},
		{name: "remove_retired not a bool", file: `{` + withToken + `,"remove_retired":"yes"}`, wantErr: "remove_retired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if runtime.GOOS == "windows" && (strings.Contains(tc.wantErr, "chmod") || strings.Contains(tc.wantErr, "readable") || strings.Contains(tc.wantErr, "writable")) {
				t.Skip("no mode bits on windows")
			}
			d := t.TempDir()
			p := platform.Paths{ConfigFile: filepath.Join(d, "config.json"), ManagedFile: filepath.Join(d, "managed.json"), StateDir: state}
			orDefault := func(m os.FileMode) os.FileMode {
				if m == 0 {
					return 0o600
				}
				return m
			}
			if tc.file != "" {
				writeFile(t, p.ConfigFile, tc.file, orDefault(tc.mode))
			}
			if tc.managed != "" {
				writeFile(t, p.ManagedFile, tc.managed, orDefault(tc.mmode))
			}
			c, err := LoadConfig(p, LoadOptions{Local: tc.local, GOOS: "linux"})
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrConfig)
				assert.Contains(t, err.Error(), tc.wantErr)
				assert.NotContains(t, err.Error(), "secret-token-value", "the token leaked into an error")
				return
			}
			require.NoError(t, err)
			if tc.check != nil {
				tc.check(t, c)
			}
			for _, s := range []string{c.String(), fmt.Sprintf("%v %+v %#v", c, c, *c)} {
				assert.NotContains(t, s, "secret-token-value", "the token leaked into a string")
			}
		})
	}
}

// TestSettingsFilesOthersCanWriteAreRefused: whoever writes config.json or
// managed.json picks the control plane and the stores, and so which roots
// the root daemon installs; a file group or others can write (or, as root,
// one another user owns) is refused, and a purge does not take its
// state_dir from it.
func TestSettingsFilesOthersCanWriteAreRefused(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no mode bits on windows")
	}
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	writeFile(t, tokenFile, "secret-token-value\n", 0o600)
	good := `{"control_plane_url":"https://api.example.com/client/v4","account_id":"0123456789abcdef0123456789abcdef","api_token_file":"` + tokenFile + `","state_dir":"/srv/certagent"}`
	tests := []struct {
		name    string
		config  os.FileMode // 0: no config file
		managed os.FileMode // 0: no managed file
		chown   bool        // give the file to uid 65534 (needs root)
		wantErr string
	}{
		{name: "config 0644 is fine", config: 0o644},
		{name: "config writable by others", config: 0o646, wantErr: "writable by group or others"},
		{name: "config writable by group", config: 0o664, wantErr: "writable by group or others"},
		{name: "managed writable by others", managed: 0o666, wantErr: "managed settings"},
		{name: "config owned by another user", config: 0o644, chown: true, wantErr: "owned by uid 65534"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.chown {
				testenv.RequireRoot(t, "to give a file away")
			}
			d := t.TempDir()
			p := platform.Paths{ConfigFile: filepath.Join(d, "config.json"), ManagedFile: filepath.Join(d, "managed.json"), StateDir: "/var/lib/certagent"}
			path := p.ConfigFile
			if tc.config != 0 {
				writeFile(t, p.ConfigFile, good, tc.config)
			}
			if tc.managed != 0 {
				path = p.ManagedFile
				writeFile(t, p.ManagedFile, good, tc.managed)
			}
			if tc.chown {
				require.NoError(t, os.Chown(path, 65534, 65534))
			}
			_, err := LoadConfig(p, LoadOptions{GOOS: "linux"})
			if tc.wantErr == "" {
				require.NoError(t, err)
				assert.Equal(t, "/srv/certagent", StateDirHint(p))
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrConfig)
			assert.Contains(t, err.Error(), tc.wantErr)
			if tc.config != 0 {
				assert.Equal(t, "/var/lib/certagent", StateDirHint(p), "a purge must not take state_dir from it")
			}
		})
	}
}

func TestConfigErrorNamesTheFile(t *testing.T) {
	d := t.TempDir()
	p := platform.Paths{ConfigFile: filepath.Join(d, "config.json"), StateDir: d}
	writeFile(t, p.ConfigFile, `{"poll_interval":"soon"}`, 0o644)
	_, err := LoadConfig(p, LoadOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), p.ConfigFile+": poll_interval:")
	var ke *keyErr
	require.True(t, errors.As(err, &ke))
	assert.Equal(t, "poll_interval", ke.key)
}

func TestDefaultStores(t *testing.T) {
	assert.Equal(t, []string{"system", "nss"}, DefaultStores("linux"))
	assert.Equal(t, []string{"system"}, DefaultStores("darwin"))
	assert.Equal(t, []string{"system"}, DefaultStores("windows"))
}

func TestParsePin(t *testing.T) {
	ca := trusttest.NewCA(t)
	b64 := SPKIPin(ca.X509)
	want, err := ParsePin(b64)
	require.NoError(t, err)
	for _, in := range []string{
		b64, "sha256//" + b64, strings.TrimRight(b64, "="),
		fmt.Sprintf("%x", want[:]), strings.ToUpper(fmt.Sprintf("%x", want[:])),
	} {
		got, err := ParsePin(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "abc", strings.Repeat("z", 64), b64[:20]} {
		_, err := ParsePin(bad)
		assert.Error(t, err, bad)
	}
}

func TestStateDirHint(t *testing.T) {
	d := t.TempDir()
	p := platform.Paths{ConfigFile: filepath.Join(d, "config.json"), ManagedFile: filepath.Join(d, "managed.json"), StateDir: "/var/lib/certagent"}
	assert.Equal(t, "/var/lib/certagent", StateDirHint(p), "no file: the default")
	writeFile(t, p.ConfigFile, `{"state_dir":"/srv/certagent/","typo_key":1}`, 0o644)
	_, err := LoadConfig(p, LoadOptions{Local: true})
	require.Error(t, err, "the config itself is invalid")
	assert.Equal(t, "/srv/certagent", StateDirHint(p), "but its state_dir is still found")
	writeFile(t, p.ManagedFile, `{"state_dir":"/opt/certagent/state"}`, 0o644)
	assert.Equal(t, "/opt/certagent/state", StateDirHint(p), "managed wins")
	writeFile(t, p.ManagedFile, `{"state_dir":"relative"}`, 0o644)
	assert.Equal(t, "/srv/certagent", StateDirHint(p), "a relative path is ignored")
}
