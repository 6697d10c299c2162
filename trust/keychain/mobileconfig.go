package keychain

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/google/uuid"
	"github.com/smallstep/pkcs7"
	"howett.net/plist"

	"github.com/certagent/certagent/trust"
)

// RootPayloadType is the configuration-profile payload that installs a
// trusted root on macOS (CertificateRoot): the one channel through which a
// root becomes trusted without a user at the keyboard since macOS 11.
const RootPayloadType = "com.apple.security.root"

// DefaultProfileIdentifier is the profile's PayloadIdentifier unless
// ProfileOptions says otherwise. MDM servers replace a profile by this
// identifier, so a new profile for the same account supersedes the old one.
const DefaultProfileIdentifier = "dev.certagent.roots"

// uuidSpace is the namespace of the name-based (version 5) UUIDs in our
// profiles: the same roots always give the same UUIDs.
var uuidSpace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://certagent.dev/mobileconfig"))

// ProfileOptions describe the profile around the roots.
type ProfileOptions struct {
	// Identifier is the profile's PayloadIdentifier ("" means
	// DefaultProfileIdentifier). Payload identifiers are derived from it.
	Identifier string
	// DisplayName is what System Settings shows ("" means "certagent
	// inspection roots").
	DisplayName string
	// Organization is PayloadOrganization ("" leaves it out).
	Organization string
	// Description is PayloadDescription ("" gives a default).
	Description string
}

// profile and rootPayload are the plist shapes (Apple's Configuration
// Profile Reference: top-level Configuration, CertificateRoot payloads).
type profile struct {
	PayloadContent      []rootPayload `plist:"PayloadContent"`
	PayloadDescription  string        `plist:"PayloadDescription"`
	PayloadDisplayName  string        `plist:"PayloadDisplayName"`
	PayloadIdentifier   string        `plist:"PayloadIdentifier"`
	PayloadOrganization string        `plist:"PayloadOrganization,omitempty"`
	PayloadScope        string        `plist:"PayloadScope"`
	PayloadType         string        `plist:"PayloadType"`
	PayloadUUID         string        `plist:"PayloadUUID"`
	PayloadVersion      int           `plist:"PayloadVersion"`
}

type rootPayload struct {
	PayloadCertificateFileName string `plist:"PayloadCertificateFileName"`
	// PayloadContent is the certificate's DER.
	PayloadContent     []byte `plist:"PayloadContent"`
	PayloadDescription string `plist:"PayloadDescription"`
	PayloadDisplayName string `plist:"PayloadDisplayName"`
	PayloadIdentifier  string `plist:"PayloadIdentifier"`
	PayloadType        string `plist:"PayloadType"`
	PayloadUUID        string `plist:"PayloadUUID"`
	PayloadVersion     int    `plist:"PayloadVersion"`
}

// MobileConfig returns an XML configuration profile (.mobileconfig) with one
// com.apple.security.root payload per certificate, device-wide
// (PayloadScope System). Certificates are deduplicated by fingerprint and
// ordered by it; every UUID is derived from the fingerprints, so the same
// roots always give the same bytes and a changed set gives a new profile
// UUID. Only CA certificates are accepted.
func MobileConfig(certs []*trust.Cert, opts ProfileOptions) ([]byte, error) {
	if len(certs) == 0 {
		return nil, errors.New("trust/keychain: mobileconfig: no certificates")
	}
	if opts.Identifier == "" {
		opts.Identifier = DefaultProfileIdentifier
	}
	if strings.ContainsAny(opts.Identifier, " \t\r\n/") {
		return nil, fmt.Errorf("trust/keychain: mobileconfig: identifier %q: want reverse-DNS, like %s", opts.Identifier, DefaultProfileIdentifier)
	}
	if opts.DisplayName == "" {
		opts.DisplayName = "certagent inspection roots"
	}
	if opts.Description == "" {
		opts.Description = "Trusts the organisation's TLS inspection root certificates on this Mac."
	}
	byFP := make(map[trust.Fingerprint]*trust.Cert, len(certs))
	for i, c := range certs {
		if c == nil || c.X509 == nil {
			return nil, fmt.Errorf("trust/keychain: mobileconfig: certificate %d is empty", i+1)
		}
		if trust.FingerprintOf(c.X509.Raw) != c.FP {
			return nil, fmt.Errorf("trust/keychain: mobileconfig: certificate %d: fingerprint does not match its DER", i+1)
		}
		if !c.X509.BasicConstraintsValid || !c.X509.IsCA {
			return nil, fmt.Errorf("trust/keychain: mobileconfig: %s (%s) is not a CA certificate", c.Subject(), c.FP.Short())
		}
		byFP[c.FP] = c
	}
	fps := make([]trust.Fingerprint, 0, len(byFP))
	for fp := range byFP {
		fps = append(fps, fp)
	}
	sort.Slice(fps, func(i, j int) bool { return bytes.Compare(fps[i][:], fps[j][:]) < 0 })

	p := profile{
		PayloadDescription:  opts.Description,
		PayloadDisplayName:  opts.DisplayName,
		PayloadIdentifier:   opts.Identifier,
		PayloadOrganization: opts.Organization,
		PayloadScope:        "System",
		PayloadType:         "Configuration",
		PayloadVersion:      1,
	}
	var set strings.Builder
	set.WriteString(opts.Identifier)
	for _, fp := range fps {
		c := byFP[fp]
		set.WriteString(" " + fp.Hex())
		p.PayloadContent = append(p.PayloadContent, rootPayload{
			PayloadCertificateFileName: fp.Hex()[:16] + ".cer",
			PayloadContent:             c.X509.Raw,
			PayloadDescription:         "Root certificate " + fp.String(),
			PayloadDisplayName:         c.Subject(),
			PayloadIdentifier:          opts.Identifier + ".root." + fp.Hex()[:16],
			PayloadType:                RootPayloadType,
			PayloadUUID:                PayloadUUID(fp),
			PayloadVersion:             1,
		})
	}
	p.PayloadUUID = strings.ToUpper(uuid.NewSHA1(uuidSpace, []byte(set.String())).String())
	out, err := plist.MarshalIndent(p, plist.XMLFormat, "\t")
	if err != nil {
		return nil, fmt.Errorf("trust/keychain: mobileconfig: %w", err)
	}
	return append(out, '\n'), nil
}

// PayloadUUID is the stable UUID of the root payload for fp.
func PayloadUUID(fp trust.Fingerprint) string {
	return strings.ToUpper(uuid.NewSHA1(uuidSpace, fp[:]).String())
}

// SignMobileConfig wraps a profile in CMS SignedData (DER, content
// attached, SHA-256), the form macOS shows as "Verified" when the signer
// chains to a trusted root. chain are the signer's intermediates.
func SignMobileConfig(profile []byte, signer *x509.Certificate, key crypto.PrivateKey, chain []*x509.Certificate) ([]byte, error) {
	if signer == nil || key == nil {
		return nil, errors.New("trust/keychain: sign mobileconfig: need a certificate and its key")
	}
	sd, err := pkcs7.NewSignedData(profile)
	if err != nil {
		return nil, fmt.Errorf("trust/keychain: sign mobileconfig: %w", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSignerChain(signer, key, chain, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("trust/keychain: sign mobileconfig: %w", err)
	}
	out, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("trust/keychain: sign mobileconfig: %w", err)
	}
	return out, nil
}
