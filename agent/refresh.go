package agent

import (
	"context"

	"github.com/certagent/certagent/trust"
)

// refreshDerived lets stores whose content also derives from the machine
// (a bundle: the distro's roots plus ours) catch up once per pass, even when
// the plan changed nothing. Refresh writes only when the derived content
// changed, so a quiet pass stays quiet. It reports whether every refresh
// succeeded.
func (a *Agent) refreshDerived(ctx context.Context, handles []storeHandle) bool {
	ok := true
	for _, h := range handles {
		r, ok := h.store.(trust.Refresher)
		if !ok || h.openErr != nil || h.orphaned {
			continue
		}
		wrote, err := r.Refresh(ctx)
		switch {
		case err != nil:
			a.deps.Logger.Warn("store refresh failed", "store", h.name, "error", err)
			a.recordError(err)
			ok = false
		case wrote:
			a.deps.Logger.Info("store refreshed", "store", h.name)
		}
	}
	return ok
}
