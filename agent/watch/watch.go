// Package watch tells the daemon, within about a second, that a file it
// depends on changed: the config file, the managed settings, a trust store's
// anchor directory, bundle file, NSS database or browser profile root.
//
// It watches directories, never inodes: editors and config managers replace
// files by rename, and an inode watch would go quiet after the first save.
// A path that does not exist yet is covered by watching its nearest existing
// ancestor, and the watches are re-armed whenever a directory on the way
// appears or disappears, so a browser profile created after the daemon
// started is noticed. Bursts of events are debounced per group. Polling
// remains the safety net: a lost event (queue overflow) fires every group.
//
// Besides firing, the watcher counts every change it sees per group, before
// the debounce (State): a pass that recorded a group's count before reading
// its paths knows, while the count and the coverage stay the same, that no
// change reached those paths since (agent.StoreWatch).
package watch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/internal/atomicfile"
)

// DefaultDebounce is how long a group must be quiet before it fires: long
// enough to swallow an editor's write-rename-chmod burst or a package
// manager's update of a whole directory, short enough to feel immediate.
const DefaultDebounce = 750 * time.Millisecond

// Watchable is implemented by trust stores that can name the files and
// directories whose change means their content may have drifted (anchor
// directories, bundle files, NSS database directories, browser profile
// roots). Paths need not exist yet.
type Watchable interface {
	WatchPaths() []string
}

// Watcher watches groups of paths and calls OnChange(group) once a group's
// paths have been quiet for the debounce interval after a change.
type Watcher struct {
	debounce time.Duration
	log      hclog.Logger
	onChange func(group string)
	fsw      *fsnotify.Watcher

	mu sync.Mutex
	// targets maps a group to its clean absolute paths; guarded by mu.
	targets map[string][]string
	// armed is the set of directories fsnotify currently watches; guarded by mu.
	armed map[string]bool
	// exists records, per target path, whether it existed at the last
	// re-arm, so a target that appeared between an event and its watch
	// still fires its group; guarded by mu.
	exists map[string]bool
	// timers are the pending debounce timers per group, timerGen the
	// generation each was started with, gen the last generation handed
	// out; guarded by mu.
	timers   map[string]*time.Timer
	timerGen map[string]uint64
	gen      uint64
	closed   bool
	// changes counts, per group, the changes seen (events, errors, paths
	// appearing or vanishing, new paths); covered says whether every
	// directory the group's paths need is watched; both guarded by mu.
	changes map[string]uint64
	covered map[string]bool
	// running is set while Run delivers events; guarded by mu.
	running bool
}

// Options configure a Watcher.
type Options struct {
	// Debounce is the quiet interval before a group fires; zero means
	// DefaultDebounce.
	Debounce time.Duration
	// Logger receives watch errors; nil means a null logger.
	Logger hclog.Logger
	// OnChange is called from timer goroutines, possibly concurrently,
	// and must not block: the daemon turns it into a non-blocking trigger.
	OnChange func(group string)
}

// New returns a Watcher; call Run to start delivering events.
func New(o Options) (*Watcher, error) {
	if o.OnChange == nil {
		return nil, errors.New("watch: OnChange is required")
	}
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	return &Watcher{
		debounce: o.Debounce,
		log:      o.Logger,
		onChange: o.OnChange,
		fsw:      fsw,
		targets:  map[string][]string{},
		armed:    map[string]bool{},
		exists:   map[string]bool{},
		timers:   map[string]*time.Timer{},
		timerGen: map[string]uint64{},
		changes:  map[string]uint64{},
		covered:  map[string]bool{},
	}, nil
}

// Set replaces the paths of group (nil removes the group). Relative paths
// are ignored: every path the agent manages is absolute.
func (w *Watcher) Set(group string, paths []string) {
	clean := make([]string, 0, len(paths))
	seen := map[string]bool{}
	for _, p := range paths {
		if p == "" || !filepath.IsAbs(p) {
			continue
		}
		p = filepath.Clean(p)
		if !seen[p] {
			seen[p] = true
			clean = append(clean, p)
		}
	}
	sort.Strings(clean)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	if !slices.Equal(clean, w.targets[group]) {
		// New paths were never read under the old count.
		w.changes[group]++
	}
	if len(clean) == 0 {
		delete(w.targets, group)
	} else {
		w.targets[group] = clean
	}
	w.rearmLocked()
}

