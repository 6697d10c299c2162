package stores

import (
	"context"
	"fmt"

	"github.com/certagent/certagent/trust"
)

// coveredStore stands for a store name whose job the OS store already does
// on this platform: on macOS and Windows, Chrome and Edge read the OS store,
// and Firefox ≥ 120 imports the OS's enterprise roots by default
// (security.enterprise_roots.enabled), so "nss" and "firefox-policy" need no
// writes of their own there. Check reports it unavailable with that reason,
// and anything asked of it is skipped with the same reason, never reported
// as done.
type coveredStore struct {
	name, reason string
}

func (s coveredStore) Name() string { return s.name }

func (s coveredStore) Check(context.Context) error {
	return fmt.Errorf("%w: %s: %s", trust.ErrUnavailable, s.name, s.reason)
}

func (s coveredStore) List(context.Context) (*trust.Inventory, error) {
	return &trust.Inventory{Skipped: []trust.Skip{{Reason: s.reason}}}, nil
}

func (s coveredStore) Apply(_ context.Context, changes []trust.Change) []trust.Result {
	if len(changes) == 0 {
		return nil
	}
	b := trust.NewBatch(changes)
	for i, c := range changes {
		b.Results[i] = trust.Skipped(c, s.reason)
	}
	return b.Results
}
