//go:build !windows

package winroot

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/trust"
)

// Off Windows the adapter exists (configs name it) but every call says so.
func TestRealStoreOnlyOnWindows(t *testing.T) {
	_, err := New(Options{}).List(context.Background())
	require.Error(t, err)
	assert.True(t, errors.Is(err, trust.ErrNotSupported))
	assert.True(t, strings.Contains(err.Error(), StorePath))
}
