package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testRoot(t testing.TB, fp string, notAfter time.Time) *root {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root " + fp},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &root{id: fp, fingerprint: fp, cert: c, key: k}
}

func TestMinterCachesAndEvicts(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	m, err := newMinter(24*time.Hour, 2, clock)
	require.NoError(t, err)
	r := testRoot(t, "R1", now.Add(365*24*time.Hour))

	a1, err := m.leaf(r, "A.example.")
	require.NoError(t, err)
	a2, err := m.leaf(r, "a.example")
	require.NoError(t, err)
	assert.Same(t, a1, a2, "a name is minted once, case and trailing dot aside")
	_, minted := m.stats()
	assert.Equal(t, 1, minted)

	_, err = m.leaf(r, "b.example")
	require.NoError(t, err)
	_, err = m.leaf(r, "c.example") // evicts a (least recently used)
	require.NoError(t, err)
	cached, minted := m.stats()
	assert.Equal(t, 2, cached, "bounded")
	assert.Equal(t, 3, minted)
	_, err = m.leaf(r, "a.example")
	require.NoError(t, err)
	_, minted = m.stats()
	assert.Equal(t, 4, minted, "a was evicted and minted again")

	// Another root: another leaf, signed by it.
	r2 := testRoot(t, "R2", now.Add(365*24*time.Hour))
	l, err := m.leaf(r2, "a.example")
	require.NoError(t, err)
	require.NoError(t, l.Leaf.CheckSignatureFrom(r2.cert))

	// Close to expiry a cached leaf is renewed.
	now = now.Add(20 * time.Hour)
	l2, err := m.leaf(r2, "a.example")
	require.NoError(t, err)
	assert.NotSame(t, l, l2)
}

func TestMintedLeaves(t *testing.T) {
	now := time.Now()
	m, err := newMinter(24*time.Hour, 10, func() time.Time { return now })
	require.NoError(t, err)
	short := testRoot(t, "S", now.Add(2*time.Hour))
	for _, tt := range []struct {
		name, want string
		ip         bool
	}{
		{"www.Example.COM", "www.example.com", false},
		{"127.0.0.1", "127.0.0.1", true},
		{"::1", "::1", true},
		{"[::1]", "::1", true},
		{strings.Repeat("a", 63) + ".example", strings.Repeat("a", 63) + ".example", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := m.leaf(short, tt.name)
			require.NoError(t, err)
			leaf := c.Leaf
			require.NoError(t, leaf.CheckSignatureFrom(short.cert))
			if tt.ip {
				require.Len(t, leaf.IPAddresses, 1)
				assert.True(t, leaf.IPAddresses[0].Equal(net.ParseIP(tt.want)))
				assert.Empty(t, leaf.DNSNames)
			} else {
				assert.Equal(t, []string{tt.want}, leaf.DNSNames)
			}
			assert.False(t, leaf.IsCA)
			assert.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, leaf.ExtKeyUsage)
			assert.False(t, leaf.NotAfter.After(short.cert.NotAfter), "never outlives its root: got %v, want <= %v", leaf.NotAfter, short.cert.NotAfter)
		})
	}
	for _, bad := range []string{"", ".", "a..b", "bad_host!", "a b", strings.Repeat("a", 64) + ".x", strings.Repeat("a.", 130), "x\x00y", "é.example"} {
		_, err := m.leaf(short, bad)
		assert.True(t, errors.Is(err, ErrBadName), "%q: got %v, want ErrBadName", bad, err)
	}
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"example.com:443", "127.0.0.1:8443", "[::1]:443", "a:0", "a:65536", ":443", "x", "a..b:1", "[::1", "é:443"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, authority string) {
		host, target, err := parseTarget(authority)
		if err != nil {
			return
		}
		// A target that parses is canonical and parses to itself.
		h2, t2, err := parseTarget(target)
		if err != nil || h2 != host || t2 != target {
			t.Fatalf("parseTarget(%q) = %q, %q; again: %q, %q, %v", authority, host, target, h2, t2, err)
		}
		if _, err := normalizeName(host); err != nil {
			t.Fatalf("host %q of %q does not normalise: %v", host, authority, err)
		}
	})
}

// BenchmarkMintLeaf is the cost a cold cache adds to a handshake: one leaf
// signed by an ECDSA P-256 root (the key is shared, so no key generation).
func BenchmarkMintLeaf(b *testing.B) {
	now := time.Now()
	m, err := newMinter(24*time.Hour, 1<<20, func() time.Time { return now })
	if err != nil {
		b.Fatal(err)
	}
	r := testRoot(b, "B", now.Add(365*24*time.Hour))
	i := 0
	for b.Loop() {
		i++
		if _, err := m.leaf(r, "n"+strconv.Itoa(i)+".example"); err != nil {
			b.Fatal(err)
		}
	}
}
