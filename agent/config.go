package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/stores"
)

// ErrConfig is wrapped by every configuration error, so callers (and the
// exit code 2 of the CLI) can tell a misconfiguration from a failure.
var ErrConfig = errors.New("agent: invalid configuration")

// Defaults.
const (
	DefaultPollInterval = 60 * time.Second
	MinPollInterval     = 5 * time.Second
	MaxPollInterval     = 24 * time.Hour
)

// RetiredCloudflareTeamsECC is the SHA-256 fingerprint of "Cloudflare for
// Teams ECC Certificate Authority", Cloudflare's global default inspection
// root that expired 2025-02-02 16:05 UTC (cloudflare-docs troubleshooting
// FAQ). Devices that trusted it still carry it; it only ever helps an
// attacker now.
const RetiredCloudflareTeamsECC = "F5:E1:56:C4:89:78:77:AD:79:3A:1E:83:FA:77:83:F1:9C:B0:C6:1B:58:2C:2F:50:11:B3:37:72:7C:62:3D:EF"

// BuiltinRetired returns the built-in retired fingerprints (removed from
// every store unless remove_retired is false).
func BuiltinRetired() []trust.Fingerprint {
	return []trust.Fingerprint{trust.MustFingerprint(RetiredCloudflareTeamsECC)}
}

// DefaultStores returns the stores used when the config names none: the OS
// store everywhere, plus every user's NSS databases on Linux, where Chrome
// and Firefox do not read the system anchors. On macOS and Windows the
// browsers read the OS store (Firefox ≥ 120 imports enterprise roots), so
// the system store alone reaches them.
func DefaultStores(goos string) []string {
	if goos == "linux" {
		return []string{"system", "nss"}
	}
	return []string{"system"}
}

// Config is the agent's configuration after the file and the managed
// settings are merged and validated.
type Config struct {
	ControlPlaneURL string `json:"control_plane_url"`
	AccountID       string `json:"account_id"`
	// APIToken is the read token. It is never logged or serialised: see
	// MarshalJSON and Redacted.
	APIToken string `json:"-"`
	// APITokenFile is where APIToken was read from, or "".
	APITokenFile  string        `json:"api_token_file,omitempty"`
	PollInterval  time.Duration `json:"poll_interval"`
	Stores        []string      `json:"stores"`
	RemoveRetired bool          `json:"remove_retired"`
	// RetiredFingerprints are the admin's extra retired roots (the built-in
	// list is added by Retired, not stored here).
	RetiredFingerprints []trust.Fingerprint `json:"retired_fingerprints,omitempty"`
	StateDir            string              `json:"state_dir"`
	LogLevel            string              `json:"log_level"`
	CAFile              string              `json:"ca_file,omitempty"`
	// PinSHA256 are SHA-256 hashes of acceptable server public keys (SPKI).
	PinSHA256 [][32]byte `json:"-"`

	// Source says where the config came from, for status.
	Source ConfigSource `json:"source"`
}

// ConfigSource records which file and which managed source each key came
// from.
type ConfigSource struct {
	File string `json:"file"`
	// FileMissing reports whether the file did not exist (everything came
	// from defaults or managed settings).
	FileMissing bool `json:"file_missing,omitempty"`
	// Managed is the managed-settings source ("" when nothing is managed).
	Managed string `json:"managed,omitempty"`
	// ManagedKeys are the keys the managed settings set (they won).
	ManagedKeys []string `json:"managed_keys,omitempty"`
}

func (s ConfigSource) String() string {
	out := s.File
	if s.FileMissing {
		out += " (missing)"
	}
	if len(s.ManagedKeys) > 0 {
		out += fmt.Sprintf(" + managed %s (%s)", s.Managed, strings.Join(s.ManagedKeys, ", "))
	}
	return out
}

// Retired returns the set of fingerprints to remove wherever found: the
// built-in list plus retired_fingerprints, or nil when remove_retired is
// false.
func (c *Config) Retired() map[trust.Fingerprint]bool {
	if !c.RemoveRetired {
		return nil
	}
	m := make(map[trust.Fingerprint]bool)
	for _, fp := range BuiltinRetired() {
		m[fp] = true
	}
	for _, fp := range c.RetiredFingerprints {
		m[fp] = true
	}
	return m
}

