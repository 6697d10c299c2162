// Package storage holds certplane's persistent state behind one small
// interface, Backend, and the certificate lifecycle rules that must hold
// across every server replica sharing a database.
//
// A Backend supplies primitives and one locking transaction per account
// (Backend.Update). Rules runs them (3 generations per rolling 24 h,
// at most 10 available, at most 5 custom, exactly one or no certificate in
// use, delete only when inactive) inside that transaction, so two replicas
// racing on the same account are serialised by the database, not by a Go
// mutex. SQLite does it with BEGIN IMMEDIATE (one writer); PostgreSQL does it
// with SELECT … FOR UPDATE on the account row. Every backend must pass the
// conformance suite in storage/storagetest.
package storage

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/certagent/certagent/api"
)

// Sentinel errors. Backends return ErrNotFound and ErrExists; the rest come
// from Rules and each maps to one documented API error code.
var (
	ErrNotFound          = errors.New("storage: not found")
	ErrExists            = errors.New("storage: already exists")
	ErrDailyLimit        = errors.New("storage: daily generation limit reached")
	ErrAvailableLimit    = errors.New("storage: available certificate limit reached")
	ErrDeleteNotInactive = errors.New("storage: only an inactive certificate can be deleted")
	ErrDeactivateInUse   = errors.New("storage: the certificate in use cannot be deactivated")
	ErrUseNotAvailable   = errors.New("storage: only an available certificate can be turned on")
	ErrCustomLimit       = errors.New("storage: custom certificate limit reached")
	ErrDuplicate         = errors.New("storage: the account already has this certificate")
)

// DailyLimitError is the ErrDailyLimit refusal with the time the next
// generation is allowed (when the oldest generation of the window leaves it).
type DailyLimitError struct {
	Next time.Time
}

func (e *DailyLimitError) Error() string {
	return ErrDailyLimit.Error() + "; next allowed at " + e.Next.UTC().Format(time.RFC3339)
}

// Is makes errors.Is(err, ErrDailyLimit) hold.
func (e *DailyLimitError) Is(target error) bool { return target == ErrDailyLimit }

// Limits from the product documentation.
const (
	// GenerationsPerDay bounds generations per account in any rolling
	// GenerationWindow. The bootstrap certificate of a new account is not
	// counted: the admin did not ask for it.
	GenerationsPerDay = 3
	GenerationWindow  = 24 * time.Hour
	// MaxAvailable bounds certificates that are available or on their way
	// there (pending_deployment), so a finishing deployment never exceeds it.
	MaxAvailable = 10
	// MaxCustom bounds uploaded certificates per account, whatever their state.
	MaxCustom = 5
)

// Account is one tenant and its Gateway configuration.
type Account struct {
	ID        string
	Name      string
	CreatedAt time.Time
	// Revision increases with every committed change to the account's
	// certificates or configuration; the list ETag is derived from it.
	Revision int64
	// InUseID is the certificate turned on for inspection; "" means none.
	// Keeping it on the account row (not a flag per certificate) makes
	// "at most one in use" true by construction.
	InUseID string
	// ConfigCreatedAt and ConfigUpdatedAt are the configuration's times.
	ConfigCreatedAt time.Time
	ConfigUpdatedAt time.Time
	// Settings holds every settings collection other than "certificate" as
	// a JSON object, verbatim; nil means none.
	Settings json.RawMessage
}

// Certificate is one root CA of an account. The private key is not part of
// it: it is stored sealed and read only through Backend.SealedKey.
type Certificate struct {
	ID        string
	AccountID string
	// Type is api.TypeGatewayManaged or api.TypeCustom.
	Type   string
	Status api.BindingStatus
	// InUse is derived from Account.InUseID when read.
	InUse       bool
	DER         []byte
	Fingerprint string
	IssuerOrg   string
	IssuerRaw   string
	// Name is the upload's name for custom certificates, "" otherwise.
	Name       string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	UploadedOn time.Time
	ExpiresOn  time.Time
	// DueAt is when a pending status completes; zero unless pending.
	DueAt time.Time
}

// Token is an API token. Only the SHA-256 of its secret is stored.
type Token struct {
	// ID is the public part of the token, used to find the row.
	ID        string
	AccountID string
	// Hash is SHA-256 of the secret part.
	Hash      []byte
	Scope     string
	CreatedAt time.Time
	// RevokedAt is when the token was revoked; zero means it is live. A
	// revoked row is kept (not deleted) so an admin can see what was
	// killed and when, and so its id is never handed out again.
	RevokedAt time.Time
}

// Revoked reports whether the token has been revoked.
func (t Token) Revoked() bool { return !t.RevokedAt.IsZero() }

// Token scopes.
const (
	ScopeRead  = "read"
	ScopeWrite = "write"
	// ScopeDevice lists certificates and checks in, nothing else: what an
	// agent needs, and all a token copied off a laptop can do.
	ScopeDevice = "device"
)

// Transition is a pending status whose due time has come.
type Transition struct {
	AccountID string
	CertID    string
	From      api.BindingStatus
	To        api.BindingStatus
	DueAt     time.Time
}

