package daemon

import "os"

// hangups never fires on Windows, which has no SIGHUP; the config watch
// covers reloads.
func hangups() <-chan os.Signal { return nil }
