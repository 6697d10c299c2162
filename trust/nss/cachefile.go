package nss

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"time"

	"github.com/certagent/certagent/internal/atomicfile"
	"github.com/certagent/certagent/internal/filestamp"
	"github.com/certagent/certagent/trust"
)

// cacheVersion is the CacheFile format; another version is ignored.
const cacheVersion = 1

// maxCacheFile bounds what is read back (20 users' databases of a few
// dozen roots are well under 1 MiB).
const maxCacheFile = 8 << 20

type cacheFile struct {
	Version int                    `json:"version"`
	DBs     map[string]cacheFileDB `json:"dbs"`
}

type cacheFileDB struct {
	Size    int64            `json:"size"`
	ModTime int64            `json:"mtime_ns"`
	Inode   uint64           `json:"inode"`
	Entries []cacheFileEntry `json:"entries"`
}

type cacheFileEntry struct {
	Nick   string `json:"nick"`
	DER    []byte `json:"der"`
	Ours   bool   `json:"ours,omitempty"`
	Shared bool   `json:"shared,omitempty"`
}

// loadCacheLocked reads CacheFile into the in-memory cache, once. A
// missing, unreadable, foreign-writable or malformed file is ignored: it
// only costs certutil runs. The caller holds s.mu.
func (s *Store) loadCacheLocked() {
	if s.cacheLoaded || s.cacheFile == "" {
		return
	}
	s.cacheLoaded = true
	st, err := os.Lstat(s.cacheFile)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Debug("listing cache unreadable", "file", s.cacheFile, "error", err)
		}
		return
	}
	// Only a file nobody else could have written decides what we believe a
	// database holds.
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o022 != 0 || st.Size() > maxCacheFile || !ownedByUs(st) {
		s.log.Warn("ignoring listing cache", "file", s.cacheFile, "reason", "not a private regular file of ours")
		return
	}
	b, err := os.ReadFile(s.cacheFile)
	if err != nil {
		return
	}
	var f cacheFile
	if err := json.Unmarshal(b, &f); err != nil || f.Version != cacheVersion {
		return
	}
	for dir, d := range f.DBs {
		if _, ok := s.cache[dir]; ok {
			continue
		}
		es := make([]nssEntry, 0, len(d.Entries))
		ok := true
		for _, e := range d.Entries {
			c, err := trust.ParseDER(e.DER)
			if err != nil || (e.Ours && e.Nick != nickname(c.FP)) {
				ok = false
				break
			}
			es = append(es, nssEntry{nick: e.Nick, cert: c, ours: e.Ours, shared: e.Shared})
		}
		if ok {
			s.cache[dir] = cached{key: filestamp.Stamp{Size: d.Size, ModTime: time.Unix(0, d.ModTime), Inode: d.Inode}, entries: es}
		}
	}
}

// saveCacheLocked writes the in-memory cache to CacheFile (atomically,
// 0600). It runs only after certutil listed a database, never on a quiet
// pass. The caller holds s.mu.
func (s *Store) saveCacheLocked() {
	if s.cacheFile == "" {
		return
	}
	f := cacheFile{Version: cacheVersion, DBs: make(map[string]cacheFileDB, len(s.cache))}
	for dir, c := range s.cache {
		d := cacheFileDB{Size: c.key.Size, ModTime: c.key.ModTime.UnixNano(), Inode: c.key.Inode, Entries: make([]cacheFileEntry, 0, len(c.entries))}
		for _, e := range c.entries {
			d.Entries = append(d.Entries, cacheFileEntry{Nick: e.nick, DER: e.cert.X509.Raw, Ours: e.ours, Shared: e.shared})
		}
		f.DBs[dir] = d
	}
	b, err := json.Marshal(f)
	if err != nil {
		return
	}
	if err := atomicfile.Write(s.cacheFile, b, 0o600); err != nil {
		s.log.Debug("cannot write listing cache", "file", s.cacheFile, "error", err)
	}
}
