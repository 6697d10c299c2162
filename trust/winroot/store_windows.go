//go:build windows

package winroot

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

// x/sys/windows has no wrappers for the context-property calls, so they are
// loaded from crypt32.dll (system directory only).
var (
	crypt32                               = windows.NewLazySystemDLL("crypt32.dll")
	procCertGetCertificateContextProperty = crypt32.NewProc("CertGetCertificateContextProperty")
	procCertSetCertificateContextProperty = crypt32.NewProc("CertSetCertificateContextProperty")
	// Windows 10 / Server 2016 and later.
	procCertResyncCertificateChainEngine = crypt32.NewProc("CertResyncCertificateChainEngine")
)

const (
	certFriendlyNamePropID = 11 // CERT_FRIENDLY_NAME_PROP_ID
	// hcceLocalMachine is HCCE_LOCAL_MACHINE: build chains with the machine
	// engine, whose roots are LocalMachine's (Go's own verifier uses the
	// current user's engine, golang/go#34977).
	hcceLocalMachine = windows.Handle(1)
	// certChainCacheOnlyURLRetrieval keeps chain building off the network.
	certChainCacheOnlyURLRetrieval = 0x00000004
	encodingX509                   = windows.X509_ASN_ENCODING | windows.PKCS_7_ASN_ENCODING
	// untrusted are the chain error bits that mean "not trusted" (expiry
	// and revocation are the acceptance policy's business, not the store's).
	untrusted = windows.CERT_TRUST_IS_UNTRUSTED_ROOT | windows.CERT_TRUST_IS_PARTIAL_CHAIN |
		windows.CERT_TRUST_IS_NOT_SIGNATURE_VALID | windows.CERT_TRUST_IS_EXPLICIT_DISTRUST
)

// sysStore is an opened LocalMachine\ROOT.
type sysStore struct {
	h windows.Handle
	// refs are the duplicated contexts Enum handed out and not yet deleted;
	// Close frees them.
	refs map[*windows.CertContext]struct{}
	// changed is set by Add and Delete: the machine chain engine caches
	// the stores and must resync before it can see the change.
	changed bool
}

func openSystem(write bool) (certStore, error) {
	name, err := windows.UTF16PtrFromString("ROOT")
	if err != nil {
		return nil, err
	}
	// OPEN_EXISTING: never create a store; no flag here can show UI.
	flags := uint32(windows.CERT_SYSTEM_STORE_LOCAL_MACHINE | windows.CERT_STORE_OPEN_EXISTING_FLAG)
	if !write {
		flags |= windows.CERT_STORE_READONLY_FLAG
	}
	h, err := windows.CertOpenStore(windows.CERT_STORE_PROV_SYSTEM, 0, 0, flags, uintptr(unsafe.Pointer(name)))
	if err != nil {
		return nil, win32Err("CertOpenStore", err)
	}
	return &sysStore{h: h, refs: make(map[*windows.CertContext]struct{})}, nil
}

func (s *sysStore) Enum() ([]storeCert, error) {
	var out []storeCert
	var ctx *windows.CertContext
	for {
		// The call frees ctx (the previous context) whether or not it
		// returns another.
		next, err := windows.CertEnumCertificatesInStore(s.h, ctx)
		if err != nil {
			var errno syscall.Errno
			if errors.As(err, &errno) && (errno == codeNotFound || errno == codeNoMoreFiles) {
				return out, nil
			}
			return nil, win32Err("CertEnumCertificatesInStore", err)
		}
		ctx = next
		der := append([]byte(nil), unsafe.Slice(ctx.EncodedCert, ctx.Length)...)
		name, err := getFriendlyName(ctx)
		if err != nil {
			windows.CertFreeCertificateContext(ctx)
			return nil, err
		}
		dup := windows.CertDuplicateCertificateContext(ctx)
		s.refs[dup] = struct{}{}
		out = append(out, storeCert{DER: der, FriendlyName: name, ref: dup})
	}
}

func (s *sysStore) Add(der []byte, friendlyName string) error {
	if len(der) == 0 {
		return errors.New("empty certificate")
	}
	ctx, err := windows.CertCreateCertificateContext(encodingX509, &der[0], uint32(len(der)))
	if err != nil {
		return win32Err("CertCreateCertificateContext", err)
	}
	defer windows.CertFreeCertificateContext(ctx)
	var added *windows.CertContext
	// ADD_NEW rather than REPLACE_EXISTING: an identical root someone else
	// added keeps its properties (and the caller learns it was there).
	if err := windows.CertAddCertificateContextToStore(s.h, ctx, windows.CERT_STORE_ADD_NEW, &added); err != nil {
		return win32Err("CertAddCertificateContextToStore", err)
	}
	if err := setFriendlyName(added, friendlyName); err != nil {
		// An untagged root of ours would look like someone else's: take it
		// out again. CertDeleteCertificateFromStore frees added.
		if derr := windows.CertDeleteCertificateFromStore(added); derr != nil {
			return errors.Join(err, win32Err("CertDeleteCertificateFromStore", derr))
		}
		return err
	}
	windows.CertFreeCertificateContext(added)
	s.changed = true
	return nil
}

