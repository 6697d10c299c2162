package agent

import (
	"context"
	"runtime/metrics"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

// hungryStore allocates, on each List while hungry, as much as parsing a
// distro bundle would.
type hungryStore struct {
	trust.Store
	hungry bool
	keep   []byte
}

func (h *hungryStore) List(ctx context.Context) (*trust.Inventory, error) {
	if h.hungry {
		h.keep = make([]byte, 4<<20)
		h.keep = nil
	}
	return h.Store.List(ctx)
}

func forcedGCs() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestReleaseMemoryAfterHeavyPass checks that with Deps.ReleaseMemory a
// pass that allocated MiBs returns them to the OS (a forced GC) and a
// quiet one does not.
func TestReleaseMemoryAfterHeavyPass(t *testing.T) {
	r := newRig(t)
	r.plane.add(trusttest.NewCA(t), api.StatusActive)
	r.cfg.Stores = []string{"one"}
	h := &hungryStore{Store: r.stores["one"]}
	a, err := New(r.cfg, Deps{OpenStore: func(string) (trust.Store, error) { return h, nil }, ReleaseMemory: true})
	require.NoError(t, err)
	r.sync(a)
	r.sync(a)

	n := forcedGCs()
	r.sync(a)
	if got := forcedGCs(); got != n {
		t.Errorf("forced GCs after a quiet pass: got %d, want %d", got-n, 0)
	}
	h.hungry = true
	r.sync(a)
	if got := forcedGCs(); got != n+1 {
		t.Errorf("forced GCs after a heavy pass: got %d, want %d", got-n, 1)
	}
}
