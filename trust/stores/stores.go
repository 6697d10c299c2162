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

// Kinds are the store kinds that take no path, in the order ParseSpec
// lists them.
var Kinds = []string{"system", "nss", "firefox-policy", "java", runtimes.Name}

// SandboxPaths are what a service sandbox (the systemd unit's
// ReadWritePaths=) must grant, asked of the stores themselves
// (trust.PathDeclarer): Write, the directories every store kind of this
// platform writes, so that adding a kind to the config later needs no new
// unit, plus those of the configured dir: and bundle: stores; Create, the
// directories the configured stores create on their first write, which
// the service install makes beforehand (a sandbox grants only what
// exists). Names that do not parse or open are left out: they write
// nowhere.
func SandboxPaths(configured []string, env Env) (write, create []string) {
	seenW, seenC := map[string]bool{}, map[string]bool{}
	ask := func(name string, creates bool) {
		s, err := Open(name, env)
		if err != nil {
			return
		}
		d, ok := s.(trust.PathDeclarer)
		if !ok {
			return
		}
		p := d.Paths()
		for _, w := range p.Write {
			if !seenW[w] {
				seenW[w] = true
				write = append(write, w)
			}
		}
		if !creates {
			return
		}
		for _, c := range p.Create {
			if !seenC[c] {
				seenC[c] = true
				create = append(create, c)
			}
		}
	}
	for _, k := range Kinds {
		ask(k, false)
	}
	for _, name := range configured {
		ask(name, true)
	}
	return write, create
}
