package platform

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// SystemdUnit renders certagent's systemd unit. Every directive carries a
// comment saying why: the unit is read by admins deciding whether to trust
// it. exe and args start the daemon; writable are the directories the
// service writes: the state dir and what the trust stores declare
// (trust/stores.SandboxPaths), never a copy of their layouts kept here.
func SystemdUnit(description, exe string, args, writable []string) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("# certagent: keeps the organisation's inspection roots trusted in this machine's stores.")
	w("# Written by `certagent service install` (a package upgrade rewrites it);")
	w("# put local changes in a drop-in: systemctl edit certagent")
	w("[Unit]")
	w("Description=%s", description)
	w("# The first poll needs the control plane: start once the network is really up.")
	w("Wants=network-online.target")
	w("After=network-online.target")
	w("# A binary that keeps crashing stops being restarted after 10 tries in 10 minutes.")
	w("StartLimitIntervalSec=600")
	w("StartLimitBurst=10")
	w("")
	w("[Service]")
	w("# certagent run stays in the foreground and logs to stderr.")
	w("Type=simple")
	w("ExecStart=%s", execLine(exe, args))
	w("# SIGHUP re-reads the config (the file watch usually beats it).")
	w("ExecReload=/bin/kill -HUP $MAINPID")
	w("# Restart after a crash or a failed start, never after a clean stop.")
	w("Restart=on-failure")
	w("# Come back quickly: drift repair pauses while the daemon is down (kardianos' default is 120s).")
	w("RestartSec=5s")
	w("# JSON log lines go to the journal: journalctl -u certagent.")
	w("StandardOutput=journal")
	w("StandardError=journal")
	w("# /run/certagent holds the LocalAPI socket; 0755 so users can reach it for status.")
	w("RuntimeDirectory=certagent")
	w("RuntimeDirectoryMode=0755")
	w("# /var/lib/certagent holds the ledger and status.json across restarts; 0755 so status works with the daemon down.")
	w("StateDirectory=certagent")
	w("StateDirectoryMode=0755")
	w("# /var/log/certagent for the bug report's recent logs.")
	w("LogsDirectory=certagent")
	w("# Created files are world-readable unless the code asks for less (the ledger is 0600 by itself).")
	w("UMask=0022")
	w("# No privilege gain through exec: certagent never runs sudo or setuid helpers.")
	w("NoNewPrivileges=yes")
	w("# The whole file system is read-only to the service, except the ReadWritePaths below.")
	w("ProtectSystem=strict")
	w("# Homes stay visible (not ProtectHome): the nss store writes every user's NSS databases,")
	w("# ~/.pki/nssdb and Firefox profiles, snap and flatpak ones included.")
	w("ProtectHome=no")
	if dirs := cleanDirs(writable); len(dirs) > 0 {
		w("# What the trust stores declare they write (each store names its own directories: anchors,")
		w("# the refresh tool's output, NSS homes, Firefox policy, JDKs, dir: and bundle: stores) and a")
		w("# non-default state_dir; \"-\" skips those this machine lacks.")
		w("ReadWritePaths=%s", dashList(dirs))
	}
	w("# Its own /tmp: tool temp files are invisible to users and immune to /tmp races.")
	w("PrivateTmp=yes")
	w("# No device access beyond /dev/null, /dev/zero and /dev/urandom.")
	w("PrivateDevices=yes")
	w("# It never tunes the kernel, loads modules, reads the kernel log, sets the clock or hostname.")
	w("ProtectKernelTunables=yes")
	w("ProtectKernelModules=yes")
	w("ProtectKernelLogs=yes")
	w("ProtectClock=yes")
	w("ProtectHostname=yes")
	w("# Cgroups are read-only to it.")
	w("ProtectControlGroups=yes")
	w("# Local sockets (LocalAPI) and IP (the control plane) only.")
	w("RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6")
	w("# No namespaces, realtime scheduling, setuid/setgid files or personality changes.")
	w("RestrictNamespaces=yes")
	w("RestrictRealtime=yes")
	w("RestrictSUIDSGID=yes")
	w("LockPersonality=yes")
	w("# Native system calls only.")
	w("SystemCallArchitectures=native")
	w("# Root's powers reduced to what it uses: write any store file (DAC_OVERRIDE, FOWNER, CHOWN to keep")
	w("# users' NSS files theirs) and run certutil as the database's owner (SETUID, SETGID).")
	w("CapabilityBoundingSet=CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_SETUID CAP_SETGID")
	w("# Not set on purpose: MemoryDenyWriteExecute (keytool runs a JVM, whose JIT needs it).")
	w("")
	w("[Install]")
	w("# Started at boot with the other system services.")
	w("WantedBy=multi-user.target")
	return b.String()
}

// execLine quotes what systemd would split or expand.
func execLine(exe string, args []string) string {
	parts := make([]string, 0, 1+len(args))
	for _, a := range append([]string{exe}, args...) {
		a = strings.ReplaceAll(a, "%", "%%")
		if a == "" || strings.ContainsAny(a, " \t\"'\\$;") {
			a = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `$$`).Replace(a) + `"`
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func dashList(dirs []string) string {
	out := make([]string, len(dirs))
	for i, d := range dirs {
		out[i] = "-" + quoteUnitPath(d)
	}
	return strings.Join(out, " ")
}

// quoteUnitPath escapes what ReadWritePaths= would split on.
func quoteUnitPath(p string) string {
	if strings.ContainsAny(p, " \t\"") {
		return `"` + strings.ReplaceAll(p, `"`, `\"`) + `"`
	}
	return p
}

// cleanDirs keeps absolute, clean, unique paths that the unit's own
// directories and each other do not already cover, sorted.
func cleanDirs(dirs []string) []string {
	covered := []string{"/var/lib/certagent", "/run/certagent", "/var/log/certagent"}
	seen := map[string]bool{}
	var out []string
	for _, d := range dirs {
		if d == "" || !filepath.IsAbs(d) || strings.ContainsAny(d, "\n\r{}") {
			continue
		}
		d = filepath.Clean(d)
		if seen[d] || under(d, covered) {
			continue
		}
		seen[d] = true
		out = append(out, d)
	}
	sort.Strings(out)
	// Sorted, a directory comes before everything under it.
	kept := out[:0]
	for _, d := range out {
		if !under(d, kept) {
			kept = append(kept, d)
		}
	}
	return kept
}

func under(p string, roots []string) bool {
	for _, r := range roots {
		if p == r || strings.HasPrefix(p, r+"/") {
			return true
		}
	}
	return false
}
