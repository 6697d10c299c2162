package daemon

import (
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// LogOptions configure the daemon's logger.
type LogOptions struct {
	// Output is where lines go (stderr under a service manager: journald,
	// launchd's log file, the Windows service wrapper).
	Output io.Writer
	// JSON selects JSON lines (under a service manager, for log shippers)
	// over human text (on a terminal).
	JSON bool
	// Level is trace, debug, info, warn or error; "" means info.
	Level string
	// RepeatWindow is how long an identical warning or error is suppressed
	// after it was logged; zero means DefaultRepeatWindow, negative
	// disables suppression.
	RepeatWindow time.Duration
	// Secrets are values never to be logged (the API token); they are
	// replaced by REDACTED wherever they appear in a message or value.
	Secrets []string
	// Now is the clock for suppression; nil means time.Now.
	Now func() time.Time
}

// DefaultRepeatWindow is how often the same failure is logged at most: a
// control plane that is down for a day logs one line per five minutes,
// with how many repeats were folded in, instead of one per poll.
const DefaultRepeatWindow = 5 * time.Minute

// Redacted replaces secrets in logs.
const Redacted = "REDACTED"

// NewLogger returns the daemon's root logger: hclog, JSON or text, with
// repeated warnings and errors rate-limited and secrets redacted.
func NewLogger(o LogOptions) hclog.Logger {
	if o.RepeatWindow == 0 {
		o.RepeatWindow = DefaultRepeatWindow
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	level := hclog.LevelFromString(o.Level)
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	base := hclog.New(&hclog.LoggerOptions{
		Name:            "certagent",
		Level:           level,
		Output:          o.Output,
		JSONFormat:      o.JSON,
		TimeFormat:      time.RFC3339,
		IncludeLocation: false,
	})
	var secrets []string
	for _, s := range o.Secrets {
		if len(s) >= 4 { // a shorter "secret" would redact ordinary words
			secrets = append(secrets, s)
		}
	}
	return &guardLogger{Logger: base, g: &guard{window: o.RepeatWindow, now: o.Now, seen: map[string]*repeat{}, secrets: secrets}}
}

// guard is the state shared by a logger and its Named/With children.
type guard struct {
	window time.Duration
	now    func() time.Time

	mu sync.Mutex
	// seen maps a message key to its last emission, and secrets may grow
	// (AddSecret); both guarded by mu.
	seen    map[string]*repeat
	secrets []string
}

type repeat struct {
	last       time.Time
	suppressed int
}

// guardLogger wraps an hclog.Logger: every line is redacted, and warnings
// and errors identical to one logged within the window are counted instead
// of written.
type guardLogger struct {
	hclog.Logger
	g *guard
}

// SecretKeys are the words that make a name secret: a log argument or a
// config key containing one (api_token, api_token_file, pin's password…)
// has its value redacted whatever it is, in logs and in a bugreport.
var SecretKeys = []string{"token", "password", "secret", "authorization", "private_key"}

func (l *guardLogger) clean(msg string, args []any) (string, []any) {
	msg = l.g.redact(msg)
	out := make([]any, len(args))
	copy(out, args)
	for i := 0; i+1 < len(out); i += 2 {
		key := strings.ToLower(fmt.Sprint(out[i]))
		for _, k := range SecretKeys {
			if strings.Contains(key, k) {
				out[i+1] = Redacted
			}
		}
		switch v := out[i+1].(type) {
		case string:
			out[i+1] = l.g.redact(v)
		case error:
			if s := v.Error(); l.g.redact(s) != s {
				out[i+1] = l.g.redact(s)
			}
		case fmt.Stringer:
			if s := v.String(); l.g.redact(s) != s {
				out[i+1] = l.g.redact(s)
			}
		}
	}
	return msg, out
}

func (g *guard) redact(s string) string {
	g.mu.Lock()
	secrets := g.secrets
	g.mu.Unlock()
	for _, sec := range secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, Redacted)
		}
	}
	return s
}

