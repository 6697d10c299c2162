//go:build !windows

package localapi

import (
	"context"
	"testing"
)

// BenchmarkStatusRoundTrip is one `certagent status` over the socket: dial,
// HTTP request, peer credentials, JSON both ways.
func BenchmarkStatusRoundTrip(b *testing.B) {
	path := serveB(b, &fakeBackend{})
	c := NewClient(path)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Status(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
