package seal

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSealOpen(t *testing.T) {
	s, err := New(bytes.Repeat([]byte{7}, KeySize))
	require.NoError(t, err)
	secret := []byte("-----BEGIN PRIVATE KEY-----\nsecret\n")
	sealed, err := s.Seal(secret, []byte("acct/cert1"))
	require.NoError(t, err)
	assert.False(t, bytes.Contains(sealed, []byte("secret")), "sealed data must not contain the plaintext")
	got, err := s.Open(sealed, []byte("acct/cert1"))
	require.NoError(t, err)
	assert.Equal(t, secret, got)

	other, err := New(bytes.Repeat([]byte{8}, KeySize))
	require.NoError(t, err)
	tests := []struct {
		name   string
		s      *Sealer
		sealed []byte
		aad    string
	}{
		{"other row", s, sealed, "acct/cert2"},
		{"other key", other, sealed, "acct/cert1"},
		{"truncated", s, sealed[:10], "acct/cert1"},
		{"empty", s, nil, "acct/cert1"},
		{"flipped bit", s, append(append([]byte{}, sealed[:len(sealed)-1]...), sealed[len(sealed)-1]^1), "acct/cert1"},
		{"unknown version", s, append([]byte{9}, sealed[1:]...), "acct/cert1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.s.Open(tt.sealed, []byte(tt.aad))
			assert.ErrorIs(t, err, ErrOpen)
		})
	}
}

func TestNewRejectsShortKey(t *testing.T) {
	_, err := New(make([]byte, 16))
	assert.ErrorIs(t, err, ErrBadKey)
}

func TestLoadCreatesKeyFileOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s1, created, err := Load("", dir)
	require.NoError(t, err)
	assert.True(t, created)
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	require.NoError(t, err)
	if os.PathSeparator == '/' {
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	}
	sealed, err := s1.Seal([]byte("k"), nil)
	require.NoError(t, err)

	s2, created, err := Load("", dir)
	require.NoError(t, err)
	assert.False(t, created, "a second start must reuse the key")
	got, err := s2.Open(sealed, nil)
	require.NoError(t, err)
	assert.Equal(t, []byte("k"), got)
}

func TestLoadFromEnv(t *testing.T) {
	key := bytes.Repeat([]byte{3}, KeySize)
	dir := t.TempDir()
	s, created, err := Load(base64.StdEncoding.EncodeToString(key), dir)
	require.NoError(t, err)
	assert.False(t, created)
	_, err = os.Stat(filepath.Join(dir, KeyFile))
	assert.True(t, os.IsNotExist(err), "env key must not create a key file")
	ref, _ := New(key)
	sealed, _ := ref.Seal([]byte("x"), nil)
	_, err = s.Open(sealed, nil)
	require.NoError(t, err)

	for _, bad := range []string{"not base64!", base64.StdEncoding.EncodeToString([]byte("short"))} {
		_, _, err := Load(bad, dir)
		assert.ErrorIs(t, err, ErrBadKey, "env %q", bad)
		assert.NotContains(t, err.Error(), bad, "errors must not echo key material")
	}
}

func TestLoadRefusesLooseKeyFile(t *testing.T) {
	if os.PathSeparator != '/' {
		t.Skip("unix permissions")
	}
	dir := t.TempDir()
	_, _, err := Load("", dir)
	require.NoError(t, err)
	require.NoError(t, os.Chmod(filepath.Join(dir, KeyFile), 0o644))
	_, _, err = Load("", dir)
	assert.ErrorIs(t, err, ErrBadKey)
}
