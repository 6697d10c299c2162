package platform

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kardianos/service"
)

// ServiceOptions describe the installed service.
type ServiceOptions struct {
	// Name is the service name; "" means ServiceName.
	Name string
	// DisplayName and Description are shown by the service manager.
	DisplayName, Description string
	// Executable is the binary to run; "" means this one.
	Executable string
	// Arguments start the daemon ("run").
	Arguments []string
	// ReadWritePaths are directories the service writes beyond the
	// defaults (a non-default state_dir, dir: and bundle: stores); they go
	// into the systemd unit's ReadWritePaths=.
	ReadWritePaths []string
	// StopTimeout bounds how long Stop waits for the daemon; zero means 10s.
	StopTimeout time.Duration
	// OnFailure, when set, is called if the daemon returns an error while
	// nobody asked it to stop. On unix Run returns then anyway; the
	// Windows service wrapper keeps waiting for the service manager, so
	// main uses this to exit non-zero and let the recovery actions restart
	// it.
	OnFailure func(error)
}

// WindowsRecoveryReset is when Windows forgets the service's failures.
const WindowsRecoveryReset = 24 * time.Hour

// WindowsRecoveryDelays is how long Windows waits before restarting the
// service after its first, second and later failures. `certagent service
// install` and the MSI (packaging/winpkg) both set exactly this.
func WindowsRecoveryDelays() []time.Duration {
	return []time.Duration{5 * time.Second, 5 * time.Second, 60 * time.Second}
}

// ServiceState is the service manager's view, for `certagent status`.
type ServiceState string

// The states.
const (
	ServiceRunning      ServiceState = "running"
	ServiceStopped      ServiceState = "stopped"
	ServiceNotInstalled ServiceState = "not installed"
	ServiceFailed       ServiceState = "failed"
	ServiceUnknown      ServiceState = "unknown"
)

// Service installs, controls and runs certagent under the OS's service
// manager through kardianos/service, with its weak defaults fixed: a
// hardened systemd unit (RestartSec=5s, network-online), launchd RunAtLoad
// and KeepAlive, Windows recovery actions and delayed start, idempotent
// install (a package upgrade re-runs it), uninstall that stops first.
type Service struct {
	o    ServiceOptions
	svc  service.Service
	prog *program
	// warnings are settings Install could not apply because the service
	// manager does not implement them; the service works without them.
	warnings []string
}

// Warnings returns what the last Install could not set, for the installer to
// print; empty on every real Windows, macOS and Linux.
func (s *Service) Warnings() []string { return s.warnings }

// program adapts a run function to kardianos' Start/Stop.
type program struct {
	run       func(ctx context.Context) error
	timeout   time.Duration
	onFailure func(error)

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (p *program) Start(service.Service) error {
	ctx, cancel := context.WithCancel(context.Background())
	p.mu.Lock()
	p.cancel, p.done = cancel, make(chan struct{})
	done := p.done
	p.mu.Unlock()
	go func() {
		defer close(done)
		err := p.run(ctx)
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		if err != nil && ctx.Err() == nil && p.onFailure != nil {
			p.onFailure(err)
		}
	}()
	return nil
}

func (p *program) Stop(service.Service) error {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
	case <-time.After(p.timeout):
		return fmt.Errorf("platform: service: daemon did not stop within %s", p.timeout)
	}
	return nil
}

// NewService returns the service; run is the daemon, called by Run.
func NewService(o ServiceOptions, run func(ctx context.Context) error) (*Service, error) {
	if o.Name == "" {
		o.Name = ServiceName
	}
	if o.DisplayName == "" {
		o.DisplayName = "certagent"
	}
	if o.Description == "" {
		o.Description = "certagent keeps the organisation's TLS inspection root CAs trusted in OS and browser stores"
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 10 * time.Second
	}
	if o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("platform: service: %w", err)
		}
		o.Executable = exe
	}
	// kardianos renders service files with a template engine; a path that
	// looks like a template action would be expanded, not written.
	if strings.Contains(o.Executable, "{{") {
		return nil, fmt.Errorf("platform: service: executable path %q contains \"{{\"", o.Executable)
	}
	if run == nil {
		run = func(ctx context.Context) error { <-ctx.Done(); return nil }
	}
	p := &program{run: run, timeout: o.StopTimeout, onFailure: o.OnFailure}
	cfg := &service.Config{
		Name:        o.Name,
		DisplayName: o.DisplayName,
		Description: o.Description,
		Executable:  o.Executable,
		Arguments:   o.Arguments,
		Option:      serviceOptions(o, p),
	}
	// kardianos picks the init system once, at package init; pick again
	// now so a freshly booted systemd (or a test's namespace) is seen.
	service.ChooseSystem(service.AvailableSystems()...)
	svc, err := service.New(p, cfg)
	if err != nil {
		return nil, fmt.Errorf("platform: service: %w", err)
	}
	return &Service{o: o, svc: svc, prog: p}, nil
}

