package stores

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
