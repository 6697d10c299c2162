// Package stores turns the store names of certagent's config ("system",
// "nss", "firefox-policy", "java", "bundle:PATH", "dir:PATH") into
// trust.Store adapters for the running OS.
package stores

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
)

// Env is what adapters need from the agent.
type Env struct {
	// Runner runs every external tool; nil means a fresh platform.ExecRunner.
	Runner platform.Runner
	// Logger is the agent's logger; nil means a null logger.
	Logger hclog.Logger
}

func (e Env) withDefaults() Env {
	if e.Runner == nil {
		e.Runner = &platform.ExecRunner{}
	}
	if e.Logger == nil {
		e.Logger = hclog.NewNullLogger()
	}
	return e
}

// Open returns the adapter named by spec.
func Open(spec string, env Env) (trust.Store, error) {
	env = env.withDefaults()
	kind, arg, hasArg := strings.Cut(spec, ":")
	switch kind {
	case "dir", "bundle":
		if !hasArg || arg == "" {
			return nil, fmt.Errorf("stores: %q needs a path, like %s:/var/lib/certagent/%s", spec, kind, kind)
		}
		if !filepath.IsAbs(arg) {
			return nil, fmt.Errorf("stores: %q: the path must be absolute", spec)
		}
		return openPath(kind, filepath.Clean(arg), env)
	case "system", "nss", "firefox-policy", "java":
		if hasArg {
			return nil, fmt.Errorf("stores: %q takes no argument", spec)
		}
		return openPlatform(kind, env)
	default:
		return nil, fmt.Errorf("stores: unknown store %q (want system, nss, firefox-policy, java, bundle:PATH or dir:PATH)", spec)
	}
}
