package storage

import (
	"context"
	"errors"
	"fmt"
)

// ErrSchemaTooNew means the database was migrated by a newer certplane.
var ErrSchemaTooNew = errors.New("schema too new")

// Schema is one database's schema history as Migrate sees it. Each backend
// keeps its own version table (SQLite's schema_version, PostgreSQL's
// schema_migrations) and its own way of serialising concurrent runs; the
// order, the once-only rule and the refusal of a newer schema are
// Migrate's.
type Schema interface {
	// Version returns the newest version recorded, 0 for a database
	// never migrated (creating the version table if it is missing).
	Version(ctx context.Context) (int, error)
	// Apply runs migration v's statements and records v, all or nothing.
	Apply(ctx context.Context, v int, statements string) error
}

// Migrate applies, in order and each once, the migrations db lacks.
// migrations[i] brings the schema to version i+1; a migration that has
// shipped is never edited, a new one is appended. A database whose version
// is past the last migration is refused with ErrSchemaTooNew.
func Migrate(ctx context.Context, db Schema, migrations []string) error {
	have, err := db.Version(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this certplane knows (%d), upgrade certplane: %w",
			have, len(migrations), ErrSchemaTooNew)
	}
	for v := have + 1; v <= len(migrations); v++ {
		if err := db.Apply(ctx, v, migrations[v-1]); err != nil {
			return fmt.Errorf("migration %d: %w", v, err)
		}
	}
	return nil
}
