package sqlite

import (
	"context"
	"hash/fnv"
	"os"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/controlplane/storage"
)

var (
	_ storage.Follower = (*DB)(nil)
	_ storage.Stamper  = (*DB)(nil)
)

// walHeaderSize is the first copy of the WAL-index header at the start of
// the -shm file (https://sqlite.org/walformat.html#the_wal_index_file_format):
// its change counter (iChange), frame count, salts and checksums move
// with every commit, by any process, and with nothing else.
const walHeaderSize = 48

// Stamp implements storage.Stamper: it reads the WAL-index header (one
// pread of 48 bytes from the -shm file SQLite keeps in the page cache, no
// SQL and no lock), so a server can tell on every request whether another
// process (the admin CLI revoking a token) committed since it last looked.
func (d *DB) Stamp() (uint64, bool) {
	if d.shm == nil {
		return 0, false
	}
	var b [walHeaderSize]byte
	if n, err := d.shm.ReadAt(b[:], 0); err != nil || n != len(b) {
		return 0, false
	}
	h := fnv.New64a()
	h.Write(b[:])
	return h.Sum64(), true
}

// openShm opens the -shm file for Stamp; the database must be open in WAL
// mode. Without it, Stamp reports false and nothing is served from memory.
func (d *DB) openShm(path string) {
	f, err := os.Open(path + "-shm")
	if err != nil {
		return
	}
	d.shm = f
}

// Follow implements storage.Follower. This process's own writes reach the
// server directly (storage.Options.OnChange) and other processes' writes
// are caught by Stamp on each request, so the feed is live as long as
// Stamp works; the long-poll hub's periodic check finds other processes'
// changes for held requests.
func (d *DB) Follow(ctx context.Context, f storage.Feed, _ hclog.Logger) error {
	_, ok := d.Stamp()
	f.Reset(ok)
	<-ctx.Done()
	f.Reset(false)
	return ctx.Err()
}
