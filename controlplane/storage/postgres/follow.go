package postgres

import (
	"context"

	"github.com/hashicorp/go-hclog"
)

// Notifier is what Follow wakes on other replicas' changes;
// *longpoll.Hub satisfies it.
type Notifier interface {
	Notify(accountID string)
	NotifyAll()
}

// Follow wakes n for every change committed by any replica on this
// database, until ctx ends. Run it next to the service on every replica:
// it is how a long-poll held on replica B learns of an activation made on
// replica A within milliseconds rather than at the next safety check. After
// a reconnect it wakes every waiter, since notifications are not queued
// for a disconnected listener.
func (b *Backend) Follow(ctx context.Context, n Notifier, log hclog.Logger) error {
	l := &Listener{
		OnChange:    func(c Change) { n.Notify(c.AccountID) },
		OnReconnect: n.NotifyAll,
		Logger:      log,
	}
	return l.Run(ctx, b)
}
