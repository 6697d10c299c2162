package agent

// This file holds the small additions the daemon (agent/daemon) needs from
// the engine: which paths each store wants watched, and which stores could
// not be opened. They read state under a.mu and change nothing.

// watchPather is the optional interface of stores that can name the files
// and directories whose change may mean they drifted (see agent/watch).
type watchPather interface {
	WatchPaths() []string
}

// StoreWatchPaths returns, for every configured store, the paths the store
// itself asks to be watched; a store that does not say (or could not be
// opened) maps to nil and the daemon derives paths from its name.
func (a *Agent) StoreWatchPaths() map[string][]string {
	a.mu.Lock()
	handles := append([]storeHandle(nil), a.stores...)
	a.mu.Unlock()
	out := make(map[string][]string, len(handles))
	for _, h := range handles {
		var paths []string
		if w, ok := h.store.(watchPather); ok && h.store != nil {
			paths = w.WatchPaths()
		}
		out[h.name] = paths
	}
	return out
}

// StoreOpenErrors returns the configured stores that could not be opened,
// with why, for status.
func (a *Agent) StoreOpenErrors() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]string{}
	for _, h := range a.stores {
		if h.openErr != nil {
			out[h.name] = h.openErr.Error()
		}
	}
	return out
}
