package javaks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
)

// fakeKeytool replays keytool's observable behaviour (recorded from
// OpenJDK 17's keytool: the -list -v layout, "already exists" and "does not
// exist" errors with exit 1, stdin import without -file, -storepass:env) on
// a keystore file of its own format (alias, a tab, PEM, per entry), so the
// conformance suite runs without starting a JVM per call. File writes change
// the file's stat exactly as keytool's rewrite does.
type fakeKeytool struct {
	mu sync.Mutex
}

func (f *fakeKeytool) Run(_ context.Context, c platform.Cmd) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	arg := func(name string) string {
		for i, a := range c.Args {
			if a == name && i+1 < len(c.Args) {
				return c.Args[i+1]
			}
		}
		return ""
	}
	fail := func(msg string) ([]byte, error) {
		out := []byte("keytool error: java.lang.Exception: " + msg + "\n")
		return out, &platform.CmdError{Cmd: c, ExitCode: 1, Output: out, Err: errors.New("exit status 1")}
	}
	env := arg("-storepass:env")
	if !strings.Contains(strings.Join(c.Env, "\n"), env+"=changeit") {
		return fail("Keystore was tampered with, or password was incorrect")
	}
	path := arg("-keystore")
	entries, err := readFake(path)
	if err != nil && !os.IsNotExist(err) {
		return fail(err.Error())
	}
	switch c.Args[0] {
	case "-list":
		var b bytes.Buffer
		fmt.Fprintf(&b, "Keystore type: PKCS12\nKeystore provider: SUN\n\nYour keystore contains %d entries\n\n", len(entries))
		for _, e := range entries {
			fmt.Fprintf(&b, "Alias name: %s\nCreation date: Nov 29, 2026\nEntry type: trustedCertEntry\n\nOwner: %s\nIssuer: %s\n"+
				"Certificate fingerprints:\n\t SHA1: 00\n\t SHA256: %s\nSignature algorithm name: SHA256withECDSA\n\n\n"+
				"*******************************************\n*******************************************\n\n\n",
				e.alias, e.cert.X509.Subject, e.cert.X509.Issuer, e.cert.FP)
		}
		return b.Bytes(), nil
	case "-importcert":
		alias := strings.ToLower(arg("-alias"))
		for _, e := range entries {
			if e.alias == alias {
				return fail("Certificate not imported, alias <" + alias + "> already exists")
			}
		}
		cert, err := trust.ParseOnePEM(c.Stdin)
		if err != nil {
			return fail("Input not an X.509 certificate")
		}
		entries = append(entries, fakeEntry{alias, cert})
		return []byte("Certificate was added to keystore\n"), writeFake(path, entries)
	case "-delete":
		alias := strings.ToLower(arg("-alias"))
		for i, e := range entries {
			if e.alias == alias {
				entries = append(entries[:i], entries[i+1:]...)
				return nil, writeFake(path, entries)
			}
		}
		return fail("Alias <" + alias + "> does not exist")
	}
	return fail("unknown command " + c.Args[0])
}

type fakeEntry struct {
	alias string
	cert  *trust.Cert
}

func readFake(path string) ([]fakeEntry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []fakeEntry
	for _, rec := range strings.Split(string(b), "\x00") {
		alias, pemText, ok := strings.Cut(rec, "\t")
		if !ok {
			continue
		}
		c, err := trust.ParseOnePEM([]byte(pemText))
		if err != nil {
			return nil, err
		}
		out = append(out, fakeEntry{alias, c})
	}
	return out, nil
}

func writeFake(path string, es []fakeEntry) error {
	var b strings.Builder
	for _, e := range es {
		b.WriteString(e.alias + "\t" + string(e.cert.PEM()) + "\x00")
	}
	// In place, as keytool does: same inode, new size and mtime.
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
