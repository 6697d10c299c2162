package runtimes

// DefaultDir holds the bundle on macOS (writable under SIP, no spaces).
const DefaultDir = "/usr/local/share/certagent/runtimes"

// platformSystemRoots is the PEM file of the system roots macOS ships for
// OpenSSL/LibreSSL programs; with it the bundle holds the system roots and
// the variables that replace a runtime's roots can be set.
var platformSystemRoots = []string{"/etc/ssl/cert.pem"}

func newWiring(o Options) wiring {
	return &launchdWiring{root: o.Root, launchctl: DefaultLaunchctl, run: o.Runner, log: o.Logger.Named(Name)}
}
