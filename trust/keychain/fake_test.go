package keychain

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"howett.net/plist"

	"github.com/certagent/certagent/platform"
)

// fakeSecurity models /usr/bin/security acting on one keychain and the admin
// trust-settings domain, with the outputs and exit codes of Apple's
// SecurityTool sources:
//
//   - find-certificate -a -Z -p prints "SHA-256 hash:", "SHA-1 hash:" and a
//     PEM block per certificate; an empty keychain prints nothing (exit 0),
//     or, with emptyNotFound, "security: SecKeychainSearchCopyNext: The
//     specified item could not be found in the keychain." (exit 44, the low
//     byte of errSecItemNotFound).
//   - the keychain keys certificates by issuer and serial number: adding a
//     certificate whose issuer and serial are present is errSecDuplicateItem,
//     which add-trusted-cert ignores and add-certificates reports as
//     "FILE: already in KEYCHAIN" (exit 1).
//   - add-trusted-cert adds to the keychain first, then sets trust; with
//     denyTrust (macOS ≥ 11, no user) the second step fails with
//     "SecTrustSettingsSetTrustSettings: The authorization was denied since
//     no user interaction was possible." (exit 1) and the certificate stays.
//   - remove-trusted-cert without settings: "SecTrustSettingsRemoveTrustSettings:
//     No Trust Settings were found." (exit 1).
//   - delete-certificate -Z of an absent hash: "Unable to delete certificate
//     matching "HASH"" (exit 1).
//   - trust-settings-export writes the Admin.plist format (trustList keyed by
//     SHA-1; -r trustRoot stores no kSecTrustSettingsResult).
//   - verify-cert succeeds when admin or profile trust covers the root.
type fakeSecurity struct {
	path, keychain string

	mu    sync.Mutex
	certs []*x509.Certificate
	// admin holds admin-domain trust settings by SHA-1; a false value is an
	// explicit Deny.
	admin map[[20]byte]bool
	// profile holds trust delivered by a configuration profile.
	profile map[[20]byte]bool
	// denyTrust refuses trust-settings changes (a root daemon on macOS ≥ 11).
	denyTrust bool
	// emptyNotFound makes an empty listing fail with errSecItemNotFound.
	emptyNotFound bool
	// lieSHA256 makes find-certificate print a wrong SHA-256 hash.
	lieSHA256 bool
	// calls are the subcommands run, in order.
	calls []string
	// argv are the full command lines run.
	argv [][]string
}

func newFakeSecurity(dir string) *fakeSecurity {
	return &fakeSecurity{
		path:     dir + "/usr/bin/security",
		keychain: dir + "/Library/Keychains/System.keychain",
		admin:    map[[20]byte]bool{},
		profile:  map[[20]byte]bool{},
	}
}

func (f *fakeSecurity) has(der []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.certs {
		if bytes.Equal(c.Raw, der) {
			return true
		}
	}
	return false
}

func (f *fakeSecurity) hasAdminTrust(der []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.admin[sha1.Sum(der)]
	return ok
}

// plant adds a certificate as another admin would have before macOS 11:
// into the keychain, with admin trust.
func (f *fakeSecurity) plant(c *x509.Certificate, trusted bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.certs = append(f.certs, c)
	if trusted {
		f.admin[sha1.Sum(c.Raw)] = true
	}
}

func (f *fakeSecurity) ran(sub string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == sub {
			n++
		}
	}
	return n
}

func (f *fakeSecurity) mutations() int {
	return f.ran("add-trusted-cert") + f.ran("add-certificates") + f.ran("remove-trusted-cert") + f.ran("delete-certificate")
}