// Backend is a database. Implementations must be safe for concurrent use by
// many goroutines and many processes sharing the database.
type Backend interface {
	// CreateAccount inserts a and runs fn in the same transaction.
	// ErrExists if the id is taken.
	CreateAccount(ctx context.Context, a Account, fn func(Tx) error) error
	// Account returns one account. ErrNotFound if unknown.
	Account(ctx context.Context, id string) (Account, error)
	// Revision returns the account's revision without reading anything
	// else. ErrNotFound if unknown.
	Revision(ctx context.Context, accountID string) (int64, error)
	// Snapshot returns the account and all its certificates (InUse set),
	// ordered by creation time then id, read in one consistent transaction.
	Snapshot(ctx context.Context, accountID string) (Account, []Certificate, error)
	// Certificate returns one certificate of the account (InUse set).
	Certificate(ctx context.Context, accountID, certID string) (Certificate, error)
	// SealedKey returns the sealed private key of a certificate.
	SealedKey(ctx context.Context, accountID, certID string) ([]byte, error)

	// CreateToken stores a token. ErrExists if its id is taken; ErrNotFound
	// if the account is unknown.
	CreateToken(ctx context.Context, t Token) error
	// Token returns a token by id, RevokedAt set if it was revoked.
	// ErrNotFound if unknown.
	Token(ctx context.Context, id string) (Token, error)
	// Tokens returns the account's tokens without their hashes, oldest
	// first (creation time, then id). ErrNotFound if the account is unknown.
	Tokens(ctx context.Context, accountID string) ([]Token, error)
	// RevokeToken marks the account's token id revoked at at and returns it
	// without its hash. Revoking a revoked token changes nothing (the first
	// revocation time stays). ErrNotFound if the account has no such token,
	// including when the id belongs to another account.
	RevokeToken(ctx context.Context, accountID, id string, at time.Time) (Token, error)

	// Update runs fn in a transaction that holds the account's write lock
	// until commit: no other Update or CompleteTransition on the same
	// account, in this process or another, interleaves with it. If fn made
	// a change, the account's revision is bumped in the same transaction.
	// fn's error rolls everything back and is returned unwrapped. Returns
	// the account's revision after commit. ErrNotFound if the account is
	// unknown.
	Update(ctx context.Context, accountID string, fn func(Tx) error) (int64, error)

	// DueTransitions returns up to limit pending certificates whose due
	// time is at or before now, oldest first.
	DueTransitions(ctx context.Context, now time.Time, limit int) ([]Transition, error)
	// CompleteTransition claims t with a conditional update (status and due
	// time unchanged since read), applies it and bumps the revision. It
	// reports whether this call did the work; false means another replica
	// did it or the certificate changed meanwhile.
	CompleteTransition(ctx context.Context, t Transition, now time.Time) (done bool, revision int64, err error)
	// NextDue returns the earliest due time of any pending certificate.
	NextDue(ctx context.Context) (time.Time, bool, error)
	// GenerationTimes returns the times of the account's generations at or
	// after since, oldest first, so the dashboard can say when the next one
	// is allowed. ErrNotFound if the account is unknown.
	GenerationTimes(ctx context.Context, accountID string, since time.Time) ([]time.Time, error)

	DeviceBackend
	// GatewayRegistry records the inspection gateways and what they loaded.
	GatewayRegistry

	Close() error
}

// Tx is the view of one account inside Backend.Update. It uses Update's
// context and must not be used after fn returns.
type Tx interface {
	// Account returns the locked account row as read at the start.
	Account() Account
	// Certificates returns the account's certificates as of now in the
	// transaction, InUse set.
	Certificates() ([]Certificate, error)
	// InsertCertificate adds c with its sealed key. ErrExists if the id is
	// taken.
	InsertCertificate(c Certificate, sealedKey []byte) error
	// SetStatus changes a certificate's status and due time.
	SetStatus(certID string, status api.BindingStatus, dueAt, updatedAt time.Time) error
	// DeleteCertificate removes a certificate and its key.
	DeleteCertificate(certID string) error
	// SetConfiguration sets the in-use certificate ("" for none) and the
	// other settings collections.
	SetConfiguration(inUseID string, settings json.RawMessage, updatedAt time.Time) error
	// Generations returns the times of the generations recorded at or
	// after since, oldest first.
	Generations(since time.Time) ([]time.Time, error)
	// RecordGeneration records one generation at the given time, and may
	// prune records older than GenerationWindow before it.
	RecordGeneration(at time.Time) error
}

// KeySampler is an optional Backend extension: it returns any one stored
// sealed key, so a server can prove at start that its seal key opens what
// the database holds (a wrong --data-dir would otherwise create a new key
// and silently split the keys between two). ok is false when no
// certificate exists.
type KeySampler interface {
	SampleSealedKey(ctx context.Context) (accountID, certID string, sealed []byte, ok bool, err error)
}

// Both backends store times as Unix nanoseconds in an integer column, with
// 0 for the zero time: exact round trips, and comparisons in SQL are
// integer comparisons.

// EncodeTime returns t as stored.
func EncodeTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// DecodeTime returns a stored time, in UTC.
func DecodeTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