func (s *sysStore) Delete(c storeCert) error {
	ctx, ok := c.ref.(*windows.CertContext)
	if !ok {
		return errors.New("certificate context not from this store")
	}
	if _, ok := s.refs[ctx]; !ok {
		return errors.New("certificate context already released")
	}
	delete(s.refs, ctx)
	// The call frees ctx even when it fails.
	if err := windows.CertDeleteCertificateFromStore(ctx); err != nil {
		return win32Err("CertDeleteCertificateFromStore", err)
	}
	s.changed = true
	return nil
}

func (s *sysStore) Verify(der []byte) error {
	if len(der) == 0 {
		return errors.New("empty certificate")
	}
	ctx, err := windows.CertCreateCertificateContext(encodingX509, &der[0], uint32(len(der)))
	if err != nil {
		return win32Err("CertCreateCertificateContext", err)
	}
	defer windows.CertFreeCertificateContext(ctx)
	if s.changed && procCertResyncCertificateChainEngine.Find() == nil {
		// Best effort: without it the engine notices the change a moment
		// later by itself, and List reports what it then sees.
		if r, _, _ := procCertResyncCertificateChainEngine.Call(uintptr(hcceLocalMachine)); r != 0 {
			s.changed = false
		}
	}
	para := windows.CertChainPara{Size: uint32(unsafe.Sizeof(windows.CertChainPara{}))}
	var chain *windows.CertChainContext
	if err := windows.CertGetCertificateChain(hcceLocalMachine, ctx, nil, 0, &para, certChainCacheOnlyURLRetrieval, 0, &chain); err != nil {
		return win32Err("CertGetCertificateChain", err)
	}
	defer windows.CertFreeCertificateChain(chain)
	if bits := chain.TrustStatus.ErrorStatus & untrusted; bits != 0 {
		return fmt.Errorf("CertGetCertificateChain: chain error status 0x%08X (%s)", bits, describeTrust(bits))
	}
	return nil
}

func (s *sysStore) Close() error {
	for ctx := range s.refs {
		windows.CertFreeCertificateContext(ctx)
	}
	s.refs = nil
	if err := windows.CertCloseStore(s.h, 0); err != nil {
		return win32Err("CertCloseStore", err)
	}
	return nil
}

func getFriendlyName(ctx *windows.CertContext) (string, error) {
	var size uint32
	r, _, e := procCertGetCertificateContextProperty.Call(uintptr(unsafe.Pointer(ctx)), certFriendlyNamePropID, 0, uintptr(unsafe.Pointer(&size)))
	if r == 0 {
		if errno, ok := e.(syscall.Errno); ok && errno == codeNotFound {
			return "", nil // no friendly name
		}
		return "", win32Err("CertGetCertificateContextProperty", e)
	}
	if size < 2 {
		return "", nil
	}
	buf := make([]uint16, (size+1)/2)
	r, _, e = procCertGetCertificateContextProperty.Call(uintptr(unsafe.Pointer(ctx)), certFriendlyNamePropID, uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)))
	if r == 0 {
		return "", win32Err("CertGetCertificateContextProperty", e)
	}
	return windows.UTF16ToString(buf), nil
}

func setFriendlyName(ctx *windows.CertContext, name string) error {
	u, err := windows.UTF16FromString(name) // NUL-terminated
	if err != nil {
		return err
	}
	blob := windows.CryptDataBlob{Size: uint32(len(u) * 2), Data: (*byte)(unsafe.Pointer(&u[0]))}
	r, _, e := procCertSetCertificateContextProperty.Call(uintptr(unsafe.Pointer(ctx)), certFriendlyNamePropID, 0, uintptr(unsafe.Pointer(&blob)))
	if r == 0 {
		return win32Err("CertSetCertificateContextProperty", e)
	}
	return nil
}

// win32Err keeps the API name and the code.
func win32Err(step string, err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return &Win32Error{Step: step, Code: uint32(errno), Msg: errno.Error()}
	}
	return fmt.Errorf("%s: %w", step, err)
}

func describeTrust(bits uint32) string {
	var s []string
	for _, b := range []struct {
		bit  uint32
		name string
	}{
		{windows.CERT_TRUST_IS_UNTRUSTED_ROOT, "untrusted root"},
		{windows.CERT_TRUST_IS_PARTIAL_CHAIN, "partial chain"},
		{windows.CERT_TRUST_IS_NOT_SIGNATURE_VALID, "bad signature"},
		{windows.CERT_TRUST_IS_EXPLICIT_DISTRUST, "explicitly distrusted"},
	} {
		if bits&b.bit != 0 {
			s = append(s, b.name)
		}
	}
	return fmt.Sprint(s)
}