// LedgerPath is where the ledger lives.
func (c *Config) LedgerPath() string { return filepath.Join(c.StateDir, "ledger.json") }

// StatusPath is where the last snapshot is persisted.
func (c *Config) StatusPath() string { return filepath.Join(c.StateDir, "status.json") }

// knownKeys are the config keys (DESIGN.md §5); anything else is a typo.
var knownKeys = map[string]bool{
	"control_plane_url": true, "account_id": true, "api_token": true, "api_token_file": true,
	"poll_interval": true, "stores": true, "remove_retired": true, "retired_fingerprints": true,
	"state_dir": true, "log_level": true, "ca_file": true, "pin_sha256": true,
}

// LoadOptions say how strict LoadConfig is.
type LoadOptions struct {
	// Local skips the control-plane keys' requirement, for commands that
	// only need the state dir and stores (certs, uninstall --purge): a
	// package removal must work even when the token is gone.
	Local bool
	// GOOS picks the default stores; "" means runtime.GOOS.
	GOOS string
}

// LoadConfig reads p.ConfigFile and the managed settings, merges them key by
// key (managed wins), and validates the result. Every error wraps ErrConfig
// and names the key and the file it came from.
func LoadConfig(p platform.Paths, opts LoadOptions) (*Config, error) {
	file := map[string]json.RawMessage{}
	src := ConfigSource{File: p.ConfigFile}
	b, err := os.ReadFile(p.ConfigFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		src.FileMissing = true
	case err != nil:
		return nil, fmt.Errorf("%w: config %s: %v", ErrConfig, p.ConfigFile, err)
	default:
		if err := platform.CheckSettingsFile(p.ConfigFile); err != nil {
			return nil, fmt.Errorf("%w: config %v", ErrConfig, err)
		}
		if err := decodeObject(b, &file); err != nil {
			return nil, fmt.Errorf("%w: config %s: %v", ErrConfig, p.ConfigFile, err)
		}
	}
	managed, err := platform.ReadManaged(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	src.Managed = managed.Source
	merged := make(map[string]json.RawMessage, len(file)+len(managed.Settings))
	origin := make(map[string]string, len(merged))
	for k, v := range file {
		merged[k], origin[k] = v, p.ConfigFile
	}
	for k, v := range managed.Settings {
		merged[k], origin[k] = v, managed.Source
		src.ManagedKeys = append(src.ManagedKeys, k)
	}
	sort.Strings(src.ManagedKeys)
	goos := opts.GOOS
	if goos == "" {
		goos = runtime.GOOS
	}
	if src.FileMissing && len(managed.Settings) == 0 && !opts.Local {
		return nil, fmt.Errorf("%w: config %s does not exist (write it, or set CERTAGENT_CONFIG to the file)", ErrConfig, p.ConfigFile)
	}
	cfg, err := parseConfig(merged, origin, p, goos, opts.Local)
	if err != nil {
		return nil, err
	}
	cfg.Source = src
	return cfg, nil
}

// StateDirHint returns the state dir a config names even when the config
// as a whole does not load (an unknown key, a lost token file): uninstall
// --purge in a package's pre-remove script must still find the ledger.
// Managed settings win as usual; the default is p.StateDir.
func StateDirHint(p platform.Paths) string {
	dir := p.StateDir
	pick := func(m map[string]json.RawMessage) {
		var s string
		if raw, ok := m["state_dir"]; ok && json.Unmarshal(raw, &s) == nil && filepath.IsAbs(s) {
			dir = filepath.Clean(s)
		}
	}
	// A file others could write must not pick the ledger a purge obeys.
	if b, err := os.ReadFile(p.ConfigFile); err == nil && platform.CheckSettingsFile(p.ConfigFile) == nil {
		var m map[string]json.RawMessage
		if json.Unmarshal(b, &m) == nil {
			pick(m)
		}
	}
	if managed, err := platform.ReadManaged(p); err == nil {
		pick(managed.Settings)
	}
	return dir
}

// decodeObject decodes a JSON object, refusing trailing data and duplicate
// structure problems with a readable message.
func decodeObject(b []byte, out *map[string]json.RawMessage) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("not a JSON object: %v", err)
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	if *out == nil {
		return errors.New("not a JSON object: null")
	}
	return nil
}

