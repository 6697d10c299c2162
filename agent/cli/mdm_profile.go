package cli

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/internal/atomicfile"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/keychain"
)

// maxPEMInput bounds what --from, --sign-cert and --sign-key read.
const maxPEMInput = 4 << 20

// cmdMDMProfile writes a macOS configuration profile (.mobileconfig) with
// one com.apple.security.root payload per root: since macOS 11 that is how a
// root becomes trusted without a user at the keyboard, so it completes the
// roots the agent installed with "trust pending".
//
// The roots come from --from (a PEM bundle, "-" for stdin, e.g. the output
// of `certagent certs` from another machine) or, by default, from this
// machine's ledger: every root certagent has installed or is installing.
// Each root must pass the acceptance policy; with --from a refused root is an
// error and nothing is written.
func cmdMDMProfile(args []string) int {
	fs := flag.NewFlagSet("mdm-profile", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	from := fs.String("from", "", `PEM bundle with the roots ("-" reads stdin); default: the roots in certagent's ledger`)
	out := fs.String("o", "", "write the profile to this file instead of stdout")
	org := fs.String("org", "", "organisation shown with the profile (PayloadOrganization)")
	ident := fs.String("identifier", keychain.DefaultProfileIdentifier, "profile identifier, reverse DNS; MDM replaces a profile by it")
	name := fs.String("name", "", "profile name shown in System Settings")
	signCert := fs.String("sign-cert", "", "sign the profile (CMS): PEM signing certificate, then its intermediates")
	signKey := fs.String("sign-key", "", "PEM private key of --sign-cert")
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, `Usage: certagent mdm-profile [--from roots.pem|-] [-o FILE] [--org NAME] [--sign-cert CERT.pem --sign-key KEY.pem]

Writes a configuration profile that makes macOS trust the roots, device-wide.
Upload it to your MDM (Jamf, Intune, Kandji): profiles delivered by MDM need
no signature. Sign it for manual installs (System Settings shows it as
Verified when the signer chains to a trusted root).

  certagent mdm-profile > certagent-roots.mobileconfig
  certagent certs | certagent mdm-profile --from - --org "Example Corp" -o roots.mobileconfig

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "certagent mdm-profile: unexpected argument %q\n", fs.Arg(0))
		return exitConfig
	}
	if (*signCert == "") != (*signKey == "") {
		fmt.Fprintln(os.Stderr, "certagent mdm-profile: --sign-cert and --sign-key go together")
		return exitConfig
	}

	var roots []*trust.Cert
	var err error
	if *from != "" {
		roots, err = rootsFromPEM(*from)
	} else {
		roots, err = rootsFromLedger()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "certagent mdm-profile:", err)
		return exitFailed
	}
	profile, err := keychain.MobileConfig(roots, keychain.ProfileOptions{Identifier: *ident, DisplayName: *name, Organization: *org})
	if err != nil {
		fmt.Fprintln(os.Stderr, "certagent mdm-profile:", err)
		return exitFailed
	}
	if *signCert != "" {
		profile, err = signProfile(profile, *signCert, *signKey)
		if err != nil {
			fmt.Fprintln(os.Stderr, "certagent mdm-profile:", err)
			return exitFailed
		}
	}
	if *out == "" {
		if _, err := os.Stdout.Write(profile); err != nil {
			fmt.Fprintln(os.Stderr, "certagent mdm-profile:", err)
			return exitFailed
		}
	} else if err := atomicfile.Write(*out, profile, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "certagent mdm-profile:", err)
		return exitFailed
	}
	fmt.Fprintf(os.Stderr, "certagent mdm-profile: %d root(s) in the profile\n", len(roots))
	return exitOK
}

// rootsFromPEM reads the roots from a PEM bundle; every one must pass the
// acceptance policy.
func rootsFromPEM(path string) ([]*trust.Cert, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	certs, err := trust.ParsePEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []*trust.Cert
	for i, c := range certs {
		ok, err := trust.Policy{}.Check(trust.Candidate{PEM: c.PEM()})
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d (%s, %s): %w", path, i+1, c.Subject(), c.FP.Short(), err)
		}
		out = append(out, ok)
	}
	return out, nil
}

// rootsFromLedger returns the roots certagent has installed (or is
// installing) on this machine. Roots the policy no longer accepts (expired
// since) are left out with a note: the agent is about to remove them.
func rootsFromLedger() ([]*trust.Cert, error) {
	cfg, err := agent.LoadConfig(platform.DefaultPaths(), agent.LoadOptions{Local: true})
	if err != nil {
		return nil, err
	}
	l, err := agent.LoadLedger(cfg.LedgerPath())
	if err != nil {
		return nil, err
	}
	wanted := map[trust.Fingerprint]bool{}
	for _, e := range l.Entries {
		if e.State != agent.StateRemoving {
			wanted[e.FP] = true
		}
	}
	var out []*trust.Cert
	for _, lc := range l.Managed() {
		c, err := trust.Policy{}.Check(trust.Candidate{ID: lc.ID, PEM: []byte(lc.PEM)})
		if err != nil {
			var rj *trust.Rejection
			if errors.As(err, &rj) {
				fmt.Fprintf(os.Stderr, "certagent mdm-profile: leaving out %s: %s\n", lc.Subject, rj.Reason)
				continue
			}
			return nil, err
		}
		if wanted[c.FP] {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no roots in the ledger %s (run `certagent sync` first, or give --from roots.pem)", cfg.LedgerPath())
	}
	return out, nil
}

// signProfile signs profile with the first certificate of certPath and the
// key in keyPath; further certificates in certPath are its intermediates.
func signProfile(profile []byte, certPath, keyPath string) ([]byte, error) {
	certPEM, err := readLimited(certPath)
	if err != nil {
		return nil, err
	}
	chain, err := trust.ParsePEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("--sign-cert %s: %w", certPath, err)
	}
	keyPEM, err := readLimited(keyPath)
	if err != nil {
		return nil, err
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("--sign-key %s: %w", keyPath, err)
	}
	signer := chain[0].X509
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(signer.PublicKey) {
		return nil, fmt.Errorf("--sign-key %s is not the key of --sign-cert %s (%s)", keyPath, certPath, chain[0].Subject())
	}
	var inter []*x509.Certificate
	for _, c := range chain[1:] {
		inter = append(inter, c.X509)
	}
	return keychain.SignMobileConfig(profile, signer, key, inter)
}

// parsePrivateKey reads the first private key block: PKCS#8, PKCS#1 (RSA)
// or SEC 1 (EC).
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM private key")
		}
		var k any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.Type, err)
		}
		switch k := k.(type) {
		case *rsa.PrivateKey:
			return k, nil
		case *ecdsa.PrivateKey:
			return k, nil
		case ed25519.PrivateKey:
			return k, nil
		default:
			return nil, fmt.Errorf("unsupported key type %T", k)
		}
	}
}

// readLimited reads path ("-" is stdin), refusing inputs over maxPEMInput.
func readLimited(path string) ([]byte, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxPEMInput+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxPEMInput {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxPEMInput)
	}
	return data, nil
}
