package atomicfile

import "os"

// closeBeforeRename is true: Windows does not rename a file that is open
// without FILE_SHARE_DELETE.
const closeBeforeRename = true

// syncDir is a no-op: Windows cannot open a directory for FlushFileBuffers
// without backup semantics, and NTFS journals the rename itself.
func syncDir(string) error { return nil }

// lockTemp does nothing: an open file cannot be deleted on Windows, which
// is the protection Sweep needs.
func lockTemp(*os.File) error { return nil }

// writeInProgress reports false; os.Remove fails on a file a writer holds
// open, and Sweep reports that failure.
func writeInProgress(string) (bool, error) { return false, nil }
