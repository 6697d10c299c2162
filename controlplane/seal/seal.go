// Package seal encrypts private keys at rest with AES-256-GCM.
//
// The 32-byte key comes from CERTPLANE_SEAL_KEY (base64) or from a key file
// in the data directory, created 0600 on first start. Every sealed blob is
// bound to the row it belongs to through GCM's additional data, so a key
// copied onto another certificate's row does not open.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// EnvKey is the environment variable that may carry the key, base64.
const EnvKey = "CERTPLANE_SEAL_KEY"

// KeyFile is the key file's name inside the data directory.
const KeyFile = "seal.key"

// KeySize is the AES-256 key size.
const KeySize = 32

// version prefixes every sealed blob so the format can change later.
const version = 1

// Sentinel errors. Neither ever carries key material.
var (
	ErrBadKey = errors.New("seal: bad key")
	ErrOpen   = errors.New("seal: cannot open sealed data (wrong key or tampered)")
)

// Sealer seals and opens blobs under one key.
type Sealer struct {
	aead cipher.AEAD
}

// New returns a sealer for a 32-byte key.
func New(key []byte) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrBadKey, len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plaintext bound to aad (the row identity).
func (s *Sealer) Seal(plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	out := append([]byte{version}, nonce...)
	return s.aead.Seal(out, nonce, plaintext, aad), nil
}

// Open decrypts a blob sealed with the same key and aad.
func (s *Sealer) Open(sealed, aad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n+s.aead.Overhead() || sealed[0] != version {
		return nil, ErrOpen
	}
	pt, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// Load returns the sealer for a data directory: the key from env value
// envValue (base64) when it is set, else from dataDir/seal.key, which is
// created with a fresh random key (mode 0600) when it does not exist.
// created reports whether a new key file was written.
func Load(envValue, dataDir string) (s *Sealer, created bool, err error) {
	if v := strings.TrimSpace(envValue); v != "" {
		key, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, false, fmt.Errorf("%w: %s is not base64", ErrBadKey, EnvKey)
		}
		s, err := New(key)
		if err != nil {
			return nil, false, fmt.Errorf("seal: %s: %w", EnvKey, err)
		}
		return s, false, nil
	}
	if dataDir == "" {
		return nil, false, fmt.Errorf("%w: no data directory and %s unset", ErrBadKey, EnvKey)
	}
	path := filepath.Join(dataDir, KeyFile)
	key, err := readKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = createKeyFile(dataDir, path)
		if errors.Is(err, fs.ErrExist) {
			// Another process created it first; use theirs.
			key, err = readKeyFile(path)
		} else if err == nil {
			created = true
		}
	}
	if err != nil {
		return nil, false, err
	}
	s, err = New(key)
	if err != nil {
		return nil, false, fmt.Errorf("seal: %s: %w", path, err)
	}
	return s, created, nil
}

func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("seal: read key file: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && os.PathSeparator == '/' && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s is readable by others (mode %v): chmod 600 it", ErrBadKey, path, fi.Mode().Perm())
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not base64", ErrBadKey, path)
	}
	return key, nil
}

func createKeyFile(dir, path string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("seal: create data directory: %w", err)
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("seal: random key: %w", err)
	}
	// O_EXCL: never overwrite a key that sealed existing data.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		return nil, fmt.Errorf("seal: create key file: %w", err)
	}
	_, werr := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("seal: write key file: %w", err)
	}
	return key, nil
}
