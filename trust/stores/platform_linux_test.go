package stores

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/firefoxpolicy"
	"github.com/certagent/certagent/trust/runtimes"
)

func TestOpenLinuxStores(t *testing.T) {
	for _, name := range []string{"system", "nss", "firefox-policy", "java"} {
		t.Run(name, func(t *testing.T) {
			s, err := Open(name, Env{})
			require.NoError(t, err)
			assert.Equal(t, name, s.Name())
		})
	}
}

// TestEveryLinuxStoreDeclaresItsPaths: the unit's ReadWritePaths= and the
// daemon's watch list come from the stores, so every kind must declare
// where it writes; firefox-policy's certificate directory is among them
// (the unit that copied a list missed it).
func TestEveryLinuxStoreDeclaresItsPaths(t *testing.T) {
	for _, name := range append(append([]string(nil), Kinds...), "dir:/srv/roots", "bundle:/srv/b/ca.pem") {
		t.Run(name, func(t *testing.T) {
			s, err := Open(name, Env{})
			require.NoError(t, err)
			d, ok := s.(trust.PathDeclarer)
			require.True(t, ok, "%s declares no paths", name)
			p := d.Paths()
			for _, c := range p.Create {
				assert.Contains(t, p.Write, c, "what it creates, it writes")
			}
		})
	}
	write, create := SandboxPaths([]string{"firefox-policy", "dir:/srv/roots", "bundle:/srv/b/ca.pem", "dir:relative"}, Env{})
	for _, want := range []string{firefoxpolicy.DefaultCertDir, filepath.Dir(firefoxpolicy.DefaultPolicyFile), "/srv/roots", "/srv/b", "/usr/lib/jvm", runtimes.DefaultDir} {
		assert.Contains(t, write, want)
	}
	assert.Contains(t, create, firefoxpolicy.DefaultCertDir, "made by the service install")
	assert.Contains(t, create, "/srv/roots")
	assert.NotContains(t, create, "/usr/lib/jvm", "never created: not ours")
	assert.NotContains(t, create, runtimes.DefaultDir, "runtimes is not configured here")
}
