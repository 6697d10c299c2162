package linuxpkg_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/certagent/certagent/packaging/linuxpkg"
)

// BenchmarkBuild is one format's package around the real agent binary
// (about 10 MiB stripped), the cost `make package-linux` pays per format
// and architecture.
func BenchmarkBuild(b *testing.B) {
	bin, err := buildAgent(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	st, err := os.Stat(bin)
	if err != nil {
		b.Fatal(err)
	}
	for _, format := range linuxpkg.Formats {
		b.Run(format, func(b *testing.B) {
			out := b.TempDir()
			b.SetBytes(st.Size())
			for b.Loop() {
				if _, err := linuxpkg.Build(context.Background(), linuxpkg.Options{
					Version: "1.2.3", Arch: "amd64", Binary: bin, OutDir: filepath.Join(out, "x"),
					Formats: []string{format}, MTime: time.Unix(1700000000, 0),
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
