package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
)

// Change is one committed change another (or this) replica announced.
type Change struct {
	AccountID string
	Revision  int64
}

// ParseChange parses a ChannelChanges payload "ACCOUNT_ID:REVISION".
func ParseChange(payload string) (Change, error) {
	id, rev, ok := strings.Cut(payload, ":")
	if !ok || id == "" {
		return Change{}, fmt.Errorf("storage/postgres: change payload %q: want ACCOUNT:REVISION", payload)
	}
	n, err := strconv.ParseInt(rev, 10, 64)
	if err != nil {
		return Change{}, fmt.Errorf("storage/postgres: change payload %q: revision: %w", payload, err)
	}
	return Change{AccountID: id, Revision: n}, nil
}

// Listener delivers every replica's change notifications.
type Listener struct {
	// OnChange is called for each notification, on the listener's
	// goroutine; it must not block.
	OnChange func(Change)
	// OnReconnect is called after the listening connection is (re)made,
	// since notifications sent while it was down are lost: wake every
	// waiter so each re-checks its revision. May be nil.
	OnReconnect func()
	// Logger may be nil.
	Logger hclog.Logger
	// MaxBackoff bounds the wait between reconnection attempts; zero
	// means 30 s.
	MaxBackoff time.Duration
}

// Run holds one dedicated connection (outside the pool, which stays whole
// for requests) LISTENing on ChannelChanges until ctx ends, reconnecting
// with backoff. It returns ctx's error.
func (l *Listener) Run(ctx context.Context, b *Backend) error {
	log := l.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	maxBackoff := l.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = 30 * time.Second
	}
	backoff := 100 * time.Millisecond
	for {
		connected, err := l.listenOnce(ctx, b)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if connected {
			backoff = 100 * time.Millisecond
		}
		log.Warn("change listener lost its connection", "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// listenOnce listens until the connection fails; connected reports
// whether it got as far as LISTEN.
func (l *Listener) listenOnce(ctx context.Context, b *Backend) (connected bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, b.pool.Config().ConnConfig.Copy())
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, `listen `+ChannelChanges); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	if l.OnReconnect != nil {
		l.OnReconnect()
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return true, err
			}
			return true, fmt.Errorf("wait for notification: %w", err)
		}
		ch, err := ParseChange(n.Payload)
		if err != nil {
			// Someone else NOTIFYing on our channel; not ours to act on.
			continue
		}
		if l.OnChange != nil {
			l.OnChange(ch)
		}
	}
}
