// Package buildinfo carries the version stamped into both binaries.
package buildinfo

// Version is set at link time with -X; "dev" for plain go builds.
var Version = "dev"
