package watch

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/fsnotify/fsnotify"
)

// BenchmarkHandleEvent is the cost of one file event against a machine's
// worth of watched paths (4 anchor dirs, 200 NSS databases and profile
// roots), which decides whether a busy home directory costs CPU.
func BenchmarkHandleEvent(b *testing.B) {
	w, err := New(Options{OnChange: func(string) {}})
	if err != nil {
		b.Fatal(err)
	}
	defer w.close()
	root := b.TempDir()
	var paths []string
	for i := range 200 {
		paths = append(paths, filepath.Join(root, fmt.Sprintf("home/u%03d/.pki/nssdb", i)))
	}
	w.Set("store:nss", paths)
	w.Set("config", []string{filepath.Join(root, "etc/config.json")})
	ev := fsnotify.Event{Name: filepath.Join(root, "home/u150/.pki/nssdb/cert9.db"), Op: fsnotify.Write}
	b.ReportAllocs()
	for b.Loop() {
		w.handle(ev)
	}
}