// Run implements platform.Runner.
func (f *fakeSecurity) Run(ctx context.Context, cmd platform.Cmd) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fail := func(code int, format string, args ...any) ([]byte, error) {
		out := []byte(fmt.Sprintf(format, args...))
		return out, &platform.CmdError{Cmd: cmd, ExitCode: code, Output: out, Err: fmt.Errorf("exit status %d", code)}
	}
	if cmd.Path != f.path {
		return nil, &platform.CmdError{Cmd: cmd, ExitCode: -1, Err: errors.New("fork/exec " + cmd.Path + ": no such file or directory")}
	}
	if len(cmd.Args) == 0 {
		return fail(2, "usage: security ...\n")
	}
	f.calls = append(f.calls, cmd.Args[0])
	f.argv = append(f.argv, append([]string(nil), cmd.Args...))
	flags, rest, err := getopt(cmd.Args[0], cmd.Args[1:])
	if err != nil {
		return fail(2, "%v\n", err)
	}
	switch cmd.Args[0] {
	case "find-certificate":
		if len(rest) != 1 || rest[0] != f.keychain {
			return fail(50, "security: SecKeychainSearchCreateFromAttributes: The specified keychain could not be found.\n")
		}
		if len(f.certs) == 0 && f.emptyNotFound {
			return fail(44, "security: SecKeychainSearchCopyNext: The specified item could not be found in the keychain.\n")
		}
		var b bytes.Buffer
		for _, c := range f.certs {
			if flags["Z"] != nil {
				sum := sha256Of(c.Raw)
				if f.lieSHA256 {
					sum[0] ^= 0xff
				}
				fmt.Fprintf(&b, "SHA-256 hash: %X\nSHA-1 hash: %X\n", sum, sha1.Sum(c.Raw))
			}
			if flags["p"] != nil {
				b.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
			}
		}
		return b.Bytes(), nil
	case "add-trusted-cert":
		if len(rest) != 1 {
			return fail(2, "No cert file specified.\n")
		}
		c, err := readCertFile(rest[0])
		if err != nil {
			return fail(1, "Error reading file %s\n", rest[0])
		}
		if kc := flags["k"]; kc != nil {
			if kc[0] != f.keychain {
				return fail(1, "security: SecKeychainOpen %s: The specified keychain could not be found.\n", kc[0])
			}
			if f.indexDup(c) < 0 { // errSecDuplicateItem is fine here
				f.certs = append(f.certs, c)
			}
		}
		if flags["d"] != nil && f.denyTrust {
			return fail(1, "SecTrustSettingsSetTrustSettings: The authorization was denied since no user interaction was possible.\n")
		}
		f.admin[sha1.Sum(c.Raw)] = true
		return nil, nil
	case "add-certificates":
		kc := flags["k"]
		if kc == nil || kc[0] != f.keychain || len(rest) != 1 {
			return fail(2, "usage\n")
		}
		c, err := readCertFile(rest[0])
		if err != nil {
			return fail(1, "Error reading file %s\n", rest[0])
		}
		if f.indexDup(c) >= 0 {
			return fail(1, "security: %s: already in %s\n", rest[0], kc[0])
		}
		f.certs = append(f.certs, c)
		return nil, nil
	case "remove-trusted-cert":
		if len(rest) != 1 {
			return fail(2, "No cert file specified.\n")
		}
		c, err := readCertFile(rest[0])
		if err != nil {
			return fail(1, "Error reading file %s\n", rest[0])
		}
		sum := sha1.Sum(c.Raw)
		if _, ok := f.admin[sum]; !ok {
			return fail(1, "SecTrustSettingsRemoveTrustSettings: No Trust Settings were found.\n")
		}
		if f.denyTrust {
			return fail(1, "SecTrustSettingsRemoveTrustSettings: The authorization was denied since no user interaction was possible.\n")
		}
		delete(f.admin, sum)
		return nil, nil
	case "delete-certificate":
		z := flags["Z"]
		if z == nil || len(rest) != 1 || rest[0] != f.keychain {
			return fail(2, "usage\n")
		}
		want, err := hex.DecodeString(z[0])
		if err != nil {
			return fail(1, "Unable to delete certificate matching \"%s\"", z[0])
		}
		for i, c := range f.certs {
			s1, s256 := sha1.Sum(c.Raw), sha256Of(c.Raw)
			if bytes.Equal(want, s1[:]) || bytes.Equal(want, s256[:]) {
				f.certs = append(f.certs[:i], f.certs[i+1:]...)
				return nil, nil
			}
		}
		return fail(1, "Unable to delete certificate matching \"%s\"", z[0])
	case "trust-settings-export":
		if flags["d"] == nil || len(rest) != 1 {
			return fail(2, "usage\n")
		}
		if len(f.admin) == 0 {
			return fail(1, "SecTrustSettingsCreateExternalRepresentation: No Trust Settings were found.\n")
		}
		data, err := f.exportAdmin()
		if err != nil {
			return fail(1, "%v\n", err)
		}
		if err := os.WriteFile(rest[0], data, 0o644); err != nil {
			return fail(1, "Error %v writing to %s\n", err, rest[0])
		}
		return nil, nil
	case "verify-cert":
		c := flags["c"]
		if c == nil {
			return fail(2, "***No certs specified.\n")
		}
		cert, err := readCertFile(c[0])
		if err != nil {
			return fail(1, "Error reading file %s\n", c[0])
		}
		sum := sha1.Sum(cert.Raw)
		if trusted, ok := f.admin[sum]; (ok && trusted) || f.profile[sum] {
			if flags["q"] != nil {
				return nil, nil
			}
			return []byte("...certificate verification successful.\n"), nil
		}
		if flags["q"] != nil {
			return fail(1, "")
		}
		return fail(1, "Cert Verify Result: CSSMERR_TP_NOT_TRUSTED\n")
	}
	return fail(2, "security: unknown command %q\n", cmd.Args[0])
}

