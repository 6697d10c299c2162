package stores

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

func TestCoveredStoreNeverReportsSuccess(t *testing.T) {
	s := coveredStore{name: "nss", reason: "the system store covers it"}
	ctx := context.Background()
	err := s.Check(ctx)
	require.Error(t, err)
	assert.True(t, errors.Is(err, trust.ErrUnavailable))
	assert.Contains(t, err.Error(), "the system store covers it")

	inv, err := s.List(ctx)
	require.NoError(t, err)
	assert.Empty(t, inv.Targets, "no targets: the planner has nothing to install into")
	require.Len(t, inv.Skipped, 1)
	assert.Equal(t, "the system store covers it", inv.Skipped[0].Reason)

	ca := trusttest.NewCA(t)
	rs := s.Apply(ctx, []trust.Change{{Op: trust.OpInstall, FP: ca.FP, Cert: ca.Cert}})
	require.Len(t, rs, 1)
	assert.Equal(t, trust.StatusSkipped, rs[0].Status)
	assert.Equal(t, "the system store covers it", rs[0].Reason)
	assert.Nil(t, s.Apply(ctx, nil))
}
