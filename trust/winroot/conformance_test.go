package winroot

import (
	"sync"
	"testing"

	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

// TestConformance runs the shared suite against the adapter on the fake
// LocalMachine\ROOT; Plant seeds a root as certmgr or GPO would (untagged).
func TestConformance(t *testing.T) {
	var mu sync.Mutex
	machines := map[trust.Store]*fakeMachine{}
	trusttest.Run(t, func(t *testing.T) trust.Store {
		m := newFakeMachine()
		s := newStore(m.open, Options{})
		mu.Lock()
		machines[s] = m
		mu.Unlock()
		return s
	}, trusttest.Options{
		Plant: func(t *testing.T, s trust.Store, c *trust.Cert) {
			mu.Lock()
			m := machines[s]
			mu.Unlock()
			m.seed(c.X509.Raw, "Installed by Group Policy")
		},
		PlantedRemovable: true,
		Parallel:         true,
	})
}
