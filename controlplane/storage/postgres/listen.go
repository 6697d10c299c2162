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

// revokePrefix starts a revocation's payload on ChannelChanges:
// "revoke:TOKEN_ID:NONCE". An account id is 32 hex digits, so it never
// starts this way, and older listeners skip it as unparseable.
const revokePrefix = "revoke:"

// ChannelAcks carries each listener's acknowledgement of a revocation:
// the payload is the revocation's nonce, sent once the listener's process
// no longer accepts the token from memory (RevokeToken waits for them).
const ChannelAcks = "certplane_acks"

// parseRevoke parses a revocation payload.
func parseRevoke(payload string) (tokenID, nonce string, ok bool) {
	rest, ok := strings.CutPrefix(payload, revokePrefix)
	if !ok {
		return "", "", false
	}
	tokenID, nonce, ok = strings.Cut(rest, ":")
	return tokenID, nonce, ok && tokenID != "" && nonce != "" && !strings.Contains(nonce, ":")
}

// Listener delivers every replica's change notifications.
type Listener struct {
	// OnChange is called for each notification, on the listener's
	// goroutine; it must not block.
	OnChange func(Change)
	// OnRevoke is called for each revocation on the listener's goroutine;
	// when it returns, the listener acknowledges the revocation to the
	// replica that made it. May be nil (nothing is cached: the listener
	// still acknowledges, since RevokeToken counts it).
	OnRevoke func(tokenID string)
	// OnReconnect is called after the listening connection is (re)made,
	// since notifications sent while it was down are lost: wake every
	// waiter so each re-checks its revision. May be nil.
	OnReconnect func()
	// OnDisconnect is called when the listening connection is lost (or
	// could not be made), before the wait to reconnect: from then on
	// changes may be missed. May be nil.
	OnDisconnect func()
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
		if l.OnDisconnect != nil {
			l.OnDisconnect()
		}
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
	cfg := b.pool.Config().ConnConfig.Copy()
	// RevokeToken counts the listeners by this name to know how many
	// acknowledgements to wait for.
	cfg.RuntimeParams["application_name"] = b.listenerName
	conn, err := pgx.ConnectConfig(ctx, cfg)
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
		if tokenID, nonce, ok := parseRevoke(n.Payload); ok {
			// RevokeToken counts every listener, so every one answers,
			// including one with nothing cached (a gateway's): otherwise
			// each revocation would wait out AckTimeout.
			if l.OnRevoke != nil {
				l.OnRevoke(tokenID)
			}
			if _, err := conn.Exec(ctx, `select pg_notify($1, $2)`, ChannelAcks, nonce); err != nil {
				return true, fmt.Errorf("acknowledge revocation: %w", err)
			}
			continue
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
