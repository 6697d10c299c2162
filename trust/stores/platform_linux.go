package stores

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/firefoxpolicy"
	"github.com/certagent/certagent/trust/javaks"
	"github.com/certagent/certagent/trust/linuxca"
	"github.com/certagent/certagent/trust/nss"
)

// openPlatform opens the Linux stores: "system" is the distribution's anchor
// directory and refresh tool (chosen from /etc/os-release), "nss" every local
// user's NSS databases, "firefox-policy" Firefox's enterprise policy file,
// "java" every JDK's cacerts (plus $JAVA_HOME when the agent has one).
func openPlatform(kind string, env Env) (trust.Store, error) {
	switch kind {
	case "system":
		return linuxca.New(linuxca.Options{Runner: env.Runner, Logger: env.Logger}), nil
	case "nss":
		o := nss.Options{Runner: env.Runner, Logger: env.Logger}
		if env.StateDir != "" {
			o.CacheFile = filepath.Join(env.StateDir, NSSCacheFile)
		}
		return nss.New(o), nil
	case "firefox-policy":
		// The nss store takes withdrawn roots out of the profiles
		// Firefox copied them into.
		profiles := nss.New(nss.Options{Runner: env.Runner, Logger: env.Logger})
		return firefoxpolicy.New(firefoxpolicy.Options{Logger: env.Logger, Profiles: profiles}), nil
	case "java":
		return javaks.New(javaks.Options{JavaHome: os.Getenv("JAVA_HOME"), Runner: env.Runner, Logger: env.Logger}), nil
	default:
		return nil, fmt.Errorf("stores: %s on Linux: %w", kind, trust.ErrNotSupported)
	}
}
