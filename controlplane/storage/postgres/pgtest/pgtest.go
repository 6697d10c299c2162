// Package pgtest gives tests a private PostgreSQL schema on the database
// named by CERTAGENT_PG_DSN (scripts/pg-start.sh prints one).
//
// Without that variable the calling test is skipped with a message, or
// fails when CERTAGENT_E2E=1, where every backend must really be tested.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certagent/certagent/internal/testenv"
)

// EnvDSN names the variable holding the test database's DSN.
const EnvDSN = "CERTAGENT_PG_DSN"

// DSN returns a DSN for a fresh, empty schema that is dropped when the test
// ends. Every connection opened with it uses that schema only, so tests
// running in parallel (or in other packages) never see each other's rows.
func DSN(t testing.TB) string {
	t.Helper()
	base := testenv.RequireEnv(t, EnvDSN, "run `export "+EnvDSN+"=$(scripts/pg-start.sh)` (as root) to test the PostgreSQL backend")
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	schema := "t_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v", EnvDSN, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `create schema `+schema); err != nil {
		t.Fatalf("pgtest: create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("pgtest: drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `drop schema `+schema+` cascade`); err != nil {
			t.Errorf("pgtest: drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("pgtest: %s is not a URL: %v", EnvDSN, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
