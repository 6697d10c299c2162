//go:build windows

package winroot

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

// x/sys/windows has no wrappers for the context-property, store-control and
// chain-engine calls, so they are loaded from crypt32.dll (system directory
// only).
var (
	crypt32                               = windows.NewLazySystemDLL("crypt32.dll")
	procCertGetCertificateContextProperty = crypt32.NewProc("CertGetCertificateContextProperty")
	procCertSetCertificateContextProperty = crypt32.NewProc("CertSetCertificateContextProperty")
	procCertControlStore                  = crypt32.NewProc("CertControlStore")
	procCertCreateCertificateChainEngine  = crypt32.NewProc("CertCreateCertificateChainEngine")
	procCertFreeCertificateChainEngine    = crypt32.NewProc("CertFreeCertificateChainEngine")
)

const (
	certFriendlyNamePropID = 11 // CERT_FRIENDLY_NAME_PROP_ID
	// certStoreCtrlCommit is CERT_STORE_CTRL_COMMIT.
	certStoreCtrlCommit = 4
	// certChainUseLocalMachineStore is CERT_CHAIN_USE_LOCAL_MACHINE_STORE:
	// the engine's roots are LocalMachine's (Go's own verifier uses the
	// current user's engine, golang/go#34977).
	certChainUseLocalMachineStore = 0x00000008
	// certChainCacheOnlyURLRetrieval keeps chain building off the network.
	certChainCacheOnlyURLRetrieval = 0x00000004
	encodingX509                   = windows.X509_ASN_ENCODING | windows.PKCS_7_ASN_ENCODING
	// untrusted are the chain error bits that mean "not trusted" (expiry
	// and revocation are the acceptance policy's business, not the store's).
	untrusted = windows.CERT_TRUST_IS_UNTRUSTED_ROOT | windows.CERT_TRUST_IS_PARTIAL_CHAIN |
		windows.CERT_TRUST_IS_NOT_SIGNATURE_VALID | windows.CERT_TRUST_IS_EXPLICIT_DISTRUST
)

// sysStore is an opened LocalMachine\ROOT. It holds no certificate context
// between calls.
type sysStore struct {
	// h is the system store: the collection of every physical store of
	// LocalMachine\ROOT (registry, Group Policy, enterprise), read-only.
	// Enum and Verify see what the machine trusts through it.
	h windows.Handle
	// reg, when opened for writing, is its registry physical store
	// (HKLM\SOFTWARE\Microsoft\SystemCertificates\ROOT), where Windows puts
	// a root added to the system store. Writing it directly makes each change
	// durable and visible to a new handle at once on Windows and Wine alike;
	// through the collection, Wine loses a delete of a root that an earlier
	// process added.
	reg windows.Handle
}

// rootRegistryKey is the registry physical store of LocalMachine\ROOT.
const rootRegistryKey = `SOFTWARE\Microsoft\SystemCertificates\ROOT`

func openSystem(write bool) (certStore, error) {
	name, err := windows.UTF16PtrFromString("ROOT")
	if err != nil {
		return nil, err
	}
	// OPEN_EXISTING: never create a store; no flag here can show UI.
	flags := uint32(windows.CERT_SYSTEM_STORE_LOCAL_MACHINE | windows.CERT_STORE_OPEN_EXISTING_FLAG | windows.CERT_STORE_READONLY_FLAG)
	h, err := windows.CertOpenStore(windows.CERT_STORE_PROV_SYSTEM, 0, 0, flags, uintptr(unsafe.Pointer(name)))
	if err != nil {
		return nil, win32Err("CertOpenStore", err)
	}
	st := &sysStore{h: h}
	if write {
		if st.reg, err = openRegistryStore(); err != nil {
			windows.CertCloseStore(h, 0)
			return nil, err
		}
	}
	return st, nil
}

