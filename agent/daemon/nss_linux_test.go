package daemon

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/internal/testenv"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/nss"
	"github.com/certagent/certagent/trust/trusttest"
)

// TestDaemonRepairsNSSEntry runs the daemon with the real nss store over a
// user whose home is a temp directory, deletes the root from the user's
// NSS database with certutil behind the daemon's back, and waits for the
// watch to bring it back (the poll interval is an hour).
func TestDaemonRepairsNSSEntry(t *testing.T) {
	skip := func(why string) {
		t.Helper()
		testenv.Skipf(t, "%s", why)
	}
	if os.Getuid() != 0 {
		skip("needs root: certutil runs as the database owner")
	}
	certutil, err := exec.LookPath("certutil")
	if err != nil {
		skip("needs certutil (libnss3-tools)")
	}
	home := t.TempDir()
	db := filepath.Join(home, ".pki", "nssdb")
	require.NoError(t, os.MkdirAll(db, 0o700))
	out, err := exec.Command(certutil, "-N", "--empty-password", "-d", "sql:"+db).CombinedOutput()
	require.NoError(t, err, "certutil -N: %s", out)
	me := platform.User{Name: "root", UID: 0, GID: 0, Home: home, Shell: "/bin/sh"}
	users := func() ([]platform.User, error) { return []platform.User{me}, nil }
	store := nss.New(nss.Options{Users: users, SystemDB: "-"})

	ca := trusttest.NewCA(t, trusttest.WithCommonName("NSS Drift Root"))
	cp := newFakeCP(t, ca)
	root := t.TempDir()
	e := &env{cfgPath: filepath.Join(root, "config.json"), state: filepath.Join(root, "state"), cp: cp}
	writeConfig(t, e, "nss")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	logs := &syncBuffer{}
	go func() {
		done <- Run(ctx, Options{
			Paths:    platform.Paths{ConfigFile: e.cfgPath, StateDir: e.state, Socket: filepath.Join(root, "s.sock")},
			Logger:   NewLogger(LogOptions{Output: logs, Level: "debug"}),
			Deps:     agent.Deps{OpenStore: func(spec string) (trust.Store, error) { return store, nil }},
			Debounce: 100 * time.Millisecond,
			Ready:    func() { close(ready) },
		})
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	<-ready

	has := func() bool {
		ok, err := trust.Contains(context.Background(), store, ca.FP)
		return err == nil && ok
	}
	eventually(t, "the root in the user's NSS database", has)

	nick := "certagent " + ca.FP.Hex()
	out, err = exec.Command(certutil, "-D", "-d", "sql:"+db, "-n", nick).CombinedOutput()
	require.NoError(t, err, "certutil -D: %s", out)
	require.False(t, has(), "the root is gone after certutil -D")
	eventually(t, "the deleted NSS entry to come back", has)
}
