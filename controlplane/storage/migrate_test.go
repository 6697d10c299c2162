package storage_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/certagent/certagent/controlplane/storage"
)

// memSchema records what Migrate asked of it.
type memSchema struct {
	version int
	applied []string
	failAt  int // the version whose Apply fails; 0 means none
}

func (m *memSchema) Version(context.Context) (int, error) { return m.version, nil }

func (m *memSchema) Apply(_ context.Context, v int, statements string) error {
	if v == m.failAt {
		return errors.New("syntax error")
	}
	if v != m.version+1 {
		return fmt.Errorf("applied %d after %d", v, m.version)
	}
	m.applied = append(m.applied, statements)
	m.version = v
	return nil
}

func TestMigrate(t *testing.T) {
	migrations := []string{"one", "two", "three"}
	tests := []struct {
		name        string
		have        int
		failAt      int
		wantApplied []string
		wantVersion int
		wantErr     error
		wantMsg     string
	}{
		{name: "fresh", have: 0, wantApplied: []string{"one", "two", "three"}, wantVersion: 3},
		{name: "partly migrated", have: 1, wantApplied: []string{"two", "three"}, wantVersion: 3},
		{name: "up to date", have: 3, wantVersion: 3},
		{name: "newer", have: 4, wantVersion: 4, wantErr: storage.ErrSchemaTooNew, wantMsg: "schema version 4 is newer than this certplane knows (3)"},
		{name: "a failure stops the run", have: 0, failAt: 2, wantApplied: []string{"one"}, wantVersion: 1, wantMsg: "migration 2: syntax error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := &memSchema{version: tt.have, failAt: tt.failAt}
			err := storage.Migrate(context.Background(), db, migrations)
			if tt.wantMsg == "" && err != nil {
				t.Fatalf("Migrate: %v", err)
			}
			if tt.wantMsg != "" && (err == nil || !strings.Contains(err.Error(), tt.wantMsg)) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantMsg)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("got error %v, want errors.Is %v", err, tt.wantErr)
			}
			if fmt.Sprint(db.applied) != fmt.Sprint(tt.wantApplied) {
				t.Errorf("applied: got %v, want %v", db.applied, tt.wantApplied)
			}
			if db.version != tt.wantVersion {
				t.Errorf("version: got %d, want %d", db.version, tt.wantVersion)
			}
		})
	}
}
