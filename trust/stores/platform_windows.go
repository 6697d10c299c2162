package stores

import (
	"fmt"

	"github.com/certagent/certagent/trust"
)

// openPlatform opens the Windows stores.
func openPlatform(kind string, env Env) (trust.Store, error) {
	_ = env
	return nil, fmt.Errorf("stores: %s: %w", kind, trust.ErrNotSupported)
}
