package cli

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestNewFlagSetUsage: `certagent X -h` names the command, its arguments
// and what it does (it printed a bare "Usage of X:").
func TestNewFlagSetUsage(t *testing.T) {
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			fs := newFlagSet(c.name)
			var out bytes.Buffer
			fs.SetOutput(&out)
			fs.Usage()
			assert.Contains(t, out.String(), "usage: certagent "+c.name)
			assert.Contains(t, out.String(), c.summary)
		})
	}
}
