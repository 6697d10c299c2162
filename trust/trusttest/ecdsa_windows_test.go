package trusttest

import (
	"testing"
)

// TestMintedECDSASignaturesAreFull: on Windows every ECDSA certificate mint
// makes has a full-length signature (wineFullECDSA); about 1 in 128 would
// not, so 1,000 mints would have some.
func TestMintedECDSASignaturesAreFull(t *testing.T) {
	for i := range 1000 {
		ca := NewCA(t)
		if !fullECDSASignature(ca.X509.Raw, ca.Key) {
			t.Fatalf("certificate %d has a short r or s", i)
		}
	}
}
