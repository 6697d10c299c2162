//go:build !windows

package trusttest

import (
	"crypto/elliptic"
	"testing"
)

// TestFullECDSASignature tells a signature whose r or s is a byte short
// from a full one, and passes other signers. (On Windows mint keeps only
// full ones: ecdsa_windows_test.go.)
func TestFullECDSASignature(t *testing.T) {
	full, short := 0, 0
	for i := 0; i < 4000 && (full == 0 || short == 0); i++ {
		ca, err := mint(spec{keyType: ECDSA, curve: elliptic.P256(), isCA: true, maxPathLen: -1})
		if err != nil {
			t.Fatal(err)
		}
		if fullECDSASignature(ca.X509.Raw, ca.Key) {
			full++
		} else {
			short++
		}
	}
	if full == 0 || short == 0 {
		t.Fatalf("got %d full and %d short signatures in 4000, want both (about 1 in 128 is short)", full, short)
	}
	rsaCA := NewCA(t, WithRSA(2048))
	if !fullECDSASignature(rsaCA.X509.Raw, rsaCA.Key) {
		t.Error("an RSA signature should always pass")
	}
}
