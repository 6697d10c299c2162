package runtimes

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/internal/atomicfile"
	"github.com/certagent/certagent/platform"
)

// The files the Linux wiring writes, each read by a different part of the
// system. None of them is a file anyone else owns: drop-in directories take
// a file of our own name, and pip's site-wide config is written only when
// there is none.
const (
	// ProfileScript is sourced by every login shell (bash, dash, and zsh
	// through Debian's and Fedora's zprofile), so `su -`, ssh and console
	// logins get the variables.
	ProfileScript = "/etc/profile.d/certagent-runtimes.sh"
	// EnvironmentD is read by systemd's user environment generator: every
	// user manager, so graphical sessions and user services.
	EnvironmentD = "/etc/environment.d/90-certagent-runtimes.conf"
	// SystemManagerConf gives every system service the variables
	// (DefaultEnvironment=), from the next boot; the running manager gets
	// them through systemctl set-environment.
	SystemManagerConf = "/etc/systemd/system.conf.d/90-certagent-runtimes.conf"
	// UserManagerConf does the same for user managers that do not run the
	// environment generator.
	UserManagerConf = "/etc/systemd/user.conf.d/90-certagent-runtimes.conf"
	// PipConf is pip's site-wide config (pip reads $XDG_CONFIG_DIRS/pip/
	// pip.conf, then /etc/pip.conf, which therefore still wins): for pip run
	// where the environment is reset (sudo, cron). Written only when absent.
	PipConf = "/etc/xdg/pip/pip.conf"
)

// DefaultSystemctl is systemctl's path.
const DefaultSystemctl = "/usr/bin/systemctl"

// fileWiring is the Linux wiring: files, plus the running system manager's
// environment when systemd runs.
type fileWiring struct {
	root string
	// systemctl is "" when the running manager is not to be touched.
	systemctl string
	run       platform.Runner
	log       hclog.Logger
}

func (w *fileWiring) path(p string) string { return filepath.Join(w.root, p) }

func (w *fileWiring) paths() []string {
	var out []string
	for _, f := range []string{ProfileScript, EnvironmentD, SystemManagerConf, UserManagerConf, PipConf} {
		out = append(out, filepath.Dir(w.path(f)))
	}
	return out
}

// file is one file the wiring wants, with what it must hold; optional
// files are skipped (left as they are) when someone else's is there.
type file struct {
	path     string
	data     []byte
	optional bool
}

func (w *fileWiring) files(set []Setting) []file {
	var prof, envd, mgr bytes.Buffer
	prof.WriteString(header + "\n")
	prof.WriteString("# Points the runtimes that ignore the OS trust store at certagent's bundle\n")
	prof.WriteString("# (the system roots plus the organisation's). A value set earlier is kept.\n")
	envd.WriteString(header + "\n")
	envd.WriteString("# Read by systemd's user environment generator: graphical sessions and user services.\n")
	mgr.WriteString(header + "\n")
	mgr.WriteString("[Manager]\n")
	var bundlePath string
	var pip []byte
	for i, s := range set {
		bundlePath = s.Value
		if i == 0 {
			fmt.Fprintf(&prof, "if [ -r %s ]; then\n", s.Value)
		}
		fmt.Fprintf(&prof, "\t[ -n \"${%s:-}\" ] || export %s=%s\n", s.Name, s.Name, s.Value)
		fmt.Fprintf(&envd, "%s=${%s:-%s}\n", s.Name, s.Name, s.Value)
		fmt.Fprintf(&mgr, "DefaultEnvironment=%s=%s\n", s.Name, s.Value)
		if s.Name == "PIP_CERT" {
			pip = []byte(header + "\n[global]\ncert = " + s.Value + "\n")
		}
	}
	if bundlePath != "" {
		prof.WriteString("fi\n")
	}
	out := []file{
		{path: w.path(ProfileScript), data: prof.Bytes()},
		{path: w.path(EnvironmentD), data: envd.Bytes()},
		{path: w.path(SystemManagerConf), data: mgr.Bytes()},
		{path: w.path(UserManagerConf), data: mgr.Bytes()},
	}
	if pip != nil {
		out = append(out, file{path: w.path(PipConf), data: pip, optional: true})
	}
	return out
}

// ownership reads what is at p: absent, ours, or someone else's.
func ownership(p string) (data []byte, exists, ours bool, err error) {
	st, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, false, nil
	}
	if err != nil {
		return nil, false, false, err
	}
	if !st.Mode().IsRegular() || st.Size() > 1<<20 {
		return nil, true, false, nil
	}
	data, err = os.ReadFile(p)
	if err != nil {
		return nil, true, false, err
	}
	return data, true, bytes.HasPrefix(data, []byte(header+"\n")), nil
}

