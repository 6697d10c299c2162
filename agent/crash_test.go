package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

var errCrash = errors.New("injected crash")

// crashingStore applies the first n changes of a batch and then panics, as
// a process killed in the middle of a store's batch would.
type crashingStore struct {
	*trusttest.Fake
	after int
}

type crashPanic struct{}

func (s *crashingStore) Apply(ctx context.Context, changes []trust.Change) []trust.Result {
	if s.after >= 0 && s.after < len(changes) {
		s.Fake.Apply(ctx, changes[:s.after])
		panic(crashPanic{})
	}
	return s.Fake.Apply(ctx, changes)
}

// TestCrashBetweenEveryStep interrupts a pass that both installs and
// removes at every step of apply (and in the middle of a store's batch),
// then lets a freshly started agent run, and checks that the stores and the
// ledger are exactly right and nothing was installed twice.
func TestCrashBetweenEveryStep(t *testing.T) {
	points := []string{"intent", "apply:one", "apply:multi", "commit", "mid-batch:one", "mid-batch:multi", "none"}
	for _, point := range points {
		t.Run(point, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			cas := trusttest.NewCAs(t, 5)
			names := map[trust.Fingerprint]string{}
			for i, l := range []string{"A", "B", "C", "D", "F"} {
				names[cas[i].FP] = l
			}
			idA := r.plane.add(cas[0], api.StatusAvailable)
			idB := r.plane.add(cas[1], api.StatusAvailable)
			_ = idA
			r.fake("one").Plant(t0, cas[4].Cert) // foreign
			r.sync(r.agent())
			require.Equal(t, []string{"multi alice A", "multi alice B", "multi bob A", "multi bob B", "one - A", "one - B", "one - F"}, r.holdings(names))

			// The next answer: B withdrawn, C and D new.
			r.plane.setStatus(idB, api.StatusPendingDeletion)
			r.plane.add(cas[2], api.StatusAvailable)
			r.plane.add(cas[3], api.StatusAvailable)

			before := map[string]int{}
			countInstalls(r, before)

			// The crashing pass.
			crashed := false
			switch {
			case point == "none":
			case len(point) > 10 && point[:10] == "mid-batch:":
				name := point[10:]
				r.stores[name] = &crashingStore{Fake: r.fake(name), after: 1}
				func() {
					defer func() {
						if p := recover(); p != nil {
							if _, ok := p.(crashPanic); !ok {
								panic(p)
							}
							crashed = true
						}
					}()
					r.sync(r.agent())
				}()
				r.stores[name] = r.stores[name].(*crashingStore).Fake
			default:
				r.hook = func(step string) error {
					if step == point {
						return fmt.Errorf("%w at %s", errCrash, step)
					}
					return nil
				}
				_, err := r.agent().SyncOnce(context.Background(), false)
				require.ErrorIs(t, err, errCrash)
				crashed = true
				r.hook = nil
			}
			assert.Equal(t, point != "none", crashed, "the crash happened")

			// The restarted agent completes the job.
			rep := r.sync(r.agent())
			assert.False(t, rep.Failed())
			want := []string{
				"multi alice A", "multi alice C", "multi alice D",
				"multi bob A", "multi bob C", "multi bob D",
				"one - A", "one - C", "one - D", "one - F",
			}
			assert.Equal(t, want, r.holdings(names), "stores after recovery")
			assert.Equal(t, []string{
				"multi alice A=installed", "multi alice C=installed", "multi alice D=installed",
				"multi bob A=installed", "multi bob C=installed", "multi bob D=installed",
				"one - A=installed", "one - C=installed", "one - D=installed",
			}, ledgerStates(r.ledger(), names), "ledger after recovery")
			assert.Len(t, r.ledger().Certs, 3, "ledger keeps exactly the certificates it refers to")

			// No root was installed twice into the same target.
			after := map[string]int{}
			countInstalls(r, after)
			for k, n := range after {
				if n-before[k] > 1 {
					t.Errorf("%s installed %d times across the crash", k, n-before[k])
				}
			}

			// And now it is quiet.
			applies := r.applies()
			rep = r.sync(r.agent())
			assert.Equal(t, 0, rep.Changes)
			assert.False(t, rep.LedgerWritten)
			assert.Equal(t, applies, r.applies())
		})
	}
}

// countInstalls adds, per store/target/fingerprint, how many times an
// install reached the fakes.
func countInstalls(r *rig, into map[string]int) {
	for name, s := range r.stores {
		f, ok := s.(*trusttest.Fake)
		if !ok {
			continue
		}
		for _, batch := range f.History() {
			for _, c := range batch {
				if c.Op == trust.OpInstall {
					into[fmt.Sprintf("%s %s %s", name, c.Target, c.FP.Short())]++
				}
			}
		}
	}
}

