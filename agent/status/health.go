package status

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Severity is how bad a warning is; it decides the exit code.
type Severity string

// The severities.
const (
	// SeverityDegraded: the agent works but something needs attention
	// (exit 1).
	SeverityDegraded Severity = "degraded"
	// SeverityDown: the daemon is not running or cannot run (exit 2).
	SeverityDown Severity = "down"
)

// Warning is one health problem with the fix a help-desk engineer applies.
type Warning struct {
	// Code is stable, for fleet tools and documentation.
	Code     string   `json:"code"`
	Severity Severity `json:"severity"`
	Title    string   `json:"title"`
	// Text says what is wrong, with the specifics (store, user, error).
	Text string `json:"text,omitempty"`
	Fix  string `json:"fix"`
}

// Warning codes.
const (
	CodeDaemonDown        = "daemon-down"
	CodeConfigInvalid     = "config-invalid"
	CodeConfigRejected    = "config-reload-rejected"
	CodeStoreUnavailable  = "store-unavailable"
	CodeTrustPending      = "trust-pending"
	CodeInUseNotInstalled = "in-use-root-not-installed"
	CodeInstallFailed     = "install-failed"
	CodeRootExpiring      = "root-expiring"
	CodeCertRejected      = "certificate-rejected"
	CodeUnreachable       = "control-plane-unreachable"
	CodeTokenRejected     = "token-rejected"
	CodeClockSkew         = "clock-skew"
	CodeCheckInRefused    = "check-in-refused"
	CodeCheckInFailed     = "check-in-failed"
)

// Thresholds.
const (
	// ExpiryWarning is how close to expiry an available root warns.
	ExpiryWarning = 30 * 24 * time.Hour
	// UnreachableIntervals is how many poll intervals without an answer
	// make the control plane "unreachable" (one miss is a blip).
	UnreachableIntervals = 3
	// MaxClockSkew is the skew beyond which certificate validity checks on
	// this machine are unreliable.
	MaxClockSkew = 5 * time.Minute
)

// Warnings returns r's health warnings, most severe first, each with a
// fix. It is a pure function of r and now.
func Warnings(r *Report, now time.Time) []Warning {
	var ws []Warning
	add := func(code string, sev Severity, title, text, fix string) {
		ws = append(ws, Warning{Code: code, Severity: sev, Title: title, Text: text, Fix: fix})
	}
	if !r.Daemon.Running {
		text := "the LocalAPI did not answer; this report is the last state the daemon saved"
		if r.Daemon.Error != "" {
			text += " (" + r.Daemon.Error + ")"
		}
		add(CodeDaemonDown, SeverityDown, "certagent daemon is not running", text, StartHint(r.OS))
	}
	switch {
	case !r.Config.Valid:
		add(CodeConfigInvalid, SeverityDown, "config is invalid",
			strings.Join(r.Config.Problems, "; "),
			"correct the error above in "+r.Config.File+", then run `certagent status` again")
	case len(r.Config.Problems) > 0:
		add(CodeConfigRejected, SeverityDegraded, "new config rejected; the previous one stays in effect",
			strings.Join(r.Config.Problems, "; "),
			"correct the error above in "+r.Config.File+"; the daemon reloads it on save")
	}
	cp := r.ControlPlane
	if cp.TokenRejected || cp.HTTPStatus == 401 || cp.HTTPStatus == 403 {
		add(CodeTokenRejected, SeverityDegraded, "control plane rejected the API token",
			cp.LastError,
			"issue a new token for account "+cp.AccountID+" (certplane token create --scope device, or a Cloudflare API token with Zero Trust read) and put it in api_token_file")
	} else if unreachable(cp, r.Config.PollInterval, now) {
		last := "never"
		if !cp.LastSuccess.IsZero() {
			last = Ago(now, cp.LastSuccess)
		}
		add(CodeUnreachable, SeverityDegraded, "control plane unreachable",
			fmt.Sprintf("%d failed polls, last success %s: %s", cp.Failures, last, cp.LastError),
			"check this machine's route, proxy and DNS to "+cp.URL+"; installed roots stay in place meanwhile")
	}
	if d := cp.ClockSkew; d > MaxClockSkew || d < -MaxClockSkew {
		add(CodeClockSkew, SeverityDegraded, "local clock is off",
			fmt.Sprintf("the control plane's clock differs by %s", FormatSkew(d)),
			ntpHint(r.OS))
	}
	switch r.Device.CheckIn {
	case "refused":
		add(CodeCheckInRefused, SeverityDegraded, "the control plane refused this device's check-in",
			r.Device.Error+" (syncing is not affected; the control plane cannot count this device as ready for a new root)",
			"give agents a device token (certplane token create --scope device); a device whose secret was lost is deleted with `certplane devices delete --id "+r.Device.ID+"` and registers again")
	case "failed":
		add(CodeCheckInFailed, SeverityDegraded, "the last check-in failed",
			r.Device.Error+" (syncing is not affected; it is retried)",
			"check this machine's route to the control plane; if it persists, see the control plane's log")
	}
	for _, s := range r.Stores {
		if !s.Available {
			add(CodeStoreUnavailable, SeverityDegraded, "store "+s.Name+" unavailable", s.Error, storeFix(s, r.OS))
		}
	}
	for _, c := range r.Certificates {
		name := certName(c)
		switch c.State {
		case CertRejected:
			add(CodeCertRejected, SeverityDegraded, "certificate "+name+" rejected", c.Reason,
				"replace it on the control plane with a root that passes the policy (CA, RSA ≥ 2048 or ECDSA ≥ P-256, SHA-256 signature, valid now)")
			continue
		case CertWithdrawn, CertNotDeployed:
			continue
		}
		if !c.NotAfter.IsZero() && c.NotAfter.Sub(now) < ExpiryWarning {
			add(CodeRootExpiring, SeverityDegraded, "root "+name+" expires "+In(now, c.NotAfter),
				"expires "+c.NotAfter.UTC().Format("2006-01-02"),
				"generate and activate a new root on the control plane now so devices trust it before the switch")
		}
		var pending, failed, missing, untrusted []string
		for _, p := range c.Placements {
			where := placeName(p)
			if p.State == PlacementInstalled && p.Trusted != nil && !*p.Trusted {
				untrusted = append(untrusted, where)
			}
			switch p.State {
			case PlacementTrustPending:
				pending = append(pending, where)
			case PlacementFailed:
				failed = append(failed, where+": "+p.Error)
			case PlacementMissing:
				missing = append(missing, where)
			}
		}
		if len(pending) > 0 {
			add(CodeTrustPending, SeverityDegraded, "root "+name+" installed but not trusted yet",
				"trust pending in "+strings.Join(pending, ", "),
				"deliver the root with an MDM configuration profile (payload com.apple.security.root); macOS does not let a daemon trust roots silently")
		}
		if len(untrusted) > 0 {
			add(CodeNotTrusted, SeverityDegraded, "root "+name+" is installed but the OS does not trust it",
				"the OS certificate verifier rejects it: "+strings.Join(untrusted, ", "),
				osTrustFix(r.OS))
		}
		if c.InUse && len(failed)+len(missing) > 0 {
			add(CodeInUseNotInstalled, SeverityDegraded, "the root in use for inspection "+name+" is not installed everywhere",
				strings.Join(append(missing, failed...), "; "),
				"HTTPS inspection fails where it is missing; fix the error shown, then run `sudo certagent sync`")
		} else if len(failed) > 0 {
			add(CodeInstallFailed, SeverityDegraded, "root "+name+" failed to install",
				strings.Join(failed, "; "), "fix the error shown, then run `sudo certagent sync`")
		}
	}
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].Severity == SeverityDown && ws[j].Severity != SeverityDown })
	return ws
}

