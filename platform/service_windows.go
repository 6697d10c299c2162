package platform

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/kardianos/service"
	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
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
	// ChangeServiceConfig directly rather than mgr's UpdateConfig, which
	// also rewrites optional settings (delayed start, SID type) that
	// postInstall sets, or reports missing, itself.
	bin, err := windows.UTF16PtrFromString(quoteWinArgs(append([]string{s.o.Executable}, s.o.Arguments...)))
	if err != nil {
		return false, err
	}
	display, err := windows.UTF16PtrFromString(s.o.DisplayName)
	if err != nil {
		return false, err
	}
	if err := windows.ChangeServiceConfig(h.Handle, windows.SERVICE_NO_CHANGE, windows.SERVICE_AUTO_START, windows.SERVICE_NO_CHANGE,
		bin, nil, nil, nil, nil, nil, display); err != nil {
		return false, fmt.Errorf("update config: %w", err)
	}
	if err := setDescription(h, s.o.Description); err != nil {
		return false, fmt.Errorf("update config: %w", err)
	}
	return true, s.postInstall()
}

// postInstall sets what kardianos does not, on a fresh or an updated
// service: restart on the first three failures (kardianos sets one
// action), also when the service stops with an error rather than crashing,
// and a delayed automatic start, after the boot rush, when the network is up.
// A setting the SCM does not implement (ERROR_INVALID_LEVEL: Wine 8 has
// neither delayed start nor the non-crash flag; every Windows since Vista
// has both) is a warning, not a failed install: the service still runs and
// restarts after crashes.
func (s *Service) postInstall() error {
	s.warnings = nil
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
	var actions []mgr.RecoveryAction
	for _, d := range WindowsRecoveryDelays() {
		actions = append(actions, mgr.RecoveryAction{Type: mgr.ServiceRestart, Delay: d})
	}
	if err := h.SetRecoveryActions(actions, uint32(WindowsRecoveryReset/time.Second)); err != nil {
		return fmt.Errorf("recovery actions: %w", err)
	}
	optional := []struct {
		what string
		set  func() error
	}{
		{"restart when the service stops with an error (SERVICE_CONFIG_FAILURE_ACTIONS_FLAG)", func() error { return h.SetRecoveryActionsOnNonCrashFailures(true) }},
		{"delayed automatic start (SERVICE_CONFIG_DELAYED_AUTO_START_INFO)", func() error { return setDelayedAutoStart(h) }},
	}
	for _, o := range optional {
		err := o.set()
		if errors.Is(err, windows.ERROR_INVALID_LEVEL) {
			s.warnings = append(s.warnings, "this service manager does not implement "+o.what+"; the service is installed without it")
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", o.what, err)
		}
	}
	return nil
}

func setDelayedAutoStart(h *mgr.Service) error {
	info := windows.SERVICE_DELAYED_AUTO_START_INFO{IsDelayedAutoStartUp: 1}
	return windows.ChangeServiceConfig2(h.Handle, windows.SERVICE_CONFIG_DELAYED_AUTO_START_INFO, (*byte)(unsafe.Pointer(&info)))
}

func setDescription(h *mgr.Service, text string) error {
	p, err := windows.UTF16PtrFromString(text)
	if err != nil {
		return err
	}
	d := windows.SERVICE_DESCRIPTION{Description: p}
	return windows.ChangeServiceConfig2(h.Handle, windows.SERVICE_CONFIG_DESCRIPTION, (*byte)(unsafe.Pointer(&d)))
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

// runUnderSCM connects to the service control manager when kardianos
// decided, at start-up, that the process runs interactively. Its test (the
// parent is services.exe in session 0) fails under Wine, whose services run
// in session 1, and would fail for a service started through a wrapper; the
// SCM itself is the authority: StartServiceCtrlDispatcher fails at once with
// ERROR_FAILED_SERVICE_CONTROLLER_CONNECT in a console process, and then
// the caller runs in the foreground as before.
func (s *Service) runUnderSCM() (bool, error) {
	if !service.Interactive() {
		return false, nil // kardianos connects to the SCM itself
	}
	h, ok := s.svc.(svc.Handler)
	if !ok {
		return false, nil
	}
	err := svc.Run(s.o.Name, h)
	if errors.Is(err, windows.ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) {
		return false, nil
	}
	return true, err
}
