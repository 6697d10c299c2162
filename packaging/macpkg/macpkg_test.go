package macpkg

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/macho"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/internal/testenv"
	"github.com/certagent/certagent/packaging"
)

// tool returns the path of an external checker, or skips (fails under
// CERTAGENT_E2E=1) naming the Debian package.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	return testenv.RequireTool(t, name, pkg)
}

func TestCksum(t *testing.T) {
	tests := []struct {
		in   string
		want uint32
	}{
		{"", 4294967295},
		{"123456789", 930766865}, // the POSIX cksum check value
	}
	for _, tt := range tests {
		if got := Cksum([]byte(tt.in)); got != tt.want {
			t.Errorf("Cksum(%q): got %d, want %d", tt.in, got, tt.want)
		}
	}
	// Against the real cksum(1) on lengths that need 1, 2 and 3 length bytes.
	cksum := tool(t, "cksum", "coreutils")
	for _, n := range []int{1, 255, 256, 70000} {
		data := make([]byte, n)
		_, _ = rand.Read(data)
		cmd := exec.Command(cksum)
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		require.NoError(t, err)
		want, err := strconv.ParseUint(strings.Fields(string(out))[0], 10, 32)
		require.NoError(t, err)
		assert.Equal(t, uint32(want), Cksum(data), "length %d", n)
	}
}

// thinMachO is a minimal valid 64-bit Mach-O: a header with no load
// commands, padded with payload bytes.
func thinMachO(cpu, sub uint32, size int) []byte {
	b := make([]byte, size)
	binary.LittleEndian.PutUint32(b, machoMagic64)
	binary.LittleEndian.PutUint32(b[4:], cpu)
	binary.LittleEndian.PutUint32(b[8:], sub)
	binary.LittleEndian.PutUint32(b[12:], 2) // MH_EXECUTE
	for i := 32; i < size; i++ {
		b[i] = byte(i)
	}
	return b
}

func TestUniversal(t *testing.T) {
	amd := thinMachO(cpuTypeX86_64, 3, 20000)
	arm := thinMachO(cpuTypeARM64, 0, 5000)
	fat, slices, err := Universal(amd, arm)
	require.NoError(t, err)
	// Go's own Mach-O reader is the independent check.
	ff, err := macho.NewFatFile(bytes.NewReader(fat))
	require.NoError(t, err)
	require.Len(t, ff.Arches, 2)
	assert.Equal(t, macho.CpuAmd64, ff.Arches[0].Cpu)
	assert.Equal(t, macho.CpuArm64, ff.Arches[1].Cpu)
	for i, thin := range [][]byte{amd, arm} {
		a := ff.Arches[i]
		assert.Zero(t, a.Offset%(1<<fatAlign), "slice %d alignment", i)
		assert.Equal(t, thin, fat[a.Offset:a.Offset+a.Size], "slice %d bytes", i)
		assert.Equal(t, slices[i].Offset, a.Offset)
	}

	bad := []struct {
		name  string
		thins [][]byte
	}{
		{"none", nil},
		{"not mach-o", [][]byte{[]byte("#!/bin/sh\necho hello, this is not a binary\n")}},
		{"fat input", [][]byte{fat}},
		{"same arch twice", [][]byte{amd, amd}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Universal(tt.thins...)
			assert.Error(t, err)
		})
	}
}

