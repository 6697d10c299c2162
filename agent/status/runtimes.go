package status

import (
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/runtimes"
)

// ApplyRuntimes records in r, for each runtime found, the CA stores it
// reads and whether they hold the in-use root. Like ApplyOSTrust it runs in
// the CLI: the findings come from reading files and asking programs, which
// the daemon's passes never wait for.
func ApplyRuntimes(r *Report, found []runtimes.Finding) {
	var inUse *trust.Fingerprint
	for _, c := range r.Certificates {
		if c.InUse && c.State == CertAvailable {
			if fp, err := trust.ParseFingerprint(c.Fingerprint); err == nil {
				inUse = &fp
			}
		}
	}
	r.Runtimes = r.Runtimes[:0]
	for _, f := range found {
		rt := Runtime{Name: f.Runtime, Program: f.Program, Detail: f.Note}
		for _, s := range f.Sources {
			line := s.What
			if s.Path != "" {
				line += ": " + s.Path
			}
			if s.Err != "" {
				line += " (unreadable: " + s.Err + ")"
			}
			rt.Sources = append(rt.Sources, line)
		}
		if inUse == nil {
			if rt.Detail == "" {
				rt.Detail = "no root is in use on the control plane"
			}
		} else if ok, known := f.Trusts(*inUse); known || ok {
			rt.Trusted = &ok
			if !ok && rt.Detail == "" {
				rt.Detail = "fix: " + storeFor[f.Runtime]
			}
		} else if rt.Detail == "" {
			rt.Detail = "a store it reads could not be read (run as root?)"
		}
		r.Runtimes = append(r.Runtimes, rt)
	}
}

// storeFor says which store makes each runtime trust our roots.
var storeFor = map[string]string{
	"node":            `enable the "runtimes" store (NODE_EXTRA_CA_CERTS), then open a new login`,
	"python requests": `enable the "runtimes" store (REQUESTS_CA_BUNDLE), then open a new login`,
	"python certifi":  `certifi's own file is never edited; programs that honour REQUESTS_CA_BUNDLE or SSL_CERT_FILE follow the "runtimes" or "system" store`,
	"pip":             `enable the "runtimes" store (PIP_CERT and a site-wide pip.conf)`,
	"aws":             `enable the "runtimes" store (AWS_CA_BUNDLE), then open a new login`,
	"gcloud":          `enable the "runtimes" store (CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE), then open a new login`,
	"git":             `enable the "system" store (git reads the OS store)`,
	"curl":            `enable the "system" store (curl reads the OS store)`,
	"java":            `enable the "java" store`,
	"Firefox":         `enable the "nss" store (every profile) or "firefox-policy" (restart Firefox)`,
	"Chromium":        `enable the "nss" store (~/.pki/nssdb), then restart the browser`,
}