type fileID struct {
	info  os.FileInfo
	mtime time.Time
	size  int64
}

// snapshotFiles records identity (inode, via os.SameFile), mtime and size of
// every file under dirs.
func snapshotFiles(t *testing.T, dirs ...string) map[string]fileID {
	t.Helper()
	out := map[string]fileID{}
	for _, d := range dirs {
		err := filepath.Walk(d, func(p string, info os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			out[p] = fileID{info: info, mtime: info.ModTime(), size: info.Size()}
			return nil
		})
		require.NoError(t, err)
	}
	return out
}

// sameFiles reports, per path, what differs between two snapshots.
func sameFiles(before, after map[string]fileID) []string {
	var diffs []string
	for p, b := range before {
		a, ok := after[p]
		switch {
		case !ok:
			diffs = append(diffs, p+": removed")
		case !os.SameFile(a.info, b.info):
			diffs = append(diffs, p+": replaced (new inode)")
		case !a.mtime.Equal(b.mtime) || a.size != b.size:
			diffs = append(diffs, p+": modified")
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			diffs = append(diffs, p+": created")
		}
	}
	sortStrings(diffs)
	return diffs
}

// TestNoChangePassWritesNothing: once converged, a pass (same agent, and a
// restarted one; a 304 and a full answer) writes no file, not even the
// ledger or the status file, and calls no Apply.
func TestNoChangePassWritesNothing(t *testing.T) {
	r := newRig(t)
	dirPath := filepath.Join(t.TempDir(), "anchors")
	spec := "dir:" + dirPath
	r.cfg.Stores = []string{"one", "multi", spec}
	r.plane.add(trusttest.NewCA(t), api.StatusAvailable)
	r.plane.add(trusttest.NewCA(t), api.StatusActive)
	a := r.agent()
	first := r.sync(a)
	require.Equal(t, 8, first.Changes)
	before := snapshotFiles(t, r.cfg.StateDir, dirPath)
	require.Len(t, before, 8, "state dir, ledger, status, lock, device id, anchors dir and two roots: %v", before)
	applies := r.applies()

	for i, ag := range []*Agent{a, a, r.agent()} {
		rep := r.sync(ag)
		assert.Equal(t, 0, rep.Changes, "pass %d", i)
		assert.False(t, rep.LedgerWritten, "pass %d", i)
		assert.Equal(t, applies, r.applies(), "pass %d called Apply", i)
		assert.Empty(t, sameFiles(before, snapshotFiles(t, r.cfg.StateDir, dirPath)), "pass %d wrote a file", i)
		if i == 0 {
			assert.Equal(t, "not_modified", rep.Fetch.Status, "the second poll used If-None-Match")
		}
		if i == 2 {
			assert.Equal(t, "ok", rep.Fetch.Status, "a restarted agent has no ETag")
		}
	}
}

// TestConcurrentProcessesDoNotDuplicate runs two agents on one state dir
// (a daemon and a `certagent sync`) so that both plan the same installs;
// the state lock and the re-plan under it make the second one a no-op.
func TestConcurrentProcessesDoNotDuplicate(t *testing.T) {
	r := newRig(t)
	r.plane.add(trusttest.NewCA(t), api.StatusAvailable)
	r.plane.add(trusttest.NewCA(t), api.StatusAvailable)
	firstHolds := make(chan struct{})
	secondPlanned := make(chan struct{})
	first, err := New(r.cfg, Deps{OpenStore: r.open, hook: func(step string) error {
		if step == "intent" { // holding the lock
			close(firstHolds)
			<-secondPlanned
		}
		return nil
	}})
	require.NoError(t, err)
	second, err := New(r.cfg, Deps{OpenStore: r.open, hook: func(step string) error {
		if step == "lock" { // planned, about to wait for the lock
			close(secondPlanned)
		}
		return nil
	}})
	require.NoError(t, err)

	done := make(chan *PassReport)
	go func() {
		rep, err := first.SyncOnce(context.Background(), false)
		assert.NoError(t, err)
		done <- rep
	}()
	<-firstHolds
	rep2, err := second.SyncOnce(context.Background(), false)
	require.NoError(t, err)
	rep1 := <-done
	assert.Equal(t, 6, rep1.Changes)
	assert.Equal(t, 0, rep2.Changes, "the second process re-planned under the lock")
	counts := map[string]int{}
	countInstalls(r, counts)
	for k, n := range counts {
		assert.Equal(t, 1, n, "%s installed %d times", k, n)
	}
	assert.Len(t, r.ledger().Entries, 6)
}