func TestBOM(t *testing.T) {
	mtime := time.Unix(1700000000, 0)
	bin := thinMachO(cpuTypeARM64, 0, 3000)
	entries := []Entry{
		{Path: ".", Dir: true, Mode: 0o755},
		{Path: "./Library", Dir: true, Mode: 0o755},
		{Path: "./Library/Application Support", Dir: true, Mode: 0o755, GID: 80},
		{Path: "./Library/Application Support/x", Mode: 0o755, Data: bin, Archs: []Slice{{CPUType: cpuTypeARM64, Size: 3000}}},
		{Path: "./Library/readme", Mode: 0o644, Data: []byte("hello\n")},
	}
	b, err := BOM(entries, mtime)
	require.NoError(t, err)
	paths, vars, err := readBOM(b)
	require.NoError(t, err)
	require.Len(t, paths, len(entries))
	for i, e := range entries {
		p := paths[i]
		assert.Equal(t, e.Path, p.Path)
		assert.Equal(t, uint16(e.fullMode()), p.Mode, e.Path)
		assert.Equal(t, e.GID, p.GID, e.Path)
		assert.Equal(t, uint32(len(e.Data)), p.Size, e.Path)
		if e.Dir {
			assert.Equal(t, uint8(bomDir), p.Type, e.Path)
		} else {
			assert.Equal(t, uint8(bomFile), p.Type, e.Path)
			assert.Equal(t, Cksum(e.Data), p.Cksum, e.Path)
		}
	}
	for _, v := range []string{"BomInfo", "Paths", "HLIndex", "VIndex", "Size64"} {
		assert.Contains(t, vars, v)
	}
	info := vars["BomInfo"]
	assert.Equal(t, uint32(len(entries)), binary.BigEndian.Uint32(info[4:]), "BomInfo path count")
	assert.Equal(t, uint32(2), binary.BigEndian.Uint32(info[8:]), "BomInfo entries (plain files, arm64)")

	if file, err := exec.LookPath("file"); err == nil {
		f := filepath.Join(t.TempDir(), "Bom")
		require.NoError(t, os.WriteFile(f, b, 0o644))
		out, err := exec.Command(file, "-b", f).Output()
		require.NoError(t, err)
		assert.Contains(t, string(out), "bill of materials")
	}

	bad := []struct {
		name    string
		entries []Entry
	}{
		{"empty", nil},
		{"no root", []Entry{{Path: "./a", Mode: 0o644}}},
		{"orphan", []Entry{{Path: ".", Dir: true}, {Path: "./a/b", Mode: 0o644}}},
		{"duplicate", []Entry{{Path: ".", Dir: true}, {Path: "./a", Mode: 0o644}, {Path: "a", Mode: 0o644}}},
		{"escapes", []Entry{{Path: ".", Dir: true}, {Path: "../etc", Dir: true}}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := BOM(tt.entries, mtime)
			assert.Error(t, err)
		})
	}
}

// testSigner mints a throwaway CA and an RSA leaf it signed.
func testSigner(t *testing.T) (*Signer, *x509.Certificate) {
	t.Helper()
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "certagent test installer CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "certagent test installer"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(leafDER)
	require.NoError(t, err)
	return &Signer{Key: key, Chain: []*x509.Certificate{leaf, ca}}, ca
}

func TestXarSigned(t *testing.T) {
	signer, ca := testSigner(t)
	nodes := []*XarNode{
		XarFile("Distribution", 0o644, []byte("<installer-gui-script/>")),
		XarDir("a.pkg", XarFile("Payload", 0o644, []byte("payload bytes")), XarFile("Bom", 0o644, []byte("bom"))),
	}
	var buf bytes.Buffer
	require.NoError(t, WriteXar(&buf, nodes, time.Unix(1700000000, 0), signer))
	x, err := readXar(buf.Bytes())
	require.NoError(t, err)
	assert.Equal(t, []byte("payload bytes"), x.Contents["a.pkg/Payload"])
	assert.Equal(t, []byte("<installer-gui-script/>"), x.Contents["Distribution"])

	sig := x.TOC.Signature
	require.NotNil(t, sig, "signature element")
	assert.Equal(t, "RSA", sig.Style)
	require.Len(t, sig.Certs, 2)
	der, err := base64.StdEncoding.DecodeString(sig.Certs[0])
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}})
	require.NoError(t, err, "leaf chains to the test CA")
	// The signature is over the TOC checksum, which sits at heap offset 0.
	digest := x.Heap[x.TOC.Checksum.Offset : x.TOC.Checksum.Offset+20]
	require.NoError(t, rsa.VerifyPKCS1v15(leaf.PublicKey.(*rsa.PublicKey), crypto.SHA1, digest, x.Heap[sig.Offset:sig.Offset+sig.Size]))

	// openssl, independently: RSA/SHA-1 over the compressed TOC (the
	// checksum is its SHA-1, which is what the signature's DigestInfo holds).
	if openssl, err := exec.LookPath("openssl"); err == nil {
		dir := t.TempDir()
		pub, err := x509.MarshalPKIXPublicKey(leaf.PublicKey)
		require.NoError(t, err)
		files := map[string][]byte{
			"pub.pem": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
			"sig":     x.Heap[sig.Offset : sig.Offset+sig.Size],
			"ztoc":    x.ZTOC,
		}
		for n, b := range files {
			require.NoError(t, os.WriteFile(filepath.Join(dir, n), b, 0o644))
		}
		out, err := exec.Command(openssl, "dgst", "-sha1", "-verify", filepath.Join(dir, "pub.pem"),
			"-signature", filepath.Join(dir, "sig"), filepath.Join(dir, "ztoc")).CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Contains(t, string(out), "Verified OK")
	}

	// A flipped TOC byte breaks the checksum.
	tampered := bytes.Clone(buf.Bytes())
	tampered[xarHeaderSize+5] ^= 0xff
	_, err = readXar(tampered)
	assert.Error(t, err)

	other, _ := testSigner(t)
	err = WriteXar(&bytes.Buffer{}, nodes, time.Unix(0, 0), &Signer{Key: other.Key, Chain: signer.Chain})
	assert.ErrorIs(t, err, ErrSigner, "key that does not match the leaf")
}

