package status

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/internal/nstest"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

// A freshly minted root is in no system pool: the verifier must say so,
// and status must turn that into a warning.
func TestApplyOSTrustUntrusted(t *testing.T) {
	ca := trusttest.NewCA(t)
	r := healthy()
	r.Certificates[0].Fingerprint = ca.FP.String()
	if err := ApplyOSTrust(r, []*trust.Cert{ca.Cert}, time.Now()); err != nil {
		nstest.Skipf(t, "no system pool here: %v", err)
	}
	p := r.Certificates[0].Placements[0]
	require.Equal(t, "system", p.Store)
	require.NotNil(t, p.Trusted)
	require.False(t, *p.Trusted)
	require.Equal(t, CodeNotTrusted, r.Health[0].Code)
	// NSS placements are not the OS verifier's to judge.
	require.Nil(t, r.Certificates[0].Placements[1].Trusted)
}
