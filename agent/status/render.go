package status

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/certagent/certagent/trust"
)

// WriteJSON writes r as indented JSON, the `status --json` output.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Render writes the help-desk view of r: a verdict line, then daemon,
// config, control plane, every certificate with its placements, retired
// roots removed, and the health warnings with their fixes. now makes ages
// ("12s ago") reproducible in tests.
func Render(w io.Writer, r *Report, now time.Time) error {
	b := &strings.Builder{}
	verdict := "HEALTHY"
	switch ExitCode(r.Health) {
	case 1:
		verdict = fmt.Sprintf("DEGRADED (%s)", plural(len(r.Health), "warning"))
	case 2:
		verdict = "DOWN"
		if r.Daemon.Running {
			verdict = "MISCONFIGURED"
		}
	}
	fmt.Fprintf(b, "certagent %s: %s\n\n", r.Version, verdict)

	tw := tabwriter.NewWriter(b, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Daemon\t%s\n", daemonLine(r, now))
	fmt.Fprintf(tw, "Config\t%s\n", configLine(r.Config))
	for _, p := range r.Config.Problems {
		fmt.Fprintf(tw, "\tproblem: %s\n", p)
	}
	fmt.Fprintf(tw, "Control plane\t%s\n", cpLine(r.ControlPlane, now))
	if e := r.ControlPlane.LastError; e != "" {
		fmt.Fprintf(tw, "\tlast error: %s\n", e)
	}
	last := "never"
	if !r.LastSync.IsZero() {
		last = Ago(now, r.LastSync)
		if !r.LastVerified.IsZero() && r.LastSync.Sub(r.LastVerified) >= time.Second {
			// The passes since found the stores unchanged through the
			// file watcher.
			last += "; stores last read " + Ago(now, r.LastVerified) + ", unchanged since"
		}
		if !r.LastChange.IsZero() {
			last += "; last change " + Ago(now, r.LastChange)
		}
		if r.Daemon.Running && r.ControlPlane.NextPoll.After(now) {
			last += "; next poll " + In(now, r.ControlPlane.NextPoll)
		}
	}
	fmt.Fprintf(tw, "Last sync\t%s\n", last)
	fmt.Fprintf(tw, "Device\t%s\n", deviceLine(r.Device, now))
	fmt.Fprintf(tw, "Stores\t%s\n", storesLine(r.Stores))
	tw.Flush()

	b.WriteString("\nCertificates\n")
	if len(r.Certificates) == 0 {
		b.WriteString("  none (the control plane lists no available certificate yet)\n")
	}
	// Certificate lines and their placements are aligned separately so a
	// long path or error in one does not push the other's columns away.
	subjW, storeW, targetW := 0, 0, 0
	for _, c := range r.Certificates {
		subjW = max(subjW, len(orDash(c.Subject)))
		for _, p := range c.Placements {
			storeW = max(storeW, len(p.Store))
			targetW = max(targetW, len(orDash(target(p))))
		}
	}
	for _, c := range r.Certificates {
		fmt.Fprintf(b, "  %-16s  %-*s  %-10s  %s\n", shortFP(c.Fingerprint), subjW, orDash(c.Subject), expiry(c, now), certStatus(c))
		for _, p := range c.Placements {
			fmt.Fprintf(b, "      %-*s  %-*s  %s\n", storeW, p.Store, targetW, orDash(target(p)), placementText(p))
		}
	}

	if len(r.Retired) > 0 {
		b.WriteString("\nRemoved\n")
		tw = tabwriter.NewWriter(b, 0, 4, 2, ' ', 0)
		for _, x := range r.Retired {
			when := ""
			if !x.RemovedAt.IsZero() {
				when = Ago(now, x.RemovedAt)
			}
			where := x.Store
			if t := target(Placement{User: x.User, Path: x.Path}); t != "" {
				where += " " + t
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s from %s\t%s\n", shortFP(x.Fingerprint), orDash(x.Subject), x.Why, where, when)
		}
		tw.Flush()
	}

	if len(r.Runtimes) > 0 {
		b.WriteString("\nRuntimes (will each trust the in-use root?)\n")
		nameW := 0
		for _, rt := range r.Runtimes {
			nameW = max(nameW, len(rt.Name))
		}
		for _, rt := range r.Runtimes {
			verdict := "unknown"
			if rt.Trusted != nil {
				verdict = map[bool]string{true: "yes", false: "NO"}[*rt.Trusted]
			}
			fmt.Fprintf(b, "  %-*s  %-7s  %s\n", nameW, rt.Name, verdict, rt.Program)
			for _, src := range rt.Sources {
				fmt.Fprintf(b, "  %-*s           reads %s\n", nameW, "", src)
			}
			if rt.Detail != "" {
				fmt.Fprintf(b, "  %-*s           %s\n", nameW, "", rt.Detail)
			}
		}
	}

	b.WriteString("\nHealth\n")
	if len(r.Health) == 0 {
		b.WriteString("  ok: every available root is installed and trusted where configured\n")
	}
	for _, h := range r.Health {
		mark := "!"
		if h.Severity == SeverityDown {
			mark = "✗"
		}
		fmt.Fprintf(b, "  %s %s [%s]\n", mark, h.Title, h.Code)
		if h.Text != "" {
			fmt.Fprintf(b, "      %s\n", h.Text)
		}
		fmt.Fprintf(b, "      fix: %s\n", h.Fix)
	}
	_, err := io.WriteString(w, Printable(b.String()))
	return err
}

// Printable returns s with every rune a terminal would act on replaced by
// '?': C0 controls other than newline and tab, DEL, C1 controls, and the
// bidirectional overrides. Status text carries strings other people chose
// (a local user's Firefox profile path, a certificate's subject, a tool's
// output), and an administrator runs `certagent status` in a root shell:
// none of it may send escape sequences to that terminal.
func Printable(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return r
		case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0,
			r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
			return '?'
		}
		return r
	}, s)
}

