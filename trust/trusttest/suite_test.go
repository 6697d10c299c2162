package trusttest

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/certagent/certagent/trust"
)

// broken wraps a Fake and breaks one promise of the Store contract, to prove
// the suite notices.
type broken struct {
	*Fake
	mode string
}

func (b *broken) List(ctx context.Context) (*trust.Inventory, error) {
	inv, err := b.Fake.List(ctx)
	if err != nil {
		return nil, err
	}
	switch b.mode {
	case "duplicates":
		inv.Entries = append(inv.Entries, inv.Entries...)
	case "untagged":
		for i := range inv.Entries {
			inv.Entries[i].Tagged = false
		}
	}
	return inv, nil
}

func (b *broken) Apply(ctx context.Context, changes []trust.Change) []trust.Result {
	switch b.mode {
	case "lies":
		out := make([]trust.Result, len(changes))
		for i, c := range changes {
			out[i] = trust.OK(c)
		}
		return out
	case "reversed":
		res := b.Fake.Apply(ctx, changes)
		slices.Reverse(res)
		return res
	case "greedy":
		// Removing one root removes every root of the target.
		for _, c := range changes {
			if c.Op == trust.OpRemove {
				inv, _ := b.Fake.List(ctx)
				for _, e := range inv.Entries {
					if e.Target == c.Target {
						b.Fake.Lose(e.Target, e.FP)
					}
				}
			}
		}
		return b.Fake.Apply(ctx, changes)
	case "trusting":
		// Installs whatever certificate it is handed, whatever the
		// fingerprint says, and never fails.
		res := make([]trust.Result, len(changes))
		for i, c := range changes {
			if c.Op == trust.OpInstall && c.Cert != nil {
				c2 := c
				c2.FP = c.Cert.FP
				c2.Target = trust.Target{}
				b.Fake.Apply(ctx, []trust.Change{c2})
			}
			res[i] = trust.OK(c)
		}
		return res
	case "chatty":
		// Runs its refresh tool once per change.
		var res []trust.Result
		for _, c := range changes {
			res = append(res, b.Fake.Apply(ctx, []trust.Change{c})...)
		}
		return res
	}
	return b.Fake.Apply(ctx, changes)
}

// TestBrokenStoreChild is run in a subprocess by TestSuiteCatchesBrokenStores.
func TestBrokenStoreChild(t *testing.T) {
	mode := os.Getenv("TRUSTTEST_BROKEN")
	if mode == "" {
		return // only meaningful as a child of TestSuiteCatchesBrokenStores
	}
	Run(t, func(t *testing.T) trust.Store { return &broken{Fake: NewFake("broken"), mode: mode} }, Options{
		Plant:            func(t *testing.T, s trust.Store, c *trust.Cert) { s.(*broken).Fake.Plant(trust.Target{}, c) },
		PlantedRemovable: true,
		Refreshes:        func(s trust.Store) int { return s.(*broken).Refreshes() },
	})
}

// TestSuiteCatchesBrokenStores proves the suite is not a rubber stamp: each
// store breaking one promise fails it, in the case that checks the promise.
func TestSuiteCatchesBrokenStores(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns the test binary")
	}
	tests := []struct{ mode, failingCase string }{
		{"lies", "InstallEveryTarget"},
		{"duplicates", "InstallTwice"},
		{"untagged", "InstallEveryTarget"},
		{"reversed", "BatchOrder"},
		{"greedy", "OthersUntouched"},
		{"trusting", "BadChanges"},
		{"chatty", "BatchOrder"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenStoreChild$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), "TRUSTTEST_BROKEN="+tt.mode)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a store that breaks %q:\n%s", tt.mode, out)
			}
			assert.Contains(t, string(out), "--- FAIL: TestBrokenStoreChild/"+tt.failingCase, "output:\n%s", out)
		})
	}
}