// State returns how many changes the watcher has seen in group's paths so
// far, and whether it can see every change there: Run is delivering
// events and every directory the paths need is watched. Two equal counts,
// both complete, mean no change reached the group's paths in between,
// except one whose event is still in flight (it fires the group when it
// lands). An unknown group is never complete.
func (w *Watcher) State(group string) (changes uint64, complete bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, known := w.targets[group]
	return w.changes[group], known && w.running && !w.closed && w.covered[group]
}

// Paths returns the paths of group, for status and tests.
func (w *Watcher) Paths(group string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.targets[group]...)
}

// Watched returns the directories currently watched, sorted.
func (w *Watcher) Watched() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.armed))
	for d := range w.armed {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// Run delivers events until ctx is done, then closes the watcher.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.close()
	w.mu.Lock()
	w.running = true
	w.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return errClosed(ctx)
			}
			w.handle(ev)
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return errClosed(ctx)
			}
			w.log.Warn("file watch error; rescanning everything", "error", err)
			w.mu.Lock()
			w.rearmLocked()
			for g := range w.targets {
				w.fireLocked(g)
			}
			w.mu.Unlock()
		}
	}
}

// ErrStopped is returned by Run when the kernel side of the watch went
// away while it was still wanted; the daemon exits so the service manager
// restarts it with fresh watches.
var ErrStopped = errors.New("watch: file notifications stopped")

func errClosed(ctx context.Context) error {
	if ctx.Err() != nil {
		return nil
	}
	return ErrStopped
}

func (w *Watcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed, w.running = true, false
	for _, t := range w.timers {
		t.Stop()
	}
	w.fsw.Close()
}

func (w *Watcher) handle(ev fsnotify.Event) {
	name := filepath.Clean(ev.Name)
	if transient(filepath.Base(name)) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for g, ts := range w.targets {
		for _, t := range ts {
			if !affects(name, t) {
				continue
			}
			if ev.Op == fsnotify.Chmod {
				// A pure chmod changes no trust content, and our own
				// atomic writes produce them: no pass of its own, but
				// the next timer pass reads the group again.
				w.changes[g]++
				break
			}
			w.log.Trace("file changed", "group", g, "path", name, "op", ev.Op.String())
			w.fireLocked(g)
			break
		}
	}
	if ev.Op == fsnotify.Chmod {
		return
	}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		if w.armed[name] {
			// The kernel dropped this watch with its inode; a directory
			// recreated under the same name needs a fresh one.
			_ = w.fsw.Remove(name)
			delete(w.armed, name)
		}
	}
	if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		w.rearmLocked()
	}
}

// transient reports whether a file name is a by-product of a write that
// ends in a real change we will see anyway: SQLite journals of NSS
// databases (certutil -L opens them and would otherwise trigger a pass
// that lists them again, forever) and the temporary files of atomic
// writes (their final rename is the event that counts).
func transient(base string) bool {
	for _, suf := range []string{"-journal", "-wal", "-shm"} {
		if strings.HasSuffix(base, suf) {
			return true
		}
	}
	// The private directory of atomic writes comes and goes with each one.
	return base == atomicfile.TempDirName || (strings.HasPrefix(base, ".") && strings.Contains(base, ".tmp-"))
}

// affects reports whether a change to name may change target t: t itself,
// an entry directly inside t (a file in an anchor directory, a new profile
// in a profile root), or a directory on t's path (created, removed, moved).
func affects(name, t string) bool {
	if name == t || filepath.Dir(name) == t {
		return true
	}
	return strings.HasPrefix(t, name+string(filepath.Separator))
}

