package bundle

// defaultSources are the distro CA bundle files, most common first; the
// first that exists supplies the system roots. The same table as Go's
// crypto/x509 uses, as data.
var defaultSources = []string{
	"/etc/ssl/certs/ca-certificates.crt",                // Debian, Ubuntu, Arch, Gentoo
	"/etc/pki/tls/certs/ca-bundle.crt",                  // Fedora, RHEL 6
	"/etc/ssl/ca-bundle.pem",                            // openSUSE
	"/etc/pki/tls/cacert.pem",                           // OpenELEC
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS, RHEL 7+
	"/etc/ssl/cert.pem",                                 // Alpine
}

// noSourceNote is written when none of the sources exists.
const noSourceNote = `# No system CA bundle file was found (looked for the usual distro paths), so
# this bundle holds only certagent's roots.`