// buildTestPkg builds a product archive from synthetic thin binaries.
func buildTestPkg(t *testing.T, dir string, signed bool) string {
	t.Helper()
	bins := t.TempDir()
	amd, arm := filepath.Join(bins, "amd64"), filepath.Join(bins, "arm64")
	require.NoError(t, os.WriteFile(amd, thinMachO(cpuTypeX86_64, 3, 40000), 0o755))
	require.NoError(t, os.WriteFile(arm, thinMachO(cpuTypeARM64, 0, 30000), 0o755))
	opts := Options{Version: "1.2.3", AMD64: amd, ARM64: arm, OutDir: dir, MTime: time.Unix(1700000000, 0)}
	if signed {
		s, _ := testSigner(t)
		keys := t.TempDir()
		opts.SignCert, opts.SignKey = filepath.Join(keys, "cert.pem"), filepath.Join(keys, "key.pem")
		var chain []byte
		for _, c := range s.Chain {
			chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		require.NoError(t, os.WriteFile(opts.SignCert, chain, 0o644))
		require.NoError(t, os.WriteFile(opts.SignKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(s.Key)}), 0o600))
	}
	p, err := Build(context.Background(), opts)
	require.NoError(t, err)
	return p
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	require.NoError(t, err)
	var out bytes.Buffer
	_, err = out.ReadFrom(zr)
	require.NoError(t, err)
	return out.Bytes()
}

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	pkg := buildTestPkg(t, dir, true)
	b, err := os.ReadFile(pkg)
	require.NoError(t, err)
	x, err := readXar(b)
	require.NoError(t, err)
	var names []string
	for n := range x.Contents {
		names = append(names, n)
	}
	assert.ElementsMatch(t, []string{"Distribution", "certagent.pkg/Bom", "certagent.pkg/PackageInfo", "certagent.pkg/Payload", "certagent.pkg/Scripts"}, names)
	require.NotNil(t, x.TOC.Signature, "signed")

	// Distribution and PackageInfo: well-formed, and naming our identifiers.
	var dist struct {
		Options struct {
			HostArch string `xml:"hostArchitectures,attr"`
		} `xml:"options"`
		PkgRefs []struct {
			ID   string `xml:"id,attr"`
			Path string `xml:",chardata"`
		} `xml:"pkg-ref"`
	}
	require.NoError(t, xml.Unmarshal(x.Contents["Distribution"], &dist))
	assert.Equal(t, "x86_64,arm64", dist.Options.HostArch)
	require.Len(t, dist.PkgRefs, 1)
	assert.Equal(t, PkgID, dist.PkgRefs[0].ID)
	assert.Equal(t, "#certagent.pkg", dist.PkgRefs[0].Path)
	var info struct {
		ID       string `xml:"identifier,attr"`
		Version  string `xml:"version,attr"`
		Location string `xml:"install-location,attr"`
		Auth     string `xml:"auth,attr"`
		Payload  struct {
			Files int `xml:"numberOfFiles,attr"`
		} `xml:"payload"`
		Pre struct {
			File string `xml:"file,attr"`
		} `xml:"scripts>preinstall"`
		Post struct {
			File string `xml:"file,attr"`
		} `xml:"scripts>postinstall"`
	}
	require.NoError(t, xml.Unmarshal(x.Contents["certagent.pkg/PackageInfo"], &info))
	assert.Equal(t, PkgID, info.ID)
	assert.Equal(t, "1.2.3", info.Version)
	assert.Equal(t, "/", info.Location)
	assert.Equal(t, "root", info.Auth)
	assert.Equal(t, "./preinstall", info.Pre.File)
	assert.Equal(t, "./postinstall", info.Post.File)

	// Payload: GNU cpio lists and extracts it; the BOM describes exactly
	// those files, with cksum(1)-compatible CRCs.
	cpio := tool(t, "cpio", "cpio")
	out := t.TempDir()
	cmd := exec.Command(cpio, "-idm", "--quiet", "--no-absolute-filenames")
	cmd.Dir = out
	cmd.Stdin = bytes.NewReader(gunzip(t, x.Contents["certagent.pkg/Payload"]))
	o, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", o)
	paths, _, err := readBOM(x.Contents["certagent.pkg/Bom"])
	require.NoError(t, err)
	assert.Equal(t, info.Payload.Files, len(paths))
	for _, p := range paths {
		st, err := os.Lstat(filepath.Join(out, p.Path))
		require.NoError(t, err, "BOM path %s not in the payload", p.Path)
		assert.Equal(t, p.Type == bomDir, st.IsDir(), p.Path)
		assert.Equal(t, fs.FileMode(p.Mode&0o777), st.Mode().Perm(), p.Path)
		if p.Type == bomFile {
			data, err := os.ReadFile(filepath.Join(out, p.Path))
			require.NoError(t, err)
			assert.Equal(t, Cksum(data), p.Cksum, p.Path)
			assert.Equal(t, uint32(len(data)), p.Size, p.Path)
		}
	}
	bin := filepath.Join(out, "Library/Application Support/certagent/certagent")
	ff, err := macho.OpenFat(bin)
	require.NoError(t, err, "universal binary")
	assert.Len(t, ff.Arches, 2)
	ff.Close()
	plist, err := fs.ReadFile(packaging.Assets, "macos/"+Label+".plist")
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(out, "Library/LaunchDaemons", Label+".plist"))
	require.NoError(t, err)
	assert.Equal(t, plist, got)

	// Scripts: exactly the two shipped scripts, executable.
	sdir := t.TempDir()
	cmd = exec.Command(cpio, "-idm", "--quiet", "--no-absolute-filenames")
	cmd.Dir = sdir
	cmd.Stdin = bytes.NewReader(gunzip(t, x.Contents["certagent.pkg/Scripts"]))
	o, err = cmd.CombinedOutput()
	require.NoError(t, err, "%s", o)
	for _, s := range []string{"preinstall", "postinstall"} {
		want, err := fs.ReadFile(packaging.Assets, "macos/"+s)
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(sdir, s))
		require.NoError(t, err)
		assert.Equal(t, want, got, s)
		st, err := os.Stat(filepath.Join(sdir, s))
		require.NoError(t, err)
		assert.Equal(t, fs.FileMode(0o755), st.Mode().Perm(), s)
		if sh, err := exec.LookPath("sh"); err == nil {
			o, err := exec.Command(sh, "-n", filepath.Join(sdir, s)).CombinedOutput()
			assert.NoError(t, err, "%s: %s", s, o)
		}
	}

	// Independent xar readers: bsdtar lists it, 7-Zip verifies every
	// file's sha1.
	bsdtar := tool(t, "bsdtar", "libarchive-tools")
	o, err = exec.Command(bsdtar, "-tf", pkg).CombinedOutput()
	require.NoError(t, err, "%s", o)
	assert.Contains(t, string(o), "certagent.pkg/Payload")
	sevenZ := tool(t, "7zz", "7zip")
	o, err = exec.Command(sevenZ, "t", pkg).CombinedOutput()
	require.NoError(t, err, "%s", o)
	assert.Contains(t, string(o), "Everything is Ok")
}