func daemonLine(r *Report, now time.Time) string {
	d := r.Daemon
	var s string
	if d.Running {
		s = "running"
		if d.PID != 0 {
			s += fmt.Sprintf(" (pid %d", d.PID)
			if !d.StartedAt.IsZero() {
				s += ", up " + Duration(now.Sub(d.StartedAt))
			}
			s += ")"
		}
	} else {
		s = "NOT RUNNING (showing the last saved state)"
	}
	if d.Service != "" {
		s += "; service " + d.Service
	}
	return s
}

func configLine(c Config) string {
	s := c.File
	if c.FileMissing {
		s += " (missing)"
	}
	if c.Managed != "" && len(c.ManagedKeys) > 0 {
		s += " + managed " + c.Managed + " (" + strings.Join(c.ManagedKeys, ", ") + ")"
	}
	if !c.Valid {
		s += ": INVALID"
	}
	if c.PollInterval > 0 {
		s += "; poll every " + Duration(c.PollInterval)
	}
	return s
}

func cpLine(cp ControlPlane, now time.Time) string {
	if cp.URL == "" {
		return "not configured"
	}
	s := cp.URL
	switch {
	case cp.LastPoll.IsZero():
		s += "; not polled yet"
	case cp.Reachable:
		s += "; reachable, last poll " + Ago(now, cp.LastPoll)
	default:
		s += "; UNREACHABLE"
		if !cp.LastSuccess.IsZero() {
			s += ", last success " + Ago(now, cp.LastSuccess)
		} else {
			s += ", never answered"
		}
	}
	if !cp.LastPoll.IsZero() {
		s += "; clock skew " + FormatSkew(cp.ClockSkew)
	}
	return s
}

func storesLine(ss []Store) string {
	if len(ss) == 0 {
		return "none configured"
	}
	parts := make([]string, 0, len(ss))
	for _, s := range ss {
		p := s.Name
		switch {
		case !s.Available:
			p += " (UNAVAILABLE)"
		case s.Targets != 1 || len(s.Skipped) > 0:
			p += fmt.Sprintf(" (%s", plural(s.Targets, "target"))
			if len(s.Skipped) > 0 {
				p += fmt.Sprintf(", %d skipped", len(s.Skipped))
			}
			p += ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

func expiry(c Certificate, now time.Time) string {
	if c.NotAfter.IsZero() {
		return "-"
	}
	days := int(c.NotAfter.Sub(now).Hours() / 24)
	if c.NotAfter.Before(now) {
		return "EXPIRED"
	}
	return fmt.Sprintf("%dd left", days)
}

func certStatus(c Certificate) string {
	switch c.State {
	case CertRejected:
		return "REJECTED: " + c.Reason
	case CertWithdrawn:
		return "withdrawn, removal pending"
	case CertNotDeployed:
		return "not deployed (" + c.Reason + ")"
	}
	s := "available"
	if c.InUse {
		s += ", IN USE"
	}
	return s
}

func target(p Placement) string {
	switch {
	case p.User != "" && p.Path != "":
		return "user " + p.User + " " + p.Path
	case p.User != "":
		return "user " + p.User
	default:
		return p.Path
	}
}

func placementText(p Placement) string {
	s := string(p.State)
	switch p.State {
	case PlacementInstalled:
		if p.Trusted != nil {
			if *p.Trusted {
				s += ", trusted"
			} else {
				s += ", NOT TRUSTED by the OS verifier"
			}
		}
	case PlacementSkipped, PlacementTrustPending:
		s += ": " + p.Reason
	case PlacementFailed:
		s = "FAILED: " + p.Error
	case PlacementMissing:
		s = "MISSING"
		if p.Reason != "" {
			s += ": " + p.Reason
		}
	}
	return s
}

func shortFP(s string) string {
	if fp, err := trust.ParseFingerprint(s); err == nil {
		return fp.Short()
	}
	if len(s) > 16 {
		return s[:16]
	}
	return orDash(s)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// Ago formats how long before now t was ("12s ago", "3h ago").
func Ago(now, t time.Time) string {
	if t.After(now) {
		return "just now"
	}
	return Duration(now.Sub(t)) + " ago"
}

// In formats how long after now t is ("in 12d"), or how long ago.
func In(now, t time.Time) string {
	if t.Before(now) {
		return Duration(now.Sub(t)) + " ago"
	}
	return "in " + Duration(t.Sub(now))
}

// Duration formats d coarsely for humans: 45s, 12m, 3h12m, 5d.
func Duration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		h := int(d.Hours())
		m := int(d.Minutes()) - 60*h
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%dm", h, m)
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

// FormatSkew formats a clock skew with its sign ("+0s", "-7m").
func FormatSkew(d time.Duration) string {
	if d < 0 {
		return "-" + Duration(-d)
	}
	return "+" + Duration(d)
}

// deviceLine is the device id and its last check-in.
func deviceLine(d Device, now time.Time) string {
	if d.ID == "" {
		return "no device id yet (made on the first sync)"
	}
	line := d.ID + "; check-in "
	switch d.CheckIn {
	case "":
		line += "not yet"
	case "accepted":
		line += "accepted " + Ago(now, d.LastCheckIn)
	case "unsupported":
		line += "not offered by this control plane"
	default:
		line += d.CheckIn + " " + Ago(now, d.LastAttempt)
		if !d.LastCheckIn.IsZero() {
			line += "; last accepted " + Ago(now, d.LastCheckIn)
		}
	}
	return line
}
