package trust_test

import (
	"strings"
	"testing"

	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

func BenchmarkParseFingerprint(b *testing.B) {
	forms := map[string]string{
		"colon":    retired,
		"hex":      strings.ToLower(strings.ReplaceAll(retired, ":", "")),
		"unpadded": strings.ReplaceAll(retired, ":0", ":"),
	}
	for name, s := range forms {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := trust.ParseFingerprint(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFingerprintString(b *testing.B) {
	fp := trust.MustFingerprint(retired)
	b.ReportAllocs()
	for b.Loop() {
		_ = fp.String()
	}
}

func BenchmarkPolicyCheck(b *testing.B) {
	cases := map[string]*trusttest.CA{
		"ECDSA-P256": trusttest.NewCA(b),
		"RSA-2048":   trusttest.NewCA(b, trusttest.WithRSA(2048)),
	}
	for name, ca := range cases {
		c := trust.Candidate{ID: "x", PEM: ca.PEM(), ClaimedFingerprint: ca.FP.String()}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := (trust.Policy{}).Check(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEvaluate15 is one pass's policy work for a full account.
func BenchmarkEvaluate15(b *testing.B) {
	var cands []trust.Candidate
	for _, ca := range trusttest.NewCAs(b, trust.MaxAvailable) {
		cands = append(cands, trust.Candidate{ID: "x", PEM: ca.PEM(), ClaimedFingerprint: ca.FP.String()})
	}
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := (trust.Policy{}).Evaluate(cands); len(ok) != trust.MaxAvailable {
			b.Fatal(len(ok))
		}
	}
}
