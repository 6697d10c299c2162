package platform

// readManaged reads the macOS managed preferences plist. (Issue 6 fills this
// in; until then only an explicit ManagedFile is read.)
func readManaged(p Paths) (Managed, error) { return Managed{}, nil }
