package postgres

import (
	"context"

	"github.com/hashicorp/go-hclog"

	"github.com/certagent/certagent/controlplane/storage"
)

var _ storage.Follower = (*Backend)(nil)

// Follow implements storage.Follower: it delivers every change and
// revocation committed by any replica on this database to f, until ctx
// ends. Run it on every replica (controlplane.Service.Run does): it is how
// a long-poll held on replica B learns of an activation made on replica A
// within milliseconds, and how B stops accepting a token A revoked before
// A's revocation returns. While the listening connection is down, f is
// told its caches may be stale (Reset(false)); after a reconnect, that
// they may be used again (Reset(true)), since notifications are not
// queued for a disconnected listener.
func (b *Backend) Follow(ctx context.Context, f storage.Feed, log hclog.Logger) error {
	l := &Listener{
		OnChange:     func(c Change) { f.Changed(c.AccountID, c.Revision) },
		OnRevoke:     f.Revoked,
		OnReconnect:  func() { f.Reset(true) },
		OnDisconnect: func() { f.Reset(false) },
		Logger:       log,
	}
	return l.Run(ctx, b)
}