// admit reports whether a line may be written now and how many identical
// lines were suppressed before it.
func (g *guard) admit(level hclog.Level, name, msg string, args []any) (bool, int) {
	if g.window < 0 || level < hclog.Warn {
		return true, 0
	}
	key := fmt.Sprint(level, name, msg, args)
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.seen[key]
	if !ok {
		if len(g.seen) > 1024 {
			// Bound memory: a flood of distinct messages resets the table.
			g.seen = map[string]*repeat{}
		}
		g.seen[key] = &repeat{last: now}
		return true, 0
	}
	if now.Sub(r.last) < g.window {
		r.suppressed++
		return false, 0
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	return true, n
}

func (l *guardLogger) emit(level hclog.Level, msg string, args []any) {
	if level < l.Logger.GetLevel() {
		return
	}
	msg, args = l.clean(msg, args)
	ok, n := l.g.admit(level, l.Logger.Name(), msg, args)
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, "repeated", n)
	}
	l.Logger.Log(level, msg, args...)
}

// Log implements hclog.Logger.
func (l *guardLogger) Log(level hclog.Level, msg string, args ...any) { l.emit(level, msg, args) }

// Trace implements hclog.Logger.
func (l *guardLogger) Trace(msg string, args ...any) { l.emit(hclog.Trace, msg, args) }

// Debug implements hclog.Logger.
func (l *guardLogger) Debug(msg string, args ...any) { l.emit(hclog.Debug, msg, args) }

// Info implements hclog.Logger.
func (l *guardLogger) Info(msg string, args ...any) { l.emit(hclog.Info, msg, args) }

// Warn implements hclog.Logger.
func (l *guardLogger) Warn(msg string, args ...any) { l.emit(hclog.Warn, msg, args) }

// Error implements hclog.Logger.
func (l *guardLogger) Error(msg string, args ...any) { l.emit(hclog.Error, msg, args) }

// With implements hclog.Logger; implied args are redacted too.
func (l *guardLogger) With(args ...any) hclog.Logger {
	_, args = l.clean("", args)
	return &guardLogger{Logger: l.Logger.With(args...), g: l.g}
}

// Named implements hclog.Logger.
func (l *guardLogger) Named(name string) hclog.Logger {
	return &guardLogger{Logger: l.Logger.Named(name), g: l.g}
}

// ResetNamed implements hclog.Logger.
func (l *guardLogger) ResetNamed(name string) hclog.Logger {
	return &guardLogger{Logger: l.Logger.ResetNamed(name), g: l.g}
}

// StandardLogger implements hclog.Logger, routing through the guard.
func (l *guardLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	return log.New(l.StandardWriter(opts), "", 0)
}

// StandardWriter implements hclog.Logger, routing through the guard.
func (l *guardLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	return &stdWriter{l: l}
}

type stdWriter struct{ l *guardLogger }

func (w *stdWriter) Write(p []byte) (int, error) {
	w.l.Info(strings.TrimSpace(string(p)))
	return len(p), nil
}

// AddSecret registers another value never to log (a token read after the
// logger was built).
func AddSecret(l hclog.Logger, secret string) {
	if gl, ok := l.(*guardLogger); ok && len(secret) >= 4 {
		gl.g.mu.Lock()
		defer gl.g.mu.Unlock()
		for _, s := range gl.g.secrets {
			if s == secret {
				return
			}
		}
		gl.g.secrets = append(gl.g.secrets, secret)
	}
}

// LogFile is the daemon's own log file, for service managers that do not
// keep stderr (the Windows service manager discards it). It keeps the
// current file under MaxLogBytes by rotating to one ".1" generation.
type LogFile struct {
	path string
	max  int64

	mu   sync.Mutex
	f    *os.File
	size int64
}

// MaxLogBytes bounds each generation of the log file.
const MaxLogBytes = 10 << 20

// OpenLogFile opens (creating dir 0755 and the file 0644) dir/certagent.log
// for appending.
func OpenLogFile(dir string) (*LogFile, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("daemon: log dir: %w", err)
	}
	l := &LogFile{path: filepath.Join(dir, "certagent.log"), max: MaxLogBytes}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *LogFile) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("daemon: log file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("daemon: log file: %w", err)
	}
	l.f, l.size = f, st.Size()
	return nil
}

// Write implements io.Writer, rotating first when the line would overflow.
func (l *LogFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.size+int64(len(p)) > l.max && l.size > 0 {
		l.f.Close()
		// Best effort: a failed rename keeps appending to the same file.
		_ = os.Rename(l.path, l.path+".1")
		if err := l.open(); err != nil {
			return 0, err
		}
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

// Close closes the file.
func (l *LogFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}
