package watch

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"
)

// deadline is generous: the tests wait for a condition, they do not time it.
const deadline = 20 * time.Second

type recorder chan string

func (r recorder) waitFor(t *testing.T, group string) {
	t.Helper()
	timeout := time.After(deadline)
	for {
		select {
		case g := <-r:
			if g == group {
				return
			}
		case <-timeout:
			t.Fatalf("group %q never fired", group)
		}
	}
}

// drain empties pending notifications so the next waitFor sees only new
// changes.
func (r recorder) drain() {
	for {
		select {
		case <-r:
		default:
			return
		}
	}
}

func start(t *testing.T) (*Watcher, recorder) {
	t.Helper()
	rec := make(recorder, 256)
	w, err := New(Options{Debounce: 20 * time.Millisecond, Logger: hclog.NewNullLogger(), OnChange: func(g string) { rec <- g }})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return w, rec
}

func TestConfigReplacedByRename(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.json")
	require.NoError(t, os.WriteFile(cfg, []byte(`{}`), 0o600))
	w, rec := start(t)
	w.Set("config", []string{cfg})

	// The way editors and config managers save: write a temp, rename over.
	for i := range 3 {
		tmp := filepath.Join(dir, ".config.json.tmp")
		require.NoError(t, os.WriteFile(tmp, []byte(`{"n":1}`), 0o600))
		require.NoError(t, os.Rename(tmp, cfg))
		rec.waitFor(t, "config")
		rec.drain()
		_ = i
	}
}

func TestAnchorDeletedFiresStoreGroup(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "anchors")
	require.NoError(t, os.Mkdir(dir, 0o755))
	anchor := filepath.Join(dir, "certagent-ab.crt")
	require.NoError(t, os.WriteFile(anchor, []byte("pem"), 0o644))
	w, rec := start(t)
	w.Set("store:dir", []string{dir})

	require.NoError(t, os.Remove(anchor))
	rec.waitFor(t, "store:dir")
}

func TestDirectoryAppearingLater(t *testing.T) {
	root := t.TempDir()
	profiles := filepath.Join(root, "home", "alice", ".mozilla", "firefox")
	w, rec := start(t)
	w.Set("store:nss", []string{profiles})
	require.Contains(t, w.Watched(), root, "the nearest existing ancestor is watched")

	// The browser creates its profile root one level at a time.
	require.NoError(t, os.MkdirAll(profiles, 0o755))
	rec.waitFor(t, "store:nss")
	waitWatched(t, w, profiles)
	rec.drain()

	// A new profile inside the now-existing root is noticed.
	require.NoError(t, os.Mkdir(filepath.Join(profiles, "abcd.default-release"), 0o700))
	rec.waitFor(t, "store:nss")
}

func TestDirectoryRecreated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "anchors")
	require.NoError(t, os.Mkdir(dir, 0o755))
	w, rec := start(t)
	w.Set("store:dir", []string{dir})

	require.NoError(t, os.RemoveAll(dir))
	rec.waitFor(t, "store:dir")
	require.NoError(t, os.Mkdir(dir, 0o755))
	rec.waitFor(t, "store:dir")
	waitWatched(t, w, dir)
	rec.drain()

	// The watch on the new inode works.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "x.crt"), []byte("pem"), 0o644))
	rec.waitFor(t, "store:dir")
}

func TestBundleFileRewritten(t *testing.T) {
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle.pem")
	w, rec := start(t)
	w.Set("store:bundle", []string{bundle})
	require.NoError(t, os.WriteFile(bundle, []byte("a"), 0o644))
	rec.waitFor(t, "store:bundle")
}

func TestSetIgnoresRelativeAndDedups(t *testing.T) {
	w, _ := start(t)
	dir := t.TempDir()
	w.Set("g", []string{"relative/path", dir, dir + "/", ""})
	if got, want := w.Paths("g"), []string{dir}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	w.Set("g", nil)
	if got := w.Paths("g"); len(got) != 0 {
		t.Errorf("got %v, want no paths", got)
	}
	if got := w.Watched(); len(got) != 0 {
		t.Errorf("watched after removing every group: got %v, want none", got)
	}
}