type keyErr struct {
	key, origin string
	err         error
}

func (e *keyErr) Error() string { return fmt.Sprintf("config %s: %s: %v", e.origin, e.key, e.err) }

func parseConfig(m map[string]json.RawMessage, origin map[string]string, p platform.Paths, goos string, local bool) (*Config, error) {
	c := configParser{m: m, origin: origin, p: p}
	cfg, err := c.decode(goos)
	if err != nil {
		return nil, err
	}
	if err := c.decodeLists(cfg); err != nil {
		return nil, err
	}
	if err := c.checkLocal(cfg); err != nil {
		return nil, err
	}
	if local {
		return cfg, nil
	}
	if err := c.checkControlPlane(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// configParser is one parseConfig: the merged keys, where each came from
// (for errors that name the file or the MDM profile to fix), and the paths.
type configParser struct {
	m      map[string]json.RawMessage
	origin map[string]string
	p      platform.Paths
}

// fail is a config error for key, naming where the key came from.
func (c configParser) fail(key string, format string, args ...any) error {
	o := c.origin[key]
	if o == "" {
		o = c.p.ConfigFile
	}
	return fmt.Errorf("%w: %w", ErrConfig, &keyErr{key: key, origin: o, err: fmt.Errorf(format, args...)})
}

// decode refuses unknown keys and decodes the scalar ones over the
// defaults for goos.
func (c configParser) decode(goos string) (*Config, error) {
	var unknown []string
	for k := range c.m {
		if !knownKeys[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, c.fail(unknown[0], "unknown key (known keys: %s)", strings.Join(sortedKeys(knownKeys), ", "))
	}
	cfg := &Config{
		PollInterval:  DefaultPollInterval,
		Stores:        DefaultStores(goos),
		RemoveRetired: true,
		StateDir:      c.p.StateDir,
		LogLevel:      "info",
	}
	str := func(key string, dst *string) error {
		raw, ok := c.m[key]
		if !ok {
			return nil
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			if key == "api_token" {
				// The value is probably the token in the wrong shape:
				// never echo it into an error, a log or status.
				return c.fail(key, "want a string")
			}
			return c.fail(key, "want a string, got %s", abbrev(raw))
		}
		*dst = strings.TrimSpace(*dst)
		return nil
	}
	for key, dst := range map[string]*string{
		"control_plane_url": &cfg.ControlPlaneURL, "account_id": &cfg.AccountID,
		"api_token": &cfg.APIToken, "api_token_file": &cfg.APITokenFile,
		"state_dir": &cfg.StateDir, "log_level": &cfg.LogLevel, "ca_file": &cfg.CAFile,
	} {
		if err := str(key, dst); err != nil {
			return nil, err
		}
	}
	if raw, ok := c.m["poll_interval"]; ok {
		d, err := parseDuration(raw)
		if err != nil {
			return nil, c.fail("poll_interval", "%v", err)
		}
		if d < MinPollInterval || d > MaxPollInterval {
			return nil, c.fail("poll_interval", "%s is outside %s..%s", d, MinPollInterval, MaxPollInterval)
		}
		cfg.PollInterval = d
	}
	if raw, ok := c.m["remove_retired"]; ok {
		v, err := parseBool(raw)
		if err != nil {
			return nil, c.fail("remove_retired", "%v", err)
		}
		cfg.RemoveRetired = v
	}
	return cfg, nil
}

// decodeLists decodes the list keys: stores (canonical, no duplicates),
// retired fingerprints and TLS pins.
func (c configParser) decodeLists(cfg *Config) error {
	if raw, ok := c.m["stores"]; ok {
		list, err := parseStringList(raw)
		if err != nil {
			return c.fail("stores", "%v", err)
		}
		if len(list) == 0 {
			return c.fail("stores", "empty: name at least one store (system, nss, firefox-policy, java, runtimes, bundle:PATH, dir:PATH)")
		}
		seen := map[string]bool{}
		for i, s := range list {
			spec, err := stores.ParseSpec(s)
			if err != nil {
				return c.fail("stores", "%v", err)
			}
			// The spec is the ledger's store key: "dir:/a/" and "dir:/a"
			// must be the same store.
			s = spec.String()
			list[i] = s
			if seen[s] {
				return c.fail("stores", "%q is listed twice", s)
			}
			seen[s] = true
		}
		cfg.Stores = list
	}
	if raw, ok := c.m["retired_fingerprints"]; ok {
		list, err := parseStringList(raw)
		if err != nil {
			return c.fail("retired_fingerprints", "%v", err)
		}
		for _, s := range list {
			fp, err := trust.ParseFingerprint(s)
			if err != nil {
				return c.fail("retired_fingerprints", "%v", err)
			}
			cfg.RetiredFingerprints = append(cfg.RetiredFingerprints, fp)
		}
	}
	if raw, ok := c.m["pin_sha256"]; ok {
		list, err := parseStringList(raw)
		if err != nil {
			return c.fail("pin_sha256", "%v", err)
		}
		for _, s := range list {
			pin, err := ParsePin(s)
			if err != nil {
				return c.fail("pin_sha256", "%v", err)
			}
			cfg.PinSHA256 = append(cfg.PinSHA256, pin)
		}
	}
	return nil
}

// checkLocal validates what every command needs, the control plane or not:
// the log level, the state dir, the CA file's path.
func (c configParser) checkLocal(cfg *Config) error {
	switch strings.ToLower(cfg.LogLevel) {
	case "trace", "debug", "info", "warn", "error":
		cfg.LogLevel = strings.ToLower(cfg.LogLevel)
	default:
		return c.fail("log_level", "%q: want trace, debug, info, warn or error", cfg.LogLevel)
	}
	if cfg.StateDir == "" || !filepath.IsAbs(cfg.StateDir) {
		return c.fail("state_dir", "%q: want an absolute path", cfg.StateDir)
	}
	cfg.StateDir = filepath.Clean(cfg.StateDir)
	if cfg.CAFile != "" && !filepath.IsAbs(cfg.CAFile) {
		return c.fail("ca_file", "%q: want an absolute path", cfg.CAFile)
	}
	return nil
}

// checkControlPlane validates the keys a pass needs to reach the control
// plane, and reads the token file.
func (c configParser) checkControlPlane(cfg *Config) error {
	if cfg.ControlPlaneURL == "" {
		return c.fail("control_plane_url", "missing (for example https://api.cloudflare.com/client/v4)")
	}
	if err := validURL(cfg.ControlPlaneURL, cfg.CAFile != "" || len(cfg.PinSHA256) > 0); err != nil {
		return c.fail("control_plane_url", "%v", err)
	}
	if cfg.AccountID == "" {
		return c.fail("account_id", "missing (32 hex characters, from the dashboard URL)")
	}
	if !api.ValidAccountID(cfg.AccountID) {
		return c.fail("account_id", "%q: want 32 lower-case hex characters", cfg.AccountID)
	}
	switch {
	case cfg.APIToken != "" && cfg.APITokenFile != "":
		return c.fail("api_token_file", "set api_token or api_token_file, not both")
	case cfg.APIToken == "" && cfg.APITokenFile == "":
		return c.fail("api_token", "missing: set api_token_file (a 0600 file holding a read token) or api_token")
	case cfg.APITokenFile != "":
		tok, err := ReadTokenFile(cfg.APITokenFile)
		if err != nil {
			return c.fail("api_token_file", "%v", err)
		}
		cfg.APIToken = tok
	default:
		// An inline token is held to the api_token_file rule: a
		// world-readable config.json would hand it to every local user.
		if err := checkInlineTokenFile(c.origin["api_token"], c.p); err != nil {
			return c.fail("api_token", "%v", err)
		}
	}
	if strings.ContainsAny(cfg.APIToken, " \t\r\n") {
		return c.fail("api_token", "contains white space (a pasted line break?)")
	}
	if cfg.CAFile != "" {
		if _, err := loadCAPool(cfg.CAFile); err != nil {
			return c.fail("ca_file", "%v", err)
		}
	}
	return nil
}

// checkInlineTokenFile refuses an inline api_token held in a file (the
// config file or the Linux managed file) that group or other users can read.
// Managed settings that are not a file we own (macOS managed preferences,
// the Windows registry) are readable by design and documented as such.
func checkInlineTokenFile(origin string, p platform.Paths) error {
	if runtime.GOOS == "windows" || origin == "" || (origin != p.ConfigFile && origin != p.ManagedFile) {
		return nil
	}
	st, err := os.Stat(origin)
	if err != nil {
		return fmt.Errorf("check the mode of %s: %w", origin, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s holds the token but is readable by group or others (mode %04o): run chmod 600 %s, or move the token to api_token_file", origin, st.Mode().Perm(), origin)
	}
	return nil
}

// ReadTokenFile reads a token file, refusing one that group or other users
// can read: the token lets anyone list the account's certificates, and on a
// shared laptop every local user could copy it.
func ReadTokenFile(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("%q: want an absolute path", path)
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s: not a regular file", path)
	}
	// Windows has no mode bits worth the name; the file's ACL (ProgramData,
	// SYSTEM and Administrators only) is the installer's job there.
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is readable by group or others (mode %04o): run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return tok, nil
}

func validURL(s string, pinned bool) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q: %v", s, err)
	}
	if u.Host == "" {
		return fmt.Errorf("%q: no host", s)
	}
	if u.User != nil {
		return fmt.Errorf("%q: credentials in the URL; use api_token_file", s)
	}
	switch u.Scheme {
	case "https":
	case "http":
		// The token travels in every request: cleartext is only acceptable
		// on this machine (a local certplane, the demo).
		if !isLoopback(u.Hostname()) {
			return fmt.Errorf("%q: http is only allowed to a loopback address; use https", s)
		}
		if pinned {
			return fmt.Errorf("%q: ca_file and pin_sha256 need an https URL", s)
		}
	default:
		return fmt.Errorf("%q: scheme must be https", s)
	}
	return nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parseDuration accepts a Go duration string ("60s", "5m") or a number of
// seconds (MDM plists and the registry carry integers).
func parseDuration(raw json.RawMessage) (time.Duration, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return 0, fmt.Errorf("%q: want a duration like \"60s\" or \"5m\"", s)
		}
		return d, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		secs, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil || secs < 0 || secs > int64(MaxPollInterval/time.Second) {
			return 0, fmt.Errorf("%s: want whole seconds or a duration string", n)
		}
		return time.Duration(secs) * time.Second, nil
	}
	return 0, fmt.Errorf("want a duration like \"60s\", got %s", abbrev(raw))
}

