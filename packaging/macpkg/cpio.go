package macpkg

import (
	"compress/gzip"
	"fmt"
	"io"
	"time"
)

// Entry is one file or directory of a payload. The same list feeds the
// cpio archive and the BOM, so they cannot disagree.
type Entry struct {
	// Path is relative to the install root, "./"-prefixed as pkgbuild
	// writes it ("." for the root itself).
	Path string
	// Mode holds the permission bits; Dir says whether it is a directory.
	Mode uint32
	Dir  bool
	// UID and GID own the file (0 = root, 0 = wheel, 80 = admin).
	UID, GID uint32
	// Data is a regular file's contents.
	Data []byte
	// Archs lists the Mach-O slices when Data is a universal binary, for
	// the BOM's per-architecture statistics.
	Archs []Slice
}

// S_IFDIR and S_IFREG in the classic Unix encoding, as cpio and the BOM
// store them.
const (
	modeDir  = 0o040000
	modeFile = 0o100000
)

func (e Entry) fullMode() uint32 {
	if e.Dir {
		return modeDir | e.Mode&0o7777
	}
	return modeFile | e.Mode&0o7777
}

// writeCpio writes entries as a gzip-compressed "odc" (POSIX.1 portable
// ASCII) cpio archive: the format pkgbuild uses for Payload and Scripts.
// Every header carries mtime, and the gzip header carries mtime and no
// name, so the output depends only on its input.
func writeCpio(w io.Writer, entries []Entry, mtime time.Time) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("macpkg: cpio: %w", err)
	}
	zw.ModTime = mtime
	for i, e := range entries {
		if err := writeCpioEntry(zw, uint32(i+1), e.fullMode(), e.UID, e.GID, mtime, e.Path, e.Data); err != nil {
			return err
		}
	}
	if err := writeCpioEntry(zw, 0, 0, 0, 0, time.Unix(0, 0), "TRAILER!!!", nil); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("macpkg: cpio: %w", err)
	}
	return nil
}

// maxOctal6 and maxOctal11 are the largest values the odc header's 6- and
// 11-digit octal fields hold.
const (
	maxOctal6  = 0o777777
	maxOctal11 = 0o77777777777
)

func writeCpioEntry(w io.Writer, ino, mode, uid, gid uint32, mtime time.Time, name string, data []byte) error {
	nameSize := len(name) + 1
	if nameSize > maxOctal6 || len(data) > maxOctal11 || ino > maxOctal6 {
		return fmt.Errorf("macpkg: cpio: %s: too large for the odc format", name)
	}
	nlink := 1
	if mode&modeDir != 0 {
		nlink = 2
	}
	// magic dev ino mode uid gid nlink rdev mtime namesize filesize
	hdr := fmt.Sprintf("070707%06o%06o%06o%06o%06o%06o%06o%011o%06o%011o",
		0, ino, mode, uid, gid, nlink, 0, mtime.Unix(), nameSize, len(data))
	if _, err := io.WriteString(w, hdr+name+"\x00"); err != nil {
		return fmt.Errorf("macpkg: cpio: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("macpkg: cpio: %w", err)
	}
	return nil
}
