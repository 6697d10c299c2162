//go:build !windows

package winroot

import (
	"fmt"

	"github.com/certagent/certagent/trust"
)

func openSystem(bool) (certStore, error) {
	return nil, fmt.Errorf("%s: %w", StorePath, trust.ErrNotSupported)
}