func unreachable(cp ControlPlane, poll time.Duration, now time.Time) bool {
	if cp.Failures >= UnreachableIntervals {
		return true
	}
	return poll > 0 && !cp.LastSuccess.IsZero() && cp.LastError != "" &&
		now.Sub(cp.LastSuccess) > UnreachableIntervals*poll
}

// ExitCode is `certagent status`'s exit code: 0 healthy, 1 degraded, 2 the
// daemon is down or the config is invalid.
func ExitCode(ws []Warning) int {
	code := 0
	for _, w := range ws {
		switch w.Severity {
		case SeverityDown:
			return 2
		default:
			code = 1
		}
	}
	return code
}

// StartHint is the OS's way to start the service.
func StartHint(goos string) string {
	switch goos {
	case "darwin":
		return "not running: start it with sudo launchctl kickstart -k system/dev.certagent.agent"
	case "windows":
		return "not running: start it with Start-Service certagent (or sc.exe start certagent)"
	default:
		return "not running: start it with sudo systemctl start certagent (logs: journalctl -u certagent; without systemd: sudo certagent service start)"
	}
}

func osTrustFix(goos string) string {
	switch goos {
	case "darwin":
		return "deliver the root with an MDM configuration profile (com.apple.security.root)"
	case "windows":
		return "check Group Policy does not block third-party roots (certlm.msc, Trusted Root Certification Authorities)"
	default:
		return "the trust bundle was not rebuilt: run `sudo certagent sync` (it reruns the distro's refresh tool)"
	}
}

func ntpHint(goos string) string {
	switch goos {
	case "darwin":
		return "turn on Set time automatically (sudo sntp -sS time.apple.com)"
	case "windows":
		return "resync the clock: w32tm /resync"
	default:
		return "enable time sync: sudo timedatectl set-ntp true"
	}
}

// storeFix turns a store's unavailability into the action that fixes it.
func storeFix(s Store, goos string) string {
	e := strings.ToLower(s.Error)
	switch {
	case strings.Contains(e, "certutil"):
		if goos == "linux" {
			return "install certutil: apt install libnss3-tools (Debian/Ubuntu), dnf install nss-tools (Fedora/RHEL), pacman -S nss (Arch), zypper install mozilla-nss-tools (SUSE)"
		}
		return "install NSS's certutil"
	case strings.Contains(e, "keytool"):
		return "install a JRE/JDK (apt install default-jre-headless) or remove java from stores"
	case strings.Contains(e, "read-only"):
		return "the path is read-only for the service; add it to ReadWritePaths= in a systemd drop-in (systemctl edit certagent)"
	default:
		return "follow the error above, or remove " + s.Name + " from stores in the config"
	}
}

func certName(c Certificate) string {
	if c.Subject != "" {
		return fmt.Sprintf("%q", c.Subject)
	}
	return shortFP(c.Fingerprint)
}

func placeName(p Placement) string {
	s := p.Store
	if p.User != "" {
		s += " (user " + p.User + ")"
	}
	if p.Path != "" && p.User == "" {
		s += " " + p.Path
	}
	return s
}
