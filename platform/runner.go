// Package platform holds what differs between operating systems: OS and
// distro detection, default paths, local users and their homes, the command
// runner every store adapter uses (it never calls sudo), service glue,
// managed (MDM) settings and the LocalAPI transport.
package platform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync/atomic"
)

// Cmd is one external command.
type Cmd struct {
	// Path is the tool's absolute path; adapters resolve tools once and never
	// rely on the service's $PATH.
	Path string
	Args []string
	// Stdin is fed to the command when non-nil.
	Stdin []byte
	// Env replaces the environment when non-nil; nil means a minimal
	// environment (PATH, LANG=C), never the service's own.
	Env []string
	// Dir is the working directory ("" means /).
	Dir string
	// As runs the command as this user (uid/gid and supplementary groups
	// dropped by the runner). Nil means as ourselves.
	As *User
}

func (c Cmd) String() string {
	var b strings.Builder
	b.WriteString(c.Path)
	for _, a := range c.Args {
		b.WriteByte(' ')
		if a == "" || strings.ContainsAny(a, " \t\"'") {
			fmt.Fprintf(&b, "%q", a)
		} else {
			b.WriteString(a)
		}
	}
	if c.As != nil {
		fmt.Fprintf(&b, " (as %s)", c.As.Name)
	}
	return b.String()
}

// CmdError is a command that failed: it keeps the argv, the exit code and
// the combined output so that status can show exactly what went wrong.
type CmdError struct {
	Cmd      Cmd
	ExitCode int // -1 when the command did not start or was killed
	Output   []byte
	Err      error
}

func (e *CmdError) Error() string {
	out := strings.TrimSpace(string(e.Output))
	if len(out) > 512 {
		out = out[:512] + "…"
	}
	if out == "" {
		return fmt.Sprintf("%s: %v", e.Cmd, e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", e.Cmd, e.Err, out)
}

func (e *CmdError) Unwrap() error { return e.Err }

// ExitCode returns the exit code of a *CmdError in err's chain, or -1.
func ExitCode(err error) int {
	var ce *CmdError
	if errors.As(err, &ce) {
		return ce.ExitCode
	}
	return -1
}

// Runner runs external commands. Adapters take one so tests can record and
// replay real tools' behaviour.
type Runner interface {
	// Run runs cmd and returns its combined output. A non-zero exit is a
	// *CmdError that still carries the output.
	Run(ctx context.Context, cmd Cmd) ([]byte, error)
}

// ExecRunner runs commands with os/exec. It never prefixes sudo.
type ExecRunner struct {
	runs atomic.Int64
}

// Runs returns how many commands the runner has started, for the "a pass
// with nothing to change runs no external command" check.
func (r *ExecRunner) Runs() int64 { return r.runs.Load() }

// DefaultPath is the PATH handed to tools: absolute system directories only.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Run implements Runner.
func (r *ExecRunner) Run(ctx context.Context, c Cmd) ([]byte, error) {
	r.runs.Add(1)
	cmd := exec.CommandContext(ctx, c.Path, c.Args...)
	cmd.Env = c.Env
	if cmd.Env == nil {
		cmd.Env = defaultEnv(c)
	}
	cmd.Dir = c.Dir
	if cmd.Dir == "" {
		cmd.Dir = rootDir
	}
	if c.Stdin != nil {
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if c.As != nil {
		if err := runAs(cmd, c.As); err != nil {
			return nil, &CmdError{Cmd: c, ExitCode: -1, Err: err}
		}
	}
	err := cmd.Run()
	if err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		return out.Bytes(), &CmdError{Cmd: c, ExitCode: code, Output: out.Bytes(), Err: err}
	}
	return out.Bytes(), nil
}

// RunnerFunc adapts a function to Runner.
type RunnerFunc func(ctx context.Context, cmd Cmd) ([]byte, error)

// Run implements Runner.
func (f RunnerFunc) Run(ctx context.Context, cmd Cmd) ([]byte, error) { return f(ctx, cmd) }

// CountingRunner wraps a Runner and counts the commands it runs.
type CountingRunner struct {
	Runner Runner
	n      atomic.Int64
}

// Run implements Runner.
func (c *CountingRunner) Run(ctx context.Context, cmd Cmd) ([]byte, error) {
	c.n.Add(1)
	return c.Runner.Run(ctx, cmd)
}

// Count returns how many commands ran.
func (c *CountingRunner) Count() int64 { return c.n.Load() }