// parseBool accepts JSON booleans and 0/1 (registry DWORDs).
func parseBool(raw json.RawMessage) (bool, error) {
	var b bool
	if err := json.Unmarshal(raw, &b); err == nil {
		return b, nil
	}
	switch strings.TrimSpace(string(raw)) {
	case "0":
		return false, nil
	case "1":
		return true, nil
	}
	return false, fmt.Errorf("want true or false, got %s", abbrev(raw))
}

// parseStringList accepts a JSON array of strings, or one string holding a
// comma-separated list (the registry's REG_SZ).
func parseStringList(raw json.RawMessage) ([]string, error) {
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		var s string
		if err2 := json.Unmarshal(raw, &s); err2 != nil {
			return nil, fmt.Errorf("want a list of strings, got %s", abbrev(raw))
		}
		list = strings.Split(s, ",")
	}
	out := list[:0]
	for _, s := range list {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

func abbrev(raw json.RawMessage) string {
	s := string(raw)
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Redacted returns a copy of c safe to print: the token is replaced.
func (c Config) Redacted() Config {
	if c.APIToken != "" {
		c.APIToken = "REDACTED"
	}
	return c
}

// String never includes the token.
func (c Config) String() string {
	return fmt.Sprintf("config{%s account=%s stores=%v poll=%s source=%s}", c.ControlPlaneURL, c.AccountID, c.Stores, c.PollInterval, c.Source)
}

// GoString never includes the token (for %#v).
func (c Config) GoString() string { return c.String() }
