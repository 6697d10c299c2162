package agent

import "github.com/certagent/certagent/trust"

// What the configured stores are, as others outside a pass need it (the
// daemon's watcher, status): which paths each declares, which could not be
// opened. These read state under a.mu and change nothing.

// StoreWatchPaths returns, for every configured store, the paths the store
// declares (trust.PathDeclarer's Watch); a store that declares none (or
// could not be opened) maps to nil and is repaired by polling.
func (a *Agent) StoreWatchPaths() map[string][]string {
	a.mu.Lock()
	handles := append([]storeHandle(nil), a.stores...)
	a.mu.Unlock()
	out := make(map[string][]string, len(handles))
	for _, h := range handles {
		var paths []string
		if d, ok := h.store.(trust.PathDeclarer); ok && h.openErr == nil {
			paths = d.Paths().Watch
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