// indexDup returns the index of the keychain item with c's issuer and
// serial (the keychain's primary key for certificates), or -1.
func (f *fakeSecurity) indexDup(c *x509.Certificate) int {
	for i, x := range f.certs {
		if bytes.Equal(x.RawIssuer, c.RawIssuer) && x.SerialNumber.Cmp(c.SerialNumber) == 0 {
			return i
		}
	}
	return -1
}

func (f *fakeSecurity) exportAdmin() ([]byte, error) {
	type setting map[string]any
	list := map[string]any{}
	byHash := map[[20]byte]*x509.Certificate{}
	for _, c := range f.certs {
		byHash[sha1.Sum(c.Raw)] = c
	}
	for sum, trusted := range f.admin {
		entry := map[string]any{"modDate": time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)}
		if c := byHash[sum]; c != nil {
			entry["issuerName"] = c.RawIssuer
			entry["serialNumber"] = c.SerialNumber.Bytes()
		}
		ssl := setting{"kSecTrustSettingsPolicy": []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x63, 0x64, 0x01, 0x03}, "kSecTrustSettingsPolicyName": "sslServer"}
		basic := setting{"kSecTrustSettingsPolicy": []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x63, 0x64, 0x01, 0x02}, "kSecTrustSettingsPolicyName": "basicX509"}
		if !trusted {
			ssl["kSecTrustSettingsResult"] = resultDeny
			basic["kSecTrustSettingsResult"] = resultDeny
		}
		entry["trustSettings"] = []setting{ssl, basic}
		list[strings.ToUpper(hex.EncodeToString(sum[:]))] = entry
	}
	return plist.MarshalIndent(map[string]any{"trustList": list, "trustVersion": 1}, plist.XMLFormat, "\t")
}

// getopt splits security-style arguments: single-letter flags, some taking
// a value, then operands.
func getopt(sub string, args []string) (map[string][]string, []string, error) {
	withValue := map[string]bool{"r": true, "p": true, "k": true, "c": true, "s": true, "e": true}
	switch sub {
	case "find-certificate":
		withValue["p"] = false // -p: output PEM; -Z: print hashes
	case "delete-certificate":
		withValue["Z"] = true // -Z hash
	}
	flags := map[string][]string{}
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if len(a) < 2 || a[0] != '-' {
			break
		}
		name := a[1:]
		if withValue[name] {
			if i+1 >= len(args) {
				return nil, nil, fmt.Errorf("option requires an argument -- %s", name)
			}
			i++
			flags[name] = append(flags[name], args[i])
			continue
		}
		flags[name] = append(flags[name], "")
	}
	return flags, args[i:], nil
}

// readCertFile reads PEM or DER, as SecurityTool's readCertFile does.
func readCertFile(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if p, _ := pem.Decode(b); p != nil {
		b = p.Bytes
	}
	return x509.ParseCertificate(b)
}
