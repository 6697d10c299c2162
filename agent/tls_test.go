package agent

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

// TestControlPlaneTLSPinning runs the real client against an HTTPS control
// plane whose leaf a minted CA signed.
func TestControlPlaneTLSPinning(t *testing.T) {
	serverCA := trusttest.NewCA(t, trusttest.WithCommonName("control plane CA"))
	leaf := serverCA.Issue(t)
	other := trusttest.NewCA(t)
	caFile := filepath.Join(t.TempDir(), "plane-ca.pem")
	require.NoError(t, os.WriteFile(caFile, serverCA.PEM(), 0o644))

	mustPin := func(s string) [32]byte {
		p, err := ParsePin(s)
		require.NoError(t, err)
		return p
	}
	tests := []struct {
		name    string
		caFile  string
		pins    [][32]byte
		wantErr string
	}{
		{name: "ca_file", caFile: caFile},
		{name: "system roots do not know the plane", wantErr: "certificate signed by unknown authority"},
		{name: "pin of the leaf", caFile: caFile, pins: [][32]byte{mustPin(SPKIPin(leaf.X509))}},
		{name: "pin of the CA in the verified chain", caFile: caFile, pins: [][32]byte{mustPin(SPKIPin(serverCA.X509))}},
		{name: "wrong pin", caFile: caFile, pins: [][32]byte{mustPin(SPKIPin(other.X509))}, wantErr: "does not match pin_sha256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &fakePlane{t: t, block: make(chan struct{})}
			srv := httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
			srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate()}}
			srv.StartTLS()
			t.Cleanup(srv.Close)
			p.srv = srv
			root := trusttest.NewCA(t)
			p.add(root, api.StatusAvailable)

			r := newRig(t)
			r.cfg.ControlPlaneURL = srv.URL + "/client/v4"
			r.cfg.CAFile, r.cfg.PinSHA256 = tc.caFile, tc.pins
			rep, err := r.agent().SyncOnce(context.Background(), false)
			require.NoError(t, err)
			if tc.wantErr != "" {
				assert.Equal(t, "error", rep.Fetch.Status)
				assert.Contains(t, rep.Fetch.Error, tc.wantErr)
				assert.Empty(t, r.holdings(nil), "nothing installed from an unverified plane")
				return
			}
			assert.Equal(t, "ok", rep.Fetch.Status, rep.Fetch.Error)
			ok, err := trust.Contains(context.Background(), r.stores["one"], root.FP)
			require.NoError(t, err)
			assert.True(t, ok)
		})
	}
}
