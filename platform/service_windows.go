package platform

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc/mgr"
)

func (s *Service) prepareReinstall(ServiceState) error { return nil }

// updatedInPlace updates an existing service's binary, arguments and start
// settings instead of deleting it: a deleted service that is still running
// stays "marked for deletion", and installing it again in that window fails.
func (s *Service) updatedInPlace() (bool, error) {
	m, err := mgr.Connect()
	if err != nil {
		return false, err
	}
	defer m.Disconnect()
	h, err := m.OpenService(s.o.Name)
	if err != nil {
		return false, nil // gone after all: install afresh
	}
	defer h.Close()
	c, err := h.Config()
	if err != nil {
		return false, err
	}
	c.BinaryPathName = quoteWinArgs(append([]string{s.o.Executable}, s.o.Arguments...))
	c.DisplayName, c.Description = s.o.DisplayName, s.o.Description
	c.StartType, c.DelayedAutoStart = mgr.StartAutomatic, true
	if err := h.UpdateConfig(c); err != nil {
		return false, fmt.Errorf("update config: %w", err)
	}
	return true, setRecovery(h)
}

// postInstall sets recovery for the freshly installed service too:
// kardianos sets one action only; we restart on the first three failures
// and, unlike kardianos, also when the service stops with an error rather
// than crashing.
func (s *Service) postInstall() error {
	m, err := mgr.Connect()
	if err != nil {
		return err
	}
	defer m.Disconnect()
	h, err := m.OpenService(s.o.Name)
	if err != nil {
		return err
	}
	defer h.Close()
	return setRecovery(h)
}

func setRecovery(h *mgr.Service) error {
	var actions []mgr.RecoveryAction
	for _, d := range WindowsRecoveryDelays() {
		actions = append(actions, mgr.RecoveryAction{Type: mgr.ServiceRestart, Delay: d})
	}
	if err := h.SetRecoveryActions(actions, uint32(WindowsRecoveryReset/time.Second)); err != nil {
		return fmt.Errorf("recovery actions: %w", err)
	}
	if err := h.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		return fmt.Errorf("recovery on non-crash failures: %w", err)
	}
	return nil
}

// postUninstall waits until the service is really gone, so an immediate
// reinstall (package upgrade) does not meet "marked for deletion".
func (s *Service) postUninstall() error {
	m, err := mgr.Connect()
	if err != nil {
		return err
	}
	defer m.Disconnect()
	for range 100 {
		h, err := m.OpenService(s.o.Name)
		if err != nil {
			if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
				return nil
			}
			return nil
		}
		h.Close()
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("service %s still marked for deletion after 10s", s.o.Name)
}

func quoteWinArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"") {
			a = `"` + strings.ReplaceAll(a, `"`, `\"`) + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// localState: kardianos' own status is right here.
func (s *Service) localState() (ServiceState, bool, error) { return "", false, nil }
