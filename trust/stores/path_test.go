package stores

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/bundle"
	"github.com/certagent/certagent/trust/dir"
	"github.com/certagent/certagent/trust/trusttest"
)

func TestOpenPath(t *testing.T) {
	d := t.TempDir()
	tests := []struct {
		spec     string
		wantName string
		wantType any
		wantErr  string
	}{
		{spec: "dir:" + filepath.Join(d, "roots"), wantName: "dir:" + filepath.Join(d, "roots"), wantType: &dir.Store{}},
		{spec: "dir:" + d + "/a/../roots/", wantName: "dir:" + filepath.Join(d, "roots"), wantType: &dir.Store{}},
		{spec: "bundle:" + filepath.Join(d, "b.pem"), wantName: "bundle:" + filepath.Join(d, "b.pem"), wantType: &bundle.Store{}},
		{spec: "dir:", wantErr: "needs a path"},
		{spec: "dir", wantErr: "needs a path"},
		{spec: "bundle:relative/b.pem", wantErr: "absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			s, err := Open(tt.spec, Env{})
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.IsType(t, tt.wantType, s)
			assert.Equal(t, tt.wantName, s.Name())
			require.NoError(t, s.Check(context.Background()))
		})
	}
}

// TestOpenedDirWorks installs through a store opened by name.
func TestOpenedDirWorks(t *testing.T) {
	s, err := Open("dir:"+t.TempDir(), Env{})
	require.NoError(t, err)
	ca := trusttest.NewCA(t)
	res, err := trust.Install(context.Background(), s, ca.Cert)
	require.NoError(t, err)
	require.NoError(t, trust.FirstError(res))
	ok, err := trust.Contains(context.Background(), s, ca.FP)
	require.NoError(t, err)
	assert.True(t, ok)
}
