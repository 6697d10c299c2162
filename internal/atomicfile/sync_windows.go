package atomicfile

// syncDir is a no-op: Windows cannot open a directory for FlushFileBuffers
// without backup semantics, and NTFS journals the rename itself.
func syncDir(string) error { return nil }
