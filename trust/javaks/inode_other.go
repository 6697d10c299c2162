//go:build !unix

package javaks

import "os"

// inode is 0 where there are no inodes; size and mtime still key the cache.
func inode(os.FileInfo) uint64 { return 0 }
