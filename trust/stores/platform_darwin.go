package stores

import (
	"fmt"

	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/keychain"
)

// openPlatform opens the macOS stores: "system" is the System keychain;
// Chrome, Safari and Firefox (≥ 120) read it, so "nss" and "firefox-policy"
// are covered by it.
func openPlatform(kind string, env Env) (trust.Store, error) {
	switch kind {
	case "system":
		return keychain.New(keychain.Options{Runner: env.Runner, Logger: env.Logger}), nil
	case "nss":
		return coveredStore{name: kind, reason: "on macOS, Chrome uses the System keychain and Firefox (≥ 120, security.enterprise_roots.enabled by default) imports its roots: the system store covers them"}, nil
	case "firefox-policy":
		return coveredStore{name: kind, reason: "on macOS, Firefox (≥ 120) imports the System keychain's roots by default (ImportEnterpriseRoots): the system store covers it"}, nil
	default:
		return nil, fmt.Errorf("stores: %s on macOS: %w", kind, trust.ErrNotSupported)
	}
}
