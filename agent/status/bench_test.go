package status

import (
	"fmt"
	"io"
	"testing"
	"time"
)

// bigReport is a large fleet machine: 15 roots, each in the system store
// and 40 NSS databases.
func bigReport() *Report {
	r := healthy()
	r.Certificates = nil
	for i := range 15 {
		c := Certificate{ID: fmt.Sprint(i), Fingerprint: fpA, Subject: fmt.Sprintf("Root %d", i), NotAfter: now.Add(400 * 24 * time.Hour), State: CertAvailable}
		c.Placements = append(c.Placements, Placement{Store: "system", State: PlacementInstalled, Trusted: yes()})
		for u := range 40 {
			c.Placements = append(c.Placements, Placement{Store: "nss", User: fmt.Sprintf("user%02d", u), Path: fmt.Sprintf("/home/user%02d/.pki/nssdb", u), State: PlacementInstalled})
		}
		r.Certificates = append(r.Certificates, c)
	}
	return r
}

func BenchmarkRenderTable(b *testing.B) {
	r := bigReport()
	r.Health = Warnings(r, now)
	b.ReportAllocs()
	for b.Loop() {
		_ = Render(io.Discard, r, now)
	}
}

func BenchmarkEvaluate(b *testing.B) {
	r := bigReport()
	b.ReportAllocs()
	for b.Loop() {
		_ = Warnings(r, now)
	}
}

func BenchmarkWriteJSON(b *testing.B) {
	r := bigReport()
	b.ReportAllocs()
	for b.Loop() {
		_ = WriteJSON(io.Discard, r)
	}
}
