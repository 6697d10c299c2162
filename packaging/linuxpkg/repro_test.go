package linuxpkg_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/packaging/linuxpkg"
)

// TestReproducible builds every format twice, from staged copies with
// different mtimes, and requires identical bytes.
func TestReproducible(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "certagent")
	blob := make([]byte, 64<<10)
	_, _ = rand.Read(blob)
	require.NoError(t, os.WriteFile(bin, blob, 0o755))
	build := func() []string {
		// A different source mtime each time: only MTime may matter.
		now := time.Now()
		require.NoError(t, os.Chtimes(bin, now, now))
		paths, err := linuxpkg.Build(context.Background(), linuxpkg.Options{
			Version: "1.2.3", Arch: "amd64", Binary: bin, OutDir: t.TempDir(), MTime: time.Unix(1700000000, 0),
		})
		require.NoError(t, err)
		return paths
	}
	a, b := build(), build()
	require.Len(t, a, len(linuxpkg.Formats))
	for i := range a {
		ab, err := os.ReadFile(a[i])
		require.NoError(t, err)
		bb, err := os.ReadFile(b[i])
		require.NoError(t, err)
		if !bytes.Equal(ab, bb) {
			t.Errorf("%s: two builds differ", filepath.Base(a[i]))
		}
	}
}

func TestBuildBadOptions(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "out")
	tests := []struct {
		name string
		opts linuxpkg.Options
	}{
		{"no version", linuxpkg.Options{Arch: "amd64", Binary: "/bin/true", OutDir: out}},
		{"no binary", linuxpkg.Options{Version: "1.0.0", Arch: "amd64", OutDir: out}},
		{"bad version", linuxpkg.Options{Version: "1.0.0 evil", Arch: "amd64", Binary: "/bin/true", OutDir: out}},
		{"unknown arch", linuxpkg.Options{Version: "1.0.0", Arch: "sparc", Binary: "/bin/true", OutDir: out}},
		{"missing binary", linuxpkg.Options{Version: "1.0.0", Arch: "amd64", Binary: "/nonexistent/certagent", OutDir: out}},
	}
	for _, tt := range tests {
		_, err := linuxpkg.Build(context.Background(), tt.opts)
		if err == nil {
			t.Errorf("%s: got nil error", tt.name)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: output directory created for a failed build", tt.name)
		}
	}
}
