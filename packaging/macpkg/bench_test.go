package macpkg

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func BenchmarkCksum(b *testing.B) {
	data := bytes.Repeat([]byte("certagent"), 1<<20/9)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		Cksum(data)
	}
}

func BenchmarkUniversal(b *testing.B) {
	amd := thinMachO(cpuTypeX86_64, 3, 10<<20)
	arm := thinMachO(cpuTypeARM64, 0, 10<<20)
	b.SetBytes(20 << 20)
	for b.Loop() {
		if _, _, err := Universal(amd, arm); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuild is a whole product archive around two 10 MiB slices, the
// size of the real agent.
func BenchmarkBuild(b *testing.B) {
	dir := b.TempDir()
	amd, arm := filepath.Join(dir, "amd64"), filepath.Join(dir, "arm64")
	if err := os.WriteFile(amd, thinMachO(cpuTypeX86_64, 3, 10<<20), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(arm, thinMachO(cpuTypeARM64, 0, 10<<20), 0o755); err != nil {
		b.Fatal(err)
	}
	opts := Options{Version: "1.2.3", AMD64: amd, ARM64: arm, OutDir: b.TempDir(), MTime: time.Unix(1700000000, 0)}
	b.SetBytes(20 << 20)
	for b.Loop() {
		if _, err := Build(context.Background(), opts); err != nil {
			b.Fatal(err)
		}
	}
}