func (w *fileWiring) wired(_ context.Context, set []Setting) (bool, error) {
	for _, f := range w.files(set) {
		data, exists, ours, err := ownership(f.path)
		if err != nil {
			return false, err
		}
		switch {
		case exists && !ours && f.optional:
			// Someone else's: theirs wins, nothing to do.
		case !ours || !bytes.Equal(data, f.data):
			return false, nil
		}
	}
	return true, nil
}

func (w *fileWiring) wire(ctx context.Context, set []Setting) error {
	managerChanged := false
	for _, f := range w.files(set) {
		_, exists, ours, err := ownership(f.path)
		if err != nil {
			return err
		}
		if exists && !ours {
			if f.optional {
				w.log.Info("left someone else's file alone", "file", f.path)
				continue
			}
			return fmt.Errorf("%s exists and was not written by certagent; move it away", f.path)
		}
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", filepath.Dir(f.path), err)
		}
		changed, err := atomicfile.WriteIfChanged(f.path, f.data, 0o644)
		if err != nil {
			return fmt.Errorf("writing %s: %w", f.path, err)
		}
		if changed && f.path == w.path(SystemManagerConf) {
			managerChanged = true
		}
	}
	// A pip.conf of ours left from a bundle that held the system roots.
	if !hasSetting(set, "PIP_CERT") {
		if err := removeOurs(w.path(PipConf)); err != nil {
			return err
		}
	}
	if managerChanged {
		return w.manager(ctx, set, set[0].Value)
	}
	return nil
}

func (w *fileWiring) unwire(ctx context.Context, bundlePath string) error {
	var errs []error
	for _, p := range []string{ProfileScript, EnvironmentD, SystemManagerConf, UserManagerConf, PipConf} {
		errs = append(errs, removeOurs(w.path(p)))
	}
	errs = append(errs, w.manager(ctx, nil, bundlePath))
	return errors.Join(errs...)
}

// removeOurs deletes p when it is ours.
func removeOurs(p string) error {
	_, exists, ours, err := ownership(p)
	if err != nil || !exists || !ours {
		return err
	}
	if err := atomicfile.Remove(p); err != nil {
		return fmt.Errorf("removing %s: %w", p, err)
	}
	return nil
}

func hasSetting(set []Setting, name string) bool {
	for _, s := range set {
		if s.Name == name {
			return true
		}
	}
	return false
}

// manager makes the running system manager's environment hold set: each
// variable it lacks is set, and each holding bundlePath that set does not
// name is unset. A variable someone else set is left alone. Without systemd
// (or in tests) it does nothing.
func (w *fileWiring) manager(ctx context.Context, set []Setting, bundlePath string) error {
	if w.systemctl == "" {
		return nil
	}
	if st, err := os.Stat(w.path("/run/systemd/system")); err != nil || !st.IsDir() {
		return nil
	}
	out, err := w.run.Run(ctx, platform.Cmd{Path: w.systemctl, Args: []string{"show-environment"}})
	if err != nil {
		return fmt.Errorf("reading the service manager's environment: %w", err)
	}
	env := parseEnv(out)
	var add, del []string
	for _, s := range set {
		if _, ok := env[s.Name]; !ok {
			add = append(add, s.Name+"="+s.Value)
		}
	}
	for _, v := range Vars {
		if env[v.Name] == bundlePath && !hasSetting(set, v.Name) {
			del = append(del, v.Name)
		}
	}
	sort.Strings(del)
	if len(add) > 0 {
		if _, err := w.run.Run(ctx, platform.Cmd{Path: w.systemctl, Args: append([]string{"set-environment"}, add...)}); err != nil {
			return fmt.Errorf("setting the service manager's environment: %w", err)
		}
	}
	if len(del) > 0 {
		if _, err := w.run.Run(ctx, platform.Cmd{Path: w.systemctl, Args: append([]string{"unset-environment"}, del...)}); err != nil {
			return fmt.Errorf("unsetting the service manager's environment: %w", err)
		}
	}
	return nil
}

// parseEnv reads NAME=value lines (systemctl show-environment, launchd).
// Values systemctl quotes ($'…') never equal our plain path, which is all
// that matters here.
func parseEnv(out []byte) map[string]string {
	env := make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && k != "" {
			env[k] = v
		}
	}
	return env
}
