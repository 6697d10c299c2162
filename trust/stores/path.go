package stores

import (
	"fmt"

	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/bundle"
	"github.com/certagent/certagent/trust/dir"
)

// openPath opens the dir: and bundle: stores, which every platform has.
// path is absolute and clean (Open checked it).
func openPath(kind, path string, env Env) (trust.Store, error) {
	_ = env // neither store runs a tool or logs
	switch kind {
	case "dir":
		return dir.New(path), nil
	case "bundle":
		return bundle.New(path), nil
	default:
		return nil, fmt.Errorf("stores: %q is not a path store", kind)
	}
}
