package stores

import (
	"fmt"

	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/winroot"
)

// openPlatform opens the Windows stores: "system" is LocalMachine\ROOT;
// Chrome and Edge read it and Firefox (≥ 120) imports it, so "nss" and
// "firefox-policy" are covered by it.
func openPlatform(kind string, env Env) (trust.Store, error) {
	switch kind {
	case "system":
		return winroot.New(winroot.Options{Logger: env.Logger}), nil
	case "nss":
		return coveredStore{name: kind, reason: `on Windows, Chrome and Edge use the Windows store and Firefox (≥ 120, security.enterprise_roots.enabled by default) imports LocalMachine\ROOT: the system store covers them`}, nil
	case "firefox-policy":
		return coveredStore{name: kind, reason: `on Windows, Firefox (≥ 120) imports LocalMachine\ROOT by default (ImportEnterpriseRoots): the system store covers it`}, nil
	default:
		return nil, fmt.Errorf("stores: %s on Windows: %w", kind, trust.ErrNotSupported)
	}
}
