package winroot

import (
	"bytes"
	"errors"
	"slices"
	"sync"

	"github.com/certagent/certagent/trust"
)

// fakeMachine models LocalMachine\ROOT as crypt32 presents it: one store that
// outlives every handle, duplicates refused with CRYPT_E_EXISTS (the real
// store keys contexts by the hash of their encoding), friendly names as a
// per-context property, ERROR_ACCESS_DENIED for a non-admin writer, and a
// chain engine that trusts what is in ROOT unless it is explicitly
// distrusted.
type fakeMachine struct {
	mu    sync.Mutex
	certs []*fakeCert
	// admin is false for an unelevated process: opening for write fails.
	admin bool
	// denyAdd and denyDelete make those calls fail with ERROR_ACCESS_DENIED
	// (a store ACL or an anti-tamper product can do that to an admin).
	denyAdd, denyDelete bool
	// failFriendlyName makes CertSetCertificateContextProperty fail.
	failFriendlyName bool
	// vanishBeforeDelete makes another process delete the context between
	// our Enum and our Delete (the real search then finds nothing:
	// CRYPT_E_NOT_FOUND).
	vanishBeforeDelete bool
	// distrusted fingerprints fail chain building (CERT_TRUST_IS_EXPLICIT_DISTRUST).
	distrusted map[trust.Fingerprint]bool
	// policyTrusted fingerprints are trusted by the chain engine through
	// another physical store of ROOT (Group Policy's), which Enum of the
	// registry store does not list and Delete does not reach.
	policyTrusted map[trust.Fingerprint]bool

	opens, closes, adds, deletes int
}

type fakeCert struct {
	der      []byte
	friendly string
	// addedBy is the handle that added the context. The chain engine does
	// not see it while that handle is open: recorded under Wine 8, whose
	// engines build from the ROOT cache taken before the writer's change;
	// the adapter must verify only after closing its writer.
	addedBy *fakeHandle
}

func newFakeMachine() *fakeMachine {
	return &fakeMachine{admin: true, distrusted: map[trust.Fingerprint]bool{}, policyTrusted: map[trust.Fingerprint]bool{}}
}

// seed puts a certificate into the store as another tool would.
func (m *fakeMachine) seed(der []byte, friendly string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.certs = append(m.certs, &fakeCert{der: der, friendly: friendly})
}

func (m *fakeMachine) has(fp trust.Fingerprint) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.certs {
		if trust.FingerprintOf(c.der) == fp {
			return true
		}
	}
	return false
}

func (m *fakeMachine) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.certs)
}

func (m *fakeMachine) open(write bool) (certStore, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if write && !m.admin {
		return nil, &Win32Error{Step: "CertOpenStore", Code: codeAccessDenied, Msg: "Access is denied."}
	}
	m.opens++
	return &fakeHandle{m: m, write: write}, nil
}

type fakeHandle struct {
	m      *fakeMachine
	write  bool
	closed bool
}

func (h *fakeHandle) Enum() ([]storeCert, error) {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	if h.closed {
		return nil, errors.New("fake: store closed")
	}
	out := make([]storeCert, 0, len(h.m.certs))
	for _, c := range h.m.certs {
		out = append(out, storeCert{DER: bytes.Clone(c.der), FriendlyName: c.friendly})
	}
	return out, nil
}

func (h *fakeHandle) Add(der []byte, friendly string) error {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	switch {
	case h.closed:
		return errors.New("fake: store closed")
	case !h.write:
		return &Win32Error{Step: "CertAddCertificateContextToStore", Code: codeAccessDenied, Msg: "Access is denied."}
	case h.m.denyAdd:
		return &Win32Error{Step: "CertAddCertificateContextToStore", Code: codeAccessDenied, Msg: "Access is denied."}
	}
	for _, c := range h.m.certs {
		if bytes.Equal(c.der, der) {
			return &Win32Error{Step: "CertAddCertificateContextToStore", Code: codeExists, Msg: "The object or property already exists."}
		}
	}
	if h.m.failFriendlyName {
		// The real Add adds the context, fails to set the property and
		// deletes the context again: the store ends unchanged.
		return &Win32Error{Step: "CertSetCertificateContextProperty", Code: codeAccessDenied, Msg: "Access is denied."}
	}
	h.m.adds++
	h.m.certs = append(h.m.certs, &fakeCert{der: bytes.Clone(der), friendly: friendly, addedBy: h})
	return nil
}

func (h *fakeHandle) Delete(der []byte) error {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	switch {
	case h.closed:
		return errors.New("fake: store closed")
	case !h.write || h.m.denyDelete:
		return &Win32Error{Step: "CertDeleteCertificateFromStore", Code: codeAccessDenied, Msg: "Access is denied."}
	}
	match := func(c *fakeCert) bool { return bytes.Equal(c.der, der) }
	if h.m.vanishBeforeDelete {
		h.m.certs = slices.DeleteFunc(h.m.certs, match)
	}
	n := len(h.m.certs)
	h.m.certs = slices.DeleteFunc(h.m.certs, match)
	if len(h.m.certs) == n {
		return &Win32Error{Step: "CertFindCertificateInStore", Code: codeNotFound, Msg: "Cannot find object or property."}
	}
	h.m.deletes += n - len(h.m.certs)
	return nil
}

func (h *fakeHandle) Verify(der []byte) error {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	fp := trust.FingerprintOf(der)
	if h.m.distrusted[fp] {
		return errors.New("CertGetCertificateChain: chain error status 0x04000000 ([explicitly distrusted])")
	}
	if h.m.policyTrusted[fp] {
		return nil
	}
	for _, c := range h.m.certs {
		if bytes.Equal(c.der, der) && (c.addedBy == nil || c.addedBy.closed) {
			return nil
		}
	}
	return errors.New("CertGetCertificateChain: chain error status 0x00000020 ([untrusted root])")
}

func (h *fakeHandle) Close() error {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	if h.closed {
		return errors.New("fake: store closed twice")
	}
	h.closed = true
	h.m.closes++
	return nil
}
