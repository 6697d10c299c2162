package agent_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/trust"
)

// TestCheckInFitsCertplane: whatever the machine says (an os-release with a
// long PRETTY_NAME, a dir: store on a deep path, a tool's long error with
// control characters and broken UTF-8), the check-in the agent builds is
// one certplane accepts; one field over its limit would have every
// check-in refused.
func TestCheckInFitsCertplane(t *testing.T) {
	long := strings.Repeat("é", 200) + "\x85\x00\xff" // 2-byte runes, a C1 and a C0 control, invalid UTF-8
	fp := trust.Fingerprint{1}
	s := agent.Snapshot{
		Desired: []agent.CertInfo{{FP: fp}},
		Results: []agent.TargetResult{
			{Store: "dir:/" + strings.Repeat("deep/", 100), FP: fp, Status: trust.StatusOK},
			{Store: "nss", Target: trust.Target{User: long}, FP: fp, Status: trust.StatusFailed, Error: strings.Repeat(long, 5)},
		},
	}
	in := agent.BuildCheckIn(s, long, long)
	for _, f := range []struct {
		name, v string
		max     int
	}{
		{"hostname", in.Hostname, api.MaxCheckInField},
		{"os_version", in.OSVersion, api.MaxCheckInField},
		{"store", in.Roots[0].Stores[0].Store, api.MaxCheckInField},
		{"user", in.Roots[0].Stores[1].User, api.MaxCheckInField},
		{"detail", in.Roots[0].Stores[1].Detail, api.MaxCheckInDetail},
	} {
		assert.LessOrEqual(t, len(f.v), f.max, f.name)
		assert.Greater(t, len(f.v), f.max-4, "%s: clipped at a character boundary, not emptied", f.name)
		assert.True(t, utf8.ValidString(f.v), f.name)
	}
	_, err := controlplane.ValidateCheckIn(in)
	require.NoError(t, err)
}
