// Package stores turns the store names of certagent's config ("system",
// "nss", "firefox-policy", "java", "runtimes", "bundle:PATH", "dir:PATH") into
// trust.Store adapters for the running OS.
package stores

import (
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/runtimes"
)

// Env is what adapters need from the agent.
type Env struct {
	// Runner runs every external tool; nil means a fresh platform.ExecRunner.
	Runner platform.Runner
	// Logger is the agent's logger; nil means a null logger.
	Logger hclog.Logger
	// StateDir is the agent's state directory, where stores keep what
	// must outlive one process (the nss listing cache, NSSCacheFile);
	// "" means nothing is kept.
	StateDir string
}

// NSSCacheFile is the nss store's listing cache in the state directory.
const NSSCacheFile = "nss-listing.json"

func (e Env) withDefaults() Env {
	if e.Runner == nil {
		e.Runner = &platform.ExecRunner{}
	}
	if e.Logger == nil {
		e.Logger = hclog.NewNullLogger()
	}
	return e
}

// Open returns the adapter named by spec (see ParseSpec).
func Open(spec string, env Env) (trust.Store, error) {
	sp, err := ParseSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("stores: %w", err)
	}
	env = env.withDefaults()
	if sp.Path != "" {
		return openPath(sp.Kind, sp.Path, env)
	}
	if sp.Kind == runtimes.Name {
		// Every platform has it; only its wiring differs.
		return runtimes.New(runtimes.Options{Runner: env.Runner, Logger: env.Logger}), nil
	}
	return openPlatform(sp.Kind, env)
}
