package runtimes

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/internal/atomicfile"
	"github.com/certagent/certagent/platform"
)

// The macOS wiring's files: launchd jobs that run `launchctl setenv` (for
// each variable not set yet) at boot in the system domain (daemons) and at
// each login in the user's GUI domain (apps started from the Dock or
// Finder, and the shells of Terminal and IDEs, inherit it).
const (
	LaunchDaemonPlist = "/Library/LaunchDaemons/com.certagent.runtimes.plist"
	LaunchAgentPlist  = "/Library/LaunchAgents/com.certagent.runtimes.plist"
	// DefaultLaunchctl is launchctl's path.
	DefaultLaunchctl = "/bin/launchctl"
	launchdLabel     = "com.certagent.runtimes"
)

// launchdWiring is the macOS wiring. Its logic runs on every OS; only
// launchctl itself needs macOS (tests record it through the Runner).
type launchdWiring struct {
	root      string
	launchctl string
	run       platform.Runner
	log       hclog.Logger
}

func (w *launchdWiring) path(p string) string { return filepath.Join(w.root, p) }

func (w *launchdWiring) paths() []string {
	return []string{filepath.Dir(w.path(LaunchDaemonPlist)), filepath.Dir(w.path(LaunchAgentPlist))}
}

// plist renders the job that sets set with launchctl.
func (w *launchdWiring) plist(set []Setting) []byte {
	var b bytes.Buffer
	esc := func(s string) string {
		var e bytes.Buffer
		_ = xml.EscapeText(&e, []byte(s))
		return e.String()
	}
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString("<!-- " + strings.TrimPrefix(header, "# ") + " -->\n")
	b.WriteString(`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n")
	b.WriteString("<plist version=\"1.0\">\n<dict>\n")
	b.WriteString("\t<key>Label</key>\n\t<string>" + launchdLabel + "</string>\n")
	// A shell line per variable keeps a value set earlier, as on Linux;
	// names and paths are plain (checkValue), so nothing needs quoting.
	var script strings.Builder
	for _, st := range set {
		fmt.Fprintf(&script, "[ -n \"$(%s getenv %s)\" ] || %s setenv %s %s; ", w.launchctl, st.Name, w.launchctl, st.Name, st.Value)
	}
	b.WriteString("\t<key>ProgramArguments</key>\n\t<array>\n")
	b.WriteString("\t\t<string>/bin/sh</string>\n\t\t<string>-c</string>\n")
	b.WriteString("\t\t<string>" + esc(strings.TrimSpace(script.String())) + "</string>\n")
	b.WriteString("\t</array>\n\t<key>RunAtLoad</key>\n\t<true/>\n</dict>\n</plist>\n")
	return b.Bytes()
}

// plistOurs reports what is at p: absent, ours (carries our header), or
// someone else's.
func plistOurs(p string) (data []byte, exists, ours bool, err error) {
	data, err = os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, false, nil
	}
	if err != nil {
		return nil, true, false, err
	}
	return data, true, bytes.Contains(data, []byte("<!-- "+strings.TrimPrefix(header, "# ")+" -->")), nil
}

func (w *launchdWiring) wired(_ context.Context, set []Setting) (bool, error) {
	want := w.plist(set)
	for _, p := range []string{LaunchDaemonPlist, LaunchAgentPlist} {
		data, _, _, err := plistOurs(w.path(p))
		if err != nil {
			return false, err
		}
		if !bytes.Equal(data, want) {
			return false, nil
		}
	}
	return true, nil
}

func (w *launchdWiring) wire(ctx context.Context, set []Setting) error {
	want := w.plist(set)
	for _, p := range []string{LaunchDaemonPlist, LaunchAgentPlist} {
		p = w.path(p)
		_, exists, ours, err := plistOurs(p)
		if err != nil {
			return err
		}
		if exists && !ours {
			return fmt.Errorf("%s exists and was not written by certagent; move it away", p)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", filepath.Dir(p), err)
		}
		if _, err := atomicfile.WriteIfChanged(p, want, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	return w.setenv(ctx, set, set[0].Value)
}

func (w *launchdWiring) unwire(ctx context.Context, bundlePath string) error {
	var errs []error
	for _, p := range []string{LaunchDaemonPlist, LaunchAgentPlist} {
		p = w.path(p)
		if _, exists, ours, err := plistOurs(p); err != nil {
			errs = append(errs, err)
		} else if exists && ours {
			errs = append(errs, atomicfile.Remove(p))
		}
	}
	errs = append(errs, w.setenv(ctx, nil, bundlePath))
	return errors.Join(errs...)
}

// setenv makes launchd's system-domain environment hold set now (the jobs
// do it at every boot and login): variables it lacks are set, variables
// holding bundlePath that set does not name are unset, others' are left.
func (w *launchdWiring) setenv(ctx context.Context, set []Setting, bundlePath string) error {
	for _, v := range Vars {
		out, err := w.run.Run(ctx, platform.Cmd{Path: w.launchctl, Args: []string{"getenv", v.Name}})
		if err != nil && platform.ExitCode(err) < 0 {
			return fmt.Errorf("launchctl getenv %s: %w", v.Name, err)
		}
		cur := strings.TrimSpace(string(out))
		want := ""
		for _, s := range set {
			if s.Name == v.Name {
				want = s.Value
			}
		}
		switch {
		case want != "" && cur == "":
			if _, err := w.run.Run(ctx, platform.Cmd{Path: w.launchctl, Args: []string{"setenv", v.Name, want}}); err != nil {
				return fmt.Errorf("launchctl setenv %s: %w", v.Name, err)
			}
		case want == "" && cur == bundlePath:
			if _, err := w.run.Run(ctx, platform.Cmd{Path: w.launchctl, Args: []string{"unsetenv", v.Name}}); err != nil {
				return fmt.Errorf("launchctl unsetenv %s: %w", v.Name, err)
			}
		}
	}
	return nil
}