func TestBuildReproducible(t *testing.T) {
	a := buildTestPkg(t, t.TempDir(), false)
	b := buildTestPkg(t, t.TempDir(), false)
	ab, err := os.ReadFile(a)
	require.NoError(t, err)
	bb, err := os.ReadFile(b)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(ab, bb), "two builds differ")
}

func TestBuildBadOptions(t *testing.T) {
	dir := t.TempDir()
	notMachO := filepath.Join(dir, "sh")
	require.NoError(t, os.WriteFile(notMachO, []byte("#!/bin/sh\n"), 0o755))
	tests := []struct {
		name string
		opts Options
		want error
	}{
		{"no version", Options{AMD64: notMachO, ARM64: notMachO, OutDir: dir}, ErrBadOptions},
		{"version with a slash", Options{Version: "1/2", AMD64: notMachO, ARM64: notMachO, OutDir: dir}, ErrBadOptions},
		{"cert without key", Options{Version: "1", AMD64: notMachO, ARM64: notMachO, OutDir: dir, SignCert: "c"}, ErrBadOptions},
		{"not mach-o", Options{Version: "1", AMD64: notMachO, ARM64: notMachO, OutDir: dir}, ErrNotMachO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(context.Background(), tt.opts)
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
			ents, _ := os.ReadDir(dir)
			assert.Len(t, ents, 1, "nothing written")
		})
	}
}

func ExampleCksum() {
	fmt.Println(Cksum([]byte("123456789")))
	// Output: 930766865
}