// serviceOptions are kardianos' per-OS options, with its defaults fixed.
func serviceOptions(o ServiceOptions, p *program) service.KeyValue {
	return service.KeyValue{
		// systemd: our own hardened unit instead of the built-in template
		// (RestartSec=120, no network-online, no hardening).
		"SystemdScript": SystemdUnit(o.Description, o.Executable, o.Arguments, o.ReadWritePaths),
		// launchd: start at boot (kardianos defaults RunAtLoad to false) and
		// restart when it exits.
		"RunAtLoad": true,
		"KeepAlive": true,
		// Windows: restart 5s after a failure, forget failures after a
		// day. The docs claim restart is the default; it is not set unless
		// asked. Delayed start (after the boot rush, when the network is
		// up) is set by postInstall, which can tell an SCM without it.
		"OnFailure":              "restart",
		"OnFailureDelayDuration": "5s",
		"OnFailureResetPeriod":   86400,
		"StartType":              "automatic",
		// unix foreground and systemd: stop on SIGTERM/SIGINT, or when the
		// daemon returns by itself (so a fatal error exits non-zero and the
		// manager restarts it).
		"RunWait": func() {
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
			defer signal.Stop(sig)
			p.mu.Lock()
			done := p.done
			p.mu.Unlock()
			select {
			case <-sig:
			case <-done:
			}
		},
	}
}

// Run runs the daemon under the service manager (or in the foreground),
// returning when it is told to stop or when the daemon fails.
func (s *Service) Run() error {
	handled, err := s.runUnderSCM()
	if !handled {
		err = s.svc.Run()
	}
	if err != nil {
		return fmt.Errorf("platform: service: %w", err)
	}
	s.prog.mu.Lock()
	defer s.prog.mu.Unlock()
	return s.prog.err
}

// Platform names the service manager in use ("linux-systemd",
// "darwin-launchd", "windows-service", …).
func (s *Service) Platform() string { return s.svc.Platform() }

// Interactive reports whether we run from a terminal rather than under a
// service manager (logs are text there, JSON otherwise).
func Interactive() bool { return service.Interactive() }

// State returns the service manager's view of the service.
func (s *Service) State() (ServiceState, error) {
	if st, ok, err := s.localState(); ok {
		if err != nil {
			return st, fmt.Errorf("platform: service status: %w", err)
		}
		return st, nil
	}
	st, err := s.svc.Status()
	switch {
	case errors.Is(err, service.ErrNotInstalled):
		return ServiceNotInstalled, nil
	case err != nil && strings.Contains(err.Error(), "failed state"):
		return ServiceFailed, nil
	case err != nil:
		return ServiceUnknown, fmt.Errorf("platform: service status: %w", err)
	}
	switch st {
	case service.StatusRunning:
		return ServiceRunning, nil
	case service.StatusStopped:
		return ServiceStopped, nil
	}
	return ServiceUnknown, nil
}

// Install installs the service, or updates it when it already exists: a
// package upgrade re-runs install and must succeed. A running service is
// restarted so the new unit and binary take effect.
func (s *Service) Install() error {
	st, _ := s.State()
	if st != ServiceNotInstalled {
		if err := s.prepareReinstall(st); err != nil {
			return fmt.Errorf("platform: service install (update): %w", err)
		}
		if done, err := s.updatedInPlace(); done || err != nil {
			if err != nil {
				return fmt.Errorf("platform: service install (update): %w", err)
			}
			return s.afterInstall(st == ServiceRunning)
		}
	}
	if err := s.svc.Install(); err != nil {
		return fmt.Errorf("platform: service install: %w", err)
	}
	return s.afterInstall(st == ServiceRunning)
}

func (s *Service) afterInstall(wasRunning bool) error {
	if err := s.postInstall(); err != nil {
		return fmt.Errorf("platform: service install: %w", err)
	}
	if wasRunning {
		if err := s.svc.Restart(); err != nil {
			return fmt.Errorf("platform: service restart after update: %w", err)
		}
	}
	return nil
}

// Uninstall stops the service, then removes it. Removing a service that
// is not installed succeeds (package removal scripts re-run).
func (s *Service) Uninstall() error {
	st, _ := s.State()
	if st == ServiceNotInstalled {
		// Leftovers of an earlier uninstall (SysV runlevel links).
		return s.postUninstall()
	}
	if st == ServiceRunning || st == ServiceUnknown || st == ServiceFailed {
		// kardianos' systemd and Windows Uninstall leave it running.
		if err := s.svc.Stop(); err != nil && st == ServiceRunning {
			return fmt.Errorf("platform: service stop before uninstall: %w", err)
		}
	}
	if err := s.svc.Uninstall(); err != nil {
		return fmt.Errorf("platform: service uninstall: %w", err)
	}
	return s.postUninstall()
}

// Start starts the installed service.
func (s *Service) Start() error { return wrapCtl("start", s.svc.Start()) }

// Stop stops the service.
func (s *Service) Stop() error { return wrapCtl("stop", s.svc.Stop()) }

// Restart restarts the service.
func (s *Service) Restart() error { return wrapCtl("restart", s.svc.Restart()) }

func wrapCtl(op string, err error) error {
	if err != nil {
		return fmt.Errorf("platform: service %s: %w", op, err)
	}
	return nil
}