// openRegistryStore opens LocalMachine\ROOT's registry physical store for
// writing. Only LocalSystem and elevated administrators may: anyone else
// gets ERROR_ACCESS_DENIED from RegOpenKeyEx.
func openRegistryStore() (windows.Handle, error) {
	path, err := windows.UTF16PtrFromString(rootRegistryKey)
	if err != nil {
		return 0, err
	}
	var key windows.Handle
	if err := windows.RegOpenKeyEx(windows.HKEY_LOCAL_MACHINE, path, 0, windows.KEY_READ|windows.KEY_WRITE, &key); err != nil {
		return 0, win32Err(`RegOpenKeyEx(HKLM\`+rootRegistryKey+`)`, err)
	}
	// The provider keeps its own copy of the key handle.
	defer windows.RegCloseKey(key)
	h, err := windows.CertOpenStore(windows.CERT_STORE_PROV_REG, 0, 0, 0, uintptr(key))
	if err != nil {
		return 0, win32Err("CertOpenStore(registry)", err)
	}
	return h, nil
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
		out = append(out, storeCert{DER: der, FriendlyName: name})
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
	if s.reg == 0 {
		return &Win32Error{Step: "CertAddCertificateContextToStore", Code: codeAccessDenied, Msg: ErrAccessDenied.(*Win32Error).Msg}
	}
	if err := windows.CertAddCertificateContextToStore(s.reg, ctx, windows.CERT_STORE_ADD_NEW, &added); err != nil {
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
	return s.commit()
}

func (s *sysStore) Delete(der []byte) error {
	// The store indexes contexts by the SHA-1 of their encoding; each hit
	// is compared byte for byte before it is deleted, so a SHA-1 collision
	// cannot take another root with it.
	if s.reg == 0 {
		return &Win32Error{Step: "CertDeleteCertificateFromStore", Code: codeAccessDenied, Msg: ErrAccessDenied.(*Win32Error).Msg}
	}
	sum := sha1.Sum(der)
	blob := windows.CryptHashBlob{Size: uint32(len(sum)), Data: &sum[0]}
	deleted := 0
	var prev *windows.CertContext
	for {
		ctx, err := windows.CertFindCertificateInStore(s.reg, encodingX509, 0, windows.CERT_FIND_SHA1_HASH, unsafe.Pointer(&blob), prev)
		if err != nil {
			var errno syscall.Errno
			if errors.As(err, &errno) && errno == codeNotFound {
				break
			}
			return win32Err("CertFindCertificateInStore", err)
		}
		if !bytes.Equal(unsafe.Slice(ctx.EncodedCert, ctx.Length), der) {
			prev = ctx // the next search frees it
			continue
		}
		if deleted > 0 {
			// The registry store holds one context per hash: finding it
			// again means the delete reported success and did nothing.
			windows.CertFreeCertificateContext(ctx)
			return errors.New("CertDeleteCertificateFromStore reported success, but the certificate is still in the store")
		}
		// The call frees ctx even when it fails; search again from the
		// start, as the enumeration position went with it.
		if err := windows.CertDeleteCertificateFromStore(ctx); err != nil {
			return win32Err("CertDeleteCertificateFromStore", err)
		}
		prev = nil
		deleted++
	}
	if deleted == 0 {
		if ctx, err := windows.CertFindCertificateInStore(s.h, encodingX509, 0, windows.CERT_FIND_SHA1_HASH, unsafe.Pointer(&blob), nil); err == nil {
			// Still in the system store but not in its registry physical
			// store: Group Policy or the enterprise store provides it, and
			// would put it back.
			windows.CertFreeCertificateContext(ctx)
			return fmt.Errorf("the root is not in %s's registry store: Group Policy or the enterprise store provides it, remove it there", StorePath)
		}
		return &Win32Error{Step: "CertFindCertificateInStore", Code: codeNotFound, Msg: ErrNotFound.(*Win32Error).Msg}
	}
	return s.commit()
}

// commit makes a change durable before Add or Delete reports it, with
// CertControlStore(CERT_STORE_CTRL_COMMIT). On Windows 10 and later a
// registry-backed system store writes each change through at once and the
// call returns success without work (the documented "no changes to commit"
// case), so this is one path for every platform rather than a branch: it
// matters where the provider caches writes until the last handle closes,
// as Wine's does, and there a change made while a context is still
// referenced (Enum keeps duplicates) would otherwise be lost.
func (s *sysStore) commit() error {
	if r, _, e := procCertControlStore.Call(uintptr(s.reg), 0, certStoreCtrlCommit, 0); r == 0 {
		return win32Err("CertControlStore(COMMIT)", e)
	}
	return nil
}

// certChainEngineConfig is CERT_CHAIN_ENGINE_CONFIG up to hExclusiveTrustedPeople
// (the Windows 7 layout, which every later Windows and Wine accept).
type certChainEngineConfig struct {
	Size                      uint32
	RestrictedRoot            windows.Handle
	RestrictedTrust           windows.Handle
	RestrictedOther           windows.Handle
	AdditionalStoreCount      uint32
	AdditionalStores          *windows.Handle
	Flags                     uint32
	URLRetrievalTimeout       uint32
	MaximumCachedCertificates uint32
	CycleDetectionModulus     uint32
	ExclusiveRoot             windows.Handle
	ExclusiveTrustedPeople    windows.Handle
}

// newMachineEngine creates a private chain engine over LocalMachine's
// stores. A new engine reads the root stores when it is created, so it
// sees the change this process just committed; the shared HCCE_LOCAL_MACHINE
// engine caches ROOT and notices changes only later (on Windows through a
// registry-change notification on its own schedule; Wine never, and Wine
// does not export CertResyncCertificateChainEngine). Creating one per
// verification costs a registry read, once per List or change.
func newMachineEngine() (windows.Handle, error) {
	cfg := certChainEngineConfig{Flags: certChainUseLocalMachineStore}
	cfg.Size = uint32(unsafe.Sizeof(cfg))
	var h windows.Handle
	if r, _, e := procCertCreateCertificateChainEngine.Call(uintptr(unsafe.Pointer(&cfg)), uintptr(unsafe.Pointer(&h))); r == 0 {
		return 0, win32Err("CertCreateCertificateChainEngine", e)
	}
	return h, nil
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
	engine, err := newMachineEngine()
	if err != nil {
		return err
	}
	defer procCertFreeCertificateChainEngine.Call(uintptr(engine))
	para := windows.CertChainPara{Size: uint32(unsafe.Sizeof(windows.CertChainPara{}))}
	var chain *windows.CertChainContext
	if err := windows.CertGetCertificateChain(engine, ctx, nil, 0, &para, certChainCacheOnlyURLRetrieval, 0, &chain); err != nil {
		return win32Err("CertGetCertificateChain", err)
	}
	defer windows.CertFreeCertificateChain(chain)
	if bits := chain.TrustStatus.ErrorStatus & untrusted; bits != 0 {
		return fmt.Errorf("CertGetCertificateChain: chain error status 0x%08X (%s)", bits, describeTrust(bits))
	}
	return nil
}

func (s *sysStore) Close() error {
	if s.reg != 0 {
		if err := windows.CertCloseStore(s.reg, 0); err != nil {
			windows.CertCloseStore(s.h, 0)
			return win32Err("CertCloseStore(registry)", err)
		}
		s.reg = 0
	}
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