// fireLocked (re)starts group's debounce timer. Each restart replaces the
// timer and bumps the group's generation, so a timer that already fired
// and waits for the lock sees it is stale and stays quiet: one call per
// quiet period, never two.
func (w *Watcher) fireLocked(group string) {
	if w.closed {
		return
	}
	w.changes[group]++
	if t, ok := w.timers[group]; ok {
		t.Stop()
	}
	w.gen++
	gen := w.gen
	w.timerGen[group] = gen
	w.timers[group] = time.AfterFunc(w.debounce, func() {
		w.mu.Lock()
		if w.closed || w.timerGen[group] != gen {
			w.mu.Unlock()
			return
		}
		delete(w.timers, group)
		delete(w.timerGen, group)
		w.mu.Unlock()
		w.onChange(group)
	})
}

// rearmLocked makes fsnotify watch exactly the directories the targets
// need: each target's directory (when it is one) and the nearest existing
// ancestor of its parent, which sees the target being created, deleted or
// renamed over. A directory can gain subdirectories between the event that
// revealed it and the moment its watch is in place (mkdir -p is that
// fast); so after adding watches it looks again, until nothing new is
// needed.
func (w *Watcher) rearmLocked() {
	for range 32 {
		need, byGroup := w.neededLocked()
		if !w.armNeededLocked(need) {
			w.coverLocked(byGroup)
			return
		}
	}
	// Still finding new directories: call nothing complete.
	clear(w.covered)
}

// coverLocked records which groups have every directory they need watched.
func (w *Watcher) coverLocked(byGroup map[string][]string) {
	clear(w.covered)
	for g, dirs := range byGroup {
		ok := true
		for _, d := range dirs {
			if d == "" || !w.armed[d] {
				ok = false
				break
			}
		}
		w.covered[g] = ok
	}
}

// neededLocked computes the directories to watch, in all and per group,
// and fires every group whose targets appeared or vanished since the last
// look. A group needs "" when a target has no existing ancestor.
func (w *Watcher) neededLocked() (map[string]bool, map[string][]string) {
	need := map[string]bool{}
	byGroup := make(map[string][]string, len(w.targets))
	for g, ts := range w.targets {
		var dirs []string
		fired := false
		for _, t := range ts {
			fi, err := os.Stat(t)
			ex := err == nil
			if was, known := w.exists[t]; known && was != ex && !fired {
				// Appeared or vanished between event and watch.
				w.fireLocked(g)
				fired = true
			}
			w.exists[t] = ex
			if ex && fi.IsDir() {
				need[t] = true
				dirs = append(dirs, t)
			}
			a := nearestExisting(filepath.Dir(t))
			if a != "" {
				need[a] = true
			}
			dirs = append(dirs, a)
		}
		byGroup[g] = dirs
	}
	for t := range w.exists {
		if !w.isTargetLocked(t) {
			delete(w.exists, t)
		}
	}
	return need, byGroup
}

// armNeededLocked adds and removes watches to match need, and reports
// whether it added any.
func (w *Watcher) armNeededLocked(need map[string]bool) bool {
	for d := range w.armed {
		if !need[d] {
			// The directory may already be gone, which removed the watch.
			_ = w.fsw.Remove(d)
			delete(w.armed, d)
		}
	}
	added := false
	for d := range need {
		if w.armed[d] {
			continue
		}
		if err := w.fsw.Add(d); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				w.log.Warn("cannot watch directory; polling still covers it", "path", d, "error", err)
			}
			continue
		}
		w.armed[d] = true
		added = true
	}
	return added
}

func (w *Watcher) isTargetLocked(p string) bool {
	for _, ts := range w.targets {
		for _, t := range ts {
			if t == p {
				return true
			}
		}
	}
	return false
}

// nearestExisting returns p or its closest ancestor that is an existing
// directory ("" if none, which only happens on a broken filesystem).
func nearestExisting(p string) string {
	for {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			return p
		}
		parent := filepath.Dir(p)
		if parent == p {
			return ""
		}
		p = parent
	}
}
