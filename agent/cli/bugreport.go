package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/agent/daemon"
	"github.com/certagent/certagent/agent/status"
	"github.com/certagent/certagent/internal/atomicfile"
	"github.com/certagent/certagent/internal/buildinfo"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust/stores"
)

// cmdBugreport is `certagent bugreport [-o FILE]`: one .tar.gz a help desk
// can attach to a ticket. Secrets never enter it: config files are
// re-encoded with every secret-looking key replaced by REDACTED, and every
// file is scrubbed of the token's value before it is written.
func cmdBugreport(args []string) int {
	fset := newFlagSet("bugreport")
	out := fset.String("o", "", "output file (default certagent-bugreport-HOST-TIME.tar.gz in the current directory)")
	if err := fset.Parse(args); err != nil {
		return 2
	}
	path := *out
	if path == "" {
		host, _ := os.Hostname()
		path = fmt.Sprintf("certagent-bugreport-%s-%s.tar.gz", sanitizeName(host), time.Now().UTC().Format("20060102T150405Z"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	data, err := buildBugreport(ctx, platform.DefaultPaths())
	if err != nil {
		fmt.Fprintln(os.Stderr, "certagent bugreport:", err)
		return 1
	}
	// 0600: store listings name users and their profile paths.
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "certagent bugreport:", err)
		return 1
	}
	fmt.Println(path)
	return 0
}

// bugFile is one archive member.
type bugFile struct {
	name string
	data []byte
}

// buildBugreport collects status, config (redacted), ledger, store
// listings, recent logs and system facts into a .tar.gz.
func buildBugreport(ctx context.Context, paths platform.Paths) ([]byte, error) {
	var files []bugFile
	add := func(name string, data []byte) { files = append(files, bugFile{name, data}) }
	addJSON := func(name string, v any) {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			b = []byte(fmt.Sprintf("encoding %s: %v\n", name, err))
		}
		add(name, append(b, '\n'))
	}
	var notes []string
	note := func(format string, a ...any) { notes = append(notes, fmt.Sprintf(format, a...)) }

	// Secrets to scrub from everything, whatever file they show up in.
	var secrets []string
	cfg, cfgErr := agent.LoadConfig(paths, agent.LoadOptions{Local: true})
	if cfgErr != nil {
		note("config (local load): %v", cfgErr)
	} else {
		secrets = append(secrets, cfg.APIToken)
	}
	for _, f := range []string{paths.ConfigFile, paths.ManagedFile} {
		if f == "" {
			continue
		}
		secrets = append(secrets, rawSecrets(f)...)
	}

	rep := gatherStatus(ctx, paths)
	addJSON("status.json", rep)
	var table bytes.Buffer
	_ = status.Render(&table, rep, time.Now())
	add("status.txt", table.Bytes())

	add("config.json", redactedConfig(paths.ConfigFile))
	if paths.ManagedFile != "" {
		add("managed.json", redactedConfig(paths.ManagedFile))
	}

	// The state directory even when the config is broken: the ledger is
	// what support needs most then.
	stateDir := paths.StateDir
	if cfg != nil {
		stateDir = cfg.StateDir
	}
	if b, err := os.ReadFile(filepath.Join(stateDir, "ledger.json")); err == nil {
		add("ledger.json", b)
	} else {
		note("ledger: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(stateDir, "status.json")); err == nil {
		add("state/status.json", b)
	}
	if cfg != nil {
		for i, name := range cfg.Stores {
			addJSON(fmt.Sprintf("stores/%02d-%s.json", i, sanitizeName(name)), storeListing(ctx, name))
		}
	}

	for name, data := range recentLogs(ctx, paths) {
		add(name, data)
	}
	addJSON("system.json", systemFacts())
	if len(notes) > 0 {
		add("notes.txt", []byte(strings.Join(notes, "\n")+"\n"))
	}

	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	now := time.Now()
	for _, f := range files {
		data := scrub(f.data, secrets)
		hdr := &tar.Header{Name: "certagent-bugreport/" + f.name, Mode: 0o600, Size: int64(len(data)), ModTime: now, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("bugreport: %w", err)
		}
		if _, err := tw.Write(data); err != nil {
			return nil, fmt.Errorf("bugreport: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("bugreport: %w", err)
	}
	if err := gz.Close(); err != nil {
		return nil, fmt.Errorf("bugreport: %w", err)
	}
	return buf.Bytes(), nil
}

// redactedConfig returns the config file as JSON with secret values
// replaced, or, when it does not parse, only why (a broken file could hold
// the token anywhere).
func redactedConfig(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return []byte(fmt.Sprintf("# %s: %v\n", path, err))
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return []byte(fmt.Sprintf("# %s does not parse as a JSON object (%v); content withheld because it may hold secrets\n", path, err))
	}
	redactMap(m)
	out, _ := json.MarshalIndent(m, "", "  ")
	return append(out, '\n')
}

func redactMap(m map[string]any) {
	for k, v := range m {
		if isSecretKey(k) && !strings.HasSuffix(strings.ToLower(k), "_file") {
			m[k] = daemon.Redacted
			continue
		}
		redactValue(v)
	}
}

func redactValue(v any) {
	switch v := v.(type) {
	case map[string]any:
		redactMap(v)
	case []any:
		for _, e := range v {
			redactValue(e)
		}
	}
}

func isSecretKey(k string) bool {
	k = strings.ToLower(k)
	for _, s := range daemon.SecretKeys {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// rawSecrets returns secret-looking string values of a JSON config file,
// and the content of the token file it names.
func rawSecrets(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	var out []string
	for k, v := range m {
		s, ok := v.(string)
		if !ok || !isSecretKey(k) {
			continue
		}
		if strings.HasSuffix(strings.ToLower(k), "_file") {
			if tok, err := os.ReadFile(s); err == nil {
				out = append(out, strings.TrimSpace(string(tok)))
			}
			continue
		}
		out = append(out, s)
	}
	return out
}

// scrub replaces every secret in data.
func scrub(data []byte, secrets []string) []byte {
	for _, s := range secrets {
		if len(s) >= 4 {
			data = bytes.ReplaceAll(data, []byte(s), []byte(daemon.Redacted))
		}
	}
	return data
}

// storeListing is what one store holds, or why it could not say.
func storeListing(ctx context.Context, name string) any {
	type listing struct {
		Store     string `json:"store"`
		Available bool   `json:"available"`
		Error     string `json:"error,omitempty"`
		Inventory any    `json:"inventory,omitempty"`
	}
	l := listing{Store: name}
	s, err := stores.Open(name, stores.Env{})
	if err != nil {
		l.Error = err.Error()
		return l
	}
	if err := s.Check(ctx); err != nil {
		l.Error = err.Error()
		return l
	}
	inv, err := s.List(ctx)
	if err != nil {
		l.Error = err.Error()
		return l
	}
	l.Available, l.Inventory = true, inv
	return l
}

// maxLogBytes bounds each log in the archive to its most recent part.
const maxLogBytes = 2 << 20

// recentLogs returns the daemon's recent log lines: the journal on systemd
// machines, the files in the log directory everywhere.
func recentLogs(ctx context.Context, paths platform.Paths) map[string][]byte {
	out := map[string][]byte{}
	if runtime.GOOS == "linux" {
		if jc, err := exec.LookPath("journalctl"); err == nil {
			cmd := exec.CommandContext(ctx, jc, "-u", platform.ServiceName, "-n", "5000", "--no-pager", "-o", "short-iso")
			if b, err := cmd.Output(); err == nil && len(b) > 0 {
				out["logs/journal.txt"] = tail(b)
			}
		}
	}
	if paths.LogDir != "" {
		ents, _ := os.ReadDir(paths.LogDir)
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
		for _, e := range ents {
			if !e.Type().IsRegular() {
				continue
			}
			f, err := os.Open(filepath.Join(paths.LogDir, e.Name()))
			if err != nil {
				continue
			}
			if st, err := f.Stat(); err == nil && st.Size() > maxLogBytes {
				_, _ = f.Seek(st.Size()-maxLogBytes, io.SeekStart)
			}
			b, _ := io.ReadAll(io.LimitReader(f, maxLogBytes))
			f.Close()
			out["logs/"+sanitizeName(e.Name())] = b
		}
	}
	return out
}

func tail(b []byte) []byte {
	if len(b) > maxLogBytes {
		return b[len(b)-maxLogBytes:]
	}
	return b
}

// systemFacts are what a support engineer asks first.
func systemFacts() map[string]any {
	host, _ := os.Hostname()
	facts := map[string]any{
		"version": buildinfo.Version, "goos": runtime.GOOS, "goarch": runtime.GOARCH,
		"go": runtime.Version(), "hostname": host, "time": time.Now().UTC().Format(time.RFC3339),
		"euid": os.Geteuid(),
	}
	if runtime.GOOS == "linux" {
		if osr, err := platform.ReadOSRelease("/etc/os-release"); err == nil {
			facts["os_release"] = osr
		}
	}
	return facts
}

// sanitizeName keeps archive member names to a safe alphabet.
func sanitizeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "unnamed"
	}
	return b.String()
}
