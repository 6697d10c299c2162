package sqlite

import "database/sql"

// ExecForTest runs one statement on the file outside the backend.
func ExecForTest(path, stmt string) error {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.Exec(stmt)
	return err
}

// MigrationsForTest exposes the schema history so a test can build an
// old-version database and upgrade it.
var MigrationsForTest = migrations
