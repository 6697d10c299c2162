//go:build !linux

package bundle

// defaultSources is empty: macOS keeps its system roots in keychains and
// Windows in certificate stores, neither in a PEM file we could copy.
var defaultSources []string

// noSourceNote explains the bundle's content on these platforms.
const noSourceNote = `# This platform keeps its system roots in the keychain or the Windows
# certificate store, not in a file, so this bundle holds only certagent's
# roots. Tools that read it as an addition (NODE_EXTRA_CA_CERTS) still trust
# the system roots; tools that take it as their whole trust list
# (REQUESTS_CA_BUNDLE, SSL_CERT_FILE, git http.sslCAInfo) trust only these.`
