package gateway

import (
	"container/list"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"time"
)

// ErrBadName is returned for a server name no certificate may carry.
var ErrBadName = errors.New("gateway: invalid server name")

// root is one loaded inspection root: its certificate and opened key.
type root struct {
	id          string
	fingerprint string
	cert        *x509.Certificate
	key         crypto.Signer
}

// leafKey identifies one cached leaf: the root that signed it and the name.
type leafKey struct{ root, name string }

type leafEntry struct {
	key  leafKey
	cert *tls.Certificate
	// renew is when the entry stops being served (some time before the
	// leaf's NotAfter, so a client never receives a nearly expired leaf).
	renew time.Time
}

// call is one leaf being minted; others asking for the same leaf wait on
// done instead of minting it again.
type call struct {
	done chan struct{}
	cert *tls.Certificate
	err  error
}

// minter mints leaf certificates from loaded roots and keeps the most
// recently used ones.
type minter struct {
	// key is the one leaf key of this process. Minting a leaf is then one
	// signature by the root, not a key generation: the cold-cache
	// handshake cost stays close to the warm one. The key never leaves the
	// process and every leaf it backs is short-lived.
	key      *ecdsa.PrivateKey
	validity time.Duration
	size     int
	now      func() time.Time

	mu       sync.Mutex
	lru      *list.List // of *leafEntry, most recent first; guarded by mu
	entries  map[leafKey]*list.Element
	inflight map[leafKey]*call
	// minted counts leaves signed (for tests and metrics); guarded by mu.
	minted int
}

func newMinter(validity time.Duration, size int, now func() time.Time) (*minter, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("gateway: leaf key: %w", err)
	}
	return &minter{key: k, validity: validity, size: size, now: now, lru: list.New(),
		entries: map[leafKey]*list.Element{}, inflight: map[leafKey]*call{}}, nil
}

// normalizeName returns the canonical form of a server name (a DNS name or
// an IP address), or ErrBadName.
func normalizeName(name string) (string, error) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if ip := net.ParseIP(strings.Trim(name, "[]")); ip != nil {
		return ip.String(), nil
	}
	if name == "" || len(name) > 253 {
		return "", fmt.Errorf("%w: %q", ErrBadName, name)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("%w: %q", ErrBadName, name)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return "", fmt.Errorf("%w: %q", ErrBadName, name)
			}
		}
	}
	return name, nil
}

// leaf returns a certificate for name signed by r, from the cache or newly
// minted.
func (m *minter) leaf(r *root, name string) (*tls.Certificate, error) {
	name, err := normalizeName(name)
	if err != nil {
		return nil, err
	}
	k := leafKey{root: r.fingerprint, name: name}
	now := m.now()
	m.mu.Lock()
	if el, ok := m.entries[k]; ok {
		e := el.Value.(*leafEntry)
		if now.Before(e.renew) {
			m.lru.MoveToFront(el)
			m.mu.Unlock()
			return e.cert, nil
		}
		m.lru.Remove(el)
		delete(m.entries, k)
	}
	if c, ok := m.inflight[k]; ok {
		m.mu.Unlock()
		<-c.done
		return c.cert, c.err
	}
	c := &call{done: make(chan struct{})}
	m.inflight[k] = c
	m.mu.Unlock()

	c.cert, c.err = m.mint(r, name, now)

	m.mu.Lock()
	delete(m.inflight, k)
	if c.err == nil {
		m.minted++
		renew := c.cert.Leaf.NotAfter.Add(-m.validity / 4)
		m.entries[k] = m.lru.PushFront(&leafEntry{key: k, cert: c.cert, renew: renew})
		for m.lru.Len() > m.size {
			old := m.lru.Remove(m.lru.Back()).(*leafEntry)
			delete(m.entries, old.key)
		}
	}
	m.mu.Unlock()
	close(c.done)
	return c.cert, c.err
}

// mint signs a new leaf for name with r.
func (m *minter) mint(r *root, name string, now time.Time) (*tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("gateway: serial: %w", err)
	}
	notAfter := now.Add(m.validity)
	if notAfter.After(r.cert.NotAfter) {
		notAfter = r.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// Backdated a little: a client whose clock runs behind still
		// accepts a leaf minted a moment ago.
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if len(name) <= 64 {
		tmpl.Subject = pkix.Name{CommonName: name}
	}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, r.cert, m.key.Public(), r.key)
	if err != nil {
		return nil, fmt.Errorf("gateway: sign leaf for %s with root %s: %w", name, r.fingerprint, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("gateway: parse minted leaf: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: m.key, Leaf: leaf}, nil
}

// stats returns how many leaves are cached and how many were minted.
func (m *minter) stats() (cached, minted int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.Len(), m.minted
}
