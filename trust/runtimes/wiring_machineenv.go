package runtimes

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"
)

// MachineEnvKey is where Windows keeps the machine environment every new
// process of every user and service starts with.
const MachineEnvKey = `HKLM\SYSTEM\CurrentControlSet\Control\Session Manager\Environment`

// machineEnv is the Windows machine environment (the registry in
// production, a map in tests).
type machineEnv interface {
	// Get returns a variable's value and whether it is set.
	Get(name string) (string, bool, error)
	Set(name, value string) error
	Delete(name string) error
	// Announce tells running programs (Explorer) that the environment
	// changed, so what they start next sees it.
	Announce()
}

// machineEnvWiring is the Windows wiring: machine environment variables,
// each set only when absent and removed only while it holds our path.
type machineEnvWiring struct {
	env machineEnv
	log hclog.Logger
}

func (w *machineEnvWiring) paths() []string { return nil }

func (w *machineEnvWiring) wired(_ context.Context, set []Setting) (bool, error) {
	for _, s := range set {
		cur, ok, err := w.env.Get(s.Name)
		if err != nil {
			return false, err
		}
		// Someone else's value is theirs: it counts as done.
		if !ok || cur == "" {
			return false, nil
		}
	}
	return true, nil
}

func (w *machineEnvWiring) wire(_ context.Context, set []Setting) error {
	changed := false
	for _, s := range set {
		cur, ok, err := w.env.Get(s.Name)
		if err != nil {
			return err
		}
		if ok && cur != "" {
			if cur != s.Value {
				w.log.Info("left someone else's variable alone", "variable", s.Name)
			}
			continue
		}
		if err := w.env.Set(s.Name, s.Value); err != nil {
			return fmt.Errorf("setting %s in %s: %w", s.Name, MachineEnvKey, err)
		}
		changed = true
	}
	if set != nil {
		d, err := w.drop(set, set[0].Value)
		if err != nil {
			return err
		}
		changed = changed || d
	}
	if changed {
		w.env.Announce()
	}
	return nil
}

// drop deletes our variables that set does not name.
func (w *machineEnvWiring) drop(set []Setting, bundlePath string) (bool, error) {
	changed := false
	var errs []error
	for _, v := range Vars {
		if hasSetting(set, v.Name) {
			continue
		}
		cur, ok, err := w.env.Get(v.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok && cur == bundlePath {
			if err := w.env.Delete(v.Name); err != nil {
				errs = append(errs, fmt.Errorf("removing %s from %s: %w", v.Name, MachineEnvKey, err))
				continue
			}
			changed = true
		}
	}
	return changed, errors.Join(errs...)
}

func (w *machineEnvWiring) unwire(_ context.Context, bundlePath string) error {
	changed, err := w.drop(nil, bundlePath)
	if changed {
		w.env.Announce()
	}
	return err
}