func TestAffects(t *testing.T) {
	tests := []struct {
		name, target string
		want         bool
	}{
		{"/etc/certagent/config.json", "/etc/certagent/config.json", true},
		{"/etc/certagent/.config.json.swp", "/etc/certagent/config.json", false},
		{"/usr/local/share/ca-certificates/certagent-1.crt", "/usr/local/share/ca-certificates", true},
		{"/usr/local/share/ca-certificates/sub/x.crt", "/usr/local/share/ca-certificates", false},
		{"/home/alice", "/home/alice/.pki/nssdb", true},
		{"/home/alicex", "/home/alice/.pki/nssdb", false},
		{"/home/alice/.pki/nssdb/cert9.db", "/home/alice/.pki/nssdb", true},
		{"/etc/ssl/certs2", "/etc/ssl/certs", false},
	}
	for _, tt := range tests {
		t.Run(tt.name+"→"+tt.target, func(t *testing.T) {
			if got := affects(tt.name, tt.target); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestDebounceCoalesces checks, on a fake clock, that a burst of changes
// within the debounce interval fires once, after the burst.
func TestDebounceCoalesces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls []time.Time
		w := &Watcher{debounce: time.Second, timers: map[string]*time.Timer{}, timerGen: map[string]uint64{}, changes: map[string]uint64{},
			onChange: func(string) { calls = append(calls, time.Now()) }}
		start := time.Now()
		for range 10 {
			w.mu.Lock()
			w.fireLocked("store")
			w.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		require.Len(t, calls, 1)
		if got, want := calls[0].Sub(start), 1900*time.Millisecond; got != want {
			t.Errorf("fired after %v, want %v (last change + debounce)", got, want)
		}
	})
}

func waitWatched(t *testing.T, w *Watcher, dir string) {
	t.Helper()
	// Re-arming happens on the event that fired the group, before the
	// callback; this loop only guards against scheduler ordering.
	for end := time.Now().Add(deadline); time.Now().Before(end); {
		if slices.Contains(w.Watched(), dir) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never watched; watched: %v", dir, w.Watched())
}

func TestTransient(t *testing.T) {
	for name, want := range map[string]bool{
		"cert9.db-journal": true, "cert9.db-wal": true, "key4.db-shm": true,
		".config.json.tmp-12345": true, ".certagent-tmp": true, "cert9.db": false, "certagent-ab.crt": false, ".hidden": false,
	} {
		if got := transient(name); got != want {
			t.Errorf("transient(%q): got %v, want %v", name, got, want)
		}
	}
}

// waitChanges waits until group's change count passes after.
func waitChanges(t *testing.T, w *Watcher, group string, after uint64) uint64 {
	t.Helper()
	for end := time.Now().Add(deadline); time.Now().Before(end); {
		if n, _ := w.State(group); n > after {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("group %q: change count never passed %d", group, after)
	return 0
}

// waitComplete waits until Run delivers events and group is complete.
func waitComplete(t *testing.T, w *Watcher, group string) {
	t.Helper()
	for end := time.Now().Add(deadline); time.Now().Before(end); {
		if _, ok := w.State(group); ok {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("group %q never complete", group)
}

// TestStateCountsEveryChange checks what agent.StoreWatch relies on: a
// group's count moves on a write, on a pure chmod (which fires nothing),
// and on a watch error such as a queue overflow, and stays put while
// nothing happens.
func TestStateCountsEveryChange(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "anchors")
	require.NoError(t, os.Mkdir(dir, 0o755))
	other := t.TempDir()
	w, rec := start(t)
	w.Set("store", []string{dir})
	w.Set("other", []string{other})
	waitComplete(t, w, "store")
	n0, _ := w.State("store")
	if n, _ := w.State("store"); n != n0 {
		t.Fatalf("count moved without a change: got %d, want %d", n, n0)
	}

	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.crt"), []byte("x"), 0o644))
	n1 := waitChanges(t, w, "store", n0)
	rec.waitFor(t, "store")

	require.NoError(t, os.Chmod(filepath.Join(dir, "a.crt"), 0o600))
	n2 := waitChanges(t, w, "store", n1)

	// The kernel's queue overflowed: every group may have missed changes.
	o0, _ := w.State("other")
	w.fsw.Errors <- fsnotify.ErrEventOverflow
	waitChanges(t, w, "store", n2)
	waitChanges(t, w, "other", o0)
}

// TestStateIncomplete checks that a group is not complete when it is
// unknown, when a directory it needs could not be watched, or when the
// watcher stopped.
func TestStateIncomplete(t *testing.T) {
	dir := t.TempDir()
	w, err := New(Options{OnChange: func(string) {}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	w.Set("store", []string{dir})
	waitComplete(t, w, "store")
	if _, ok := w.State("nosuch"); ok {
		t.Errorf("unknown group: got complete, want not")
	}

	// A directory that cannot be watched (here: fsnotify refuses it) makes
	// the group incomplete.
	w.mu.Lock()
	w.armed[filepath.Join(dir, "gone")] = false
	w.coverLocked(map[string][]string{"store": {dir, filepath.Join(dir, "gone")}})
	w.mu.Unlock()
	if _, ok := w.State("store"); ok {
		t.Errorf("unwatched directory: got complete, want not")
	}
	w.Set("store", []string{dir, filepath.Join(dir, "sub")})
	if _, ok := w.State("store"); !ok {
		t.Errorf("after re-arming: got incomplete, want complete")
	}

	cancel()
	<-done
	if _, ok := w.State("store"); ok {
		t.Errorf("stopped watcher: got complete, want not")
	}
}
