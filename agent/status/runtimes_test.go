package status

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/trust/runtimes"
	"github.com/certagent/certagent/trust/trusttest"
)

func TestApplyRuntimes(t *testing.T) {
	inUse, old := trusttest.NewCA(t), trusttest.NewCA(t)
	found := []runtimes.Finding{
		{Runtime: "node", Program: "/usr/bin/node", Rule: runtimes.RuleAny, Sources: []runtimes.Source{
			runtimes.NewSource("its built-in Mozilla roots", ""),
			runtimes.NewSource("NODE_EXTRA_CA_CERTS", "/usr/local/share/certagent/runtimes/ca-bundle.pem", inUse.FP, old.FP),
		}},
		{Runtime: "git", Program: "/usr/bin/git", Rule: runtimes.RuleAny, Sources: []runtimes.Source{
			runtimes.NewSource("the OS store", "/etc/ssl/certs/ca-certificates.crt", old.FP),
		}},
		{Runtime: "Chromium", Program: "/usr/bin/chromium", Rule: runtimes.RuleAll, Sources: []runtimes.Source{
			{What: "NSS databases", Err: "permission denied"},
		}},
	}
	r := &Report{Certificates: []Certificate{
		{Fingerprint: old.FP.String(), State: CertAvailable},
		{Fingerprint: inUse.FP.String(), State: CertAvailable, InUse: true},
	}}
	ApplyRuntimes(r, found)
	require.Len(t, r.Runtimes, 3)
	require.NotNil(t, r.Runtimes[0].Trusted)
	assert.True(t, *r.Runtimes[0].Trusted)
	require.NotNil(t, r.Runtimes[1].Trusted)
	assert.False(t, *r.Runtimes[1].Trusted, "git's store holds only the old root")
	assert.Contains(t, r.Runtimes[1].Detail, `"system" store`)
	assert.Nil(t, r.Runtimes[2].Trusted, "an unreadable store is unknown, not a verdict")
	assert.Contains(t, r.Runtimes[2].Sources[0], "unreadable: permission denied")

	var b strings.Builder
	require.NoError(t, Render(&b, r, time.Now()))
	out := b.String()
	assert.Contains(t, out, "Runtimes (will each trust the in-use root?)")
	assert.Regexp(t, `node\s+yes\s+/usr/bin/node`, out)
	assert.Regexp(t, `git\s+NO\s+/usr/bin/git`, out)
	assert.Regexp(t, `Chromium\s+unknown`, out)
	assert.Contains(t, out, "reads NODE_EXTRA_CA_CERTS: /usr/local/share/certagent/runtimes/ca-bundle.pem")

	// No root in use: nothing is judged.
	r = &Report{Certificates: []Certificate{{Fingerprint: old.FP.String(), State: CertAvailable}}}
	ApplyRuntimes(r, found)
	for _, rt := range r.Runtimes {
		assert.Nil(t, rt.Trusted)
	}
	assert.Equal(t, "no root is in use on the control plane", r.Runtimes[1].Detail)
}
