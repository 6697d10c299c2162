package nstest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Debian's system store, as the tools see it.
const (
	UpdateCACertificates = "/usr/sbin/update-ca-certificates"
	DebianBundle         = "/etc/ssl/certs/ca-certificates.crt"
	DebianCertsDir       = "/etc/ssl/certs"
	DebianAnchorDir      = "/usr/local/share/ca-certificates"
	DebianConf           = "/etc/ca-certificates.conf"
)

var (
	minimalOnce sync.Once
	minimalErr  error // set once by minimalOnce
)

// MinimalDebianStore turns the namespace's Debian system store into a
// minimal one, once per process: ca-certificates.conf keeps a single
// distribution root, the admin anchor directory is emptied, every link in
// /etc/ssl/certs is dropped and update-ca-certificates rebuilds the store
// from that. A refresh then takes a fraction of a second instead of 5–15 s,
// and trust in a test's own CA does not depend on the other roots. It
// refuses to touch anything that is not a private nstest mount.
//
// Tests that need the full store must run before any test that calls this
// (sequential tests run before parallel ones; call it after t.Parallel).
func MinimalDebianStore(t testing.TB) {
	t.Helper()
	Require(t)
	Tool(t, UpdateCACertificates, "ca-certificates")
	minimalOnce.Do(func() { minimalErr = minimalDebianStore() })
	if minimalErr != nil {
		t.Fatalf("nstest: minimal Debian store: %v", minimalErr)
	}
}

func minimalDebianStore() error {
	for _, p := range []string{DebianConf, DebianCertsDir, DebianAnchorDir} {
		if !IsPrivate(p) {
			return fmt.Errorf("%s is not a private nstest mount; refusing to change it", p)
		}
	}
	conf, err := os.ReadFile(DebianConf)
	if err != nil {
		return err
	}
	var keep string
	sc := bufio.NewScanner(bytes.NewReader(conf))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l != "" && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "!") {
			keep = l
			break
		}
	}
	if keep == "" {
		return fmt.Errorf("%s lists no certificate", DebianConf)
	}
	if err := os.WriteFile(DebianConf, []byte(keep+"\n"), 0o644); err != nil {
		return err
	}
	if err := removeEntries(DebianAnchorDir, func(os.DirEntry) bool { return true }); err != nil {
		return err
	}
	if err := removeEntries(DebianCertsDir, func(e os.DirEntry) bool { return e.Type()&os.ModeSymlink != 0 }); err != nil {
		return err
	}
	cmd := exec.Command(UpdateCACertificates)
	cmd.Env = cleanEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", UpdateCACertificates, err, out)
	}
	n, err := CountPEM(DebianBundle)
	if err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("%s holds %d certificates after the rebuild, want 1", DebianBundle, n)
	}
	return nil
}

func removeEntries(dir string, match func(os.DirEntry) bool) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if match(e) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// CountPEM returns how many PEM CERTIFICATE blocks the file holds.
func CountPEM(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return bytes.Count(b, []byte("-----BEGIN CERTIFICATE-----")), nil
}
