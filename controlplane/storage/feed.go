package storage

import (
	"context"

	"github.com/hashicorp/go-hclog"
)

// Feed receives what a Follower learns about changes committed by other
// processes (other replicas, or the admin CLI on the same file). A server
// keeps token verifications, account revisions and list bodies in memory
// only while its feed is live, so that the common request touches no
// database and a revocation still holds from the next request on.
// Implementations must not block.
type Feed interface {
	// Changed reports that the account's revision became revision.
	Changed(accountID string, revision int64)
	// Revoked reports that the token with this id was revoked. It returns
	// once nothing cached in this process accepts the token any more.
	Revoked(tokenID string)
	// Reset drops everything cached from the database and wakes held
	// requests to look again; live reports whether the feed delivers every
	// change from now on (false: it may miss some, so nothing may be
	// served from memory until the next Reset(true)).
	Reset(live bool)
}

// Follower is an optional Backend extension: Follow delivers other
// processes' changes to f until ctx ends, calling f.Reset(true) once it
// hears every change and f.Reset(false) whenever it may miss some. It
// returns ctx's error.
type Follower interface {
	Follow(ctx context.Context, f Feed, log hclog.Logger) error
}

// Stamper is an optional Backend extension for a database that other
// processes write directly (SQLite: the admin CLI next to a running
// server). Stamp returns, without a query, a value that changes whenever
// any process commits; ok is false when it cannot tell. A server that
// keeps reads in memory checks it on every request that would use them
// and forgets them when it moved.
type Stamper interface {
	Stamp() (stamp uint64, ok bool)
}
