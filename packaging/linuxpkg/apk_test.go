package linuxpkg_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha1" //nolint:gosec // apk-tools' per-file checksum is SHA-1
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAPK checks the apk the way apk-tools would (Debian has no apk-tools
// to run): two gzip members, control then data; .PKGINFO's datahash is the
// SHA-256 of the data member; every data file carries its SHA-1 in the
// APK-TOOLS.checksum.SHA1 PAX record.
func TestAPK(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(buildPackages(t, "1.0.0", "apk")["apk"])
	require.NoError(t, err)

	r := bytes.NewReader(b)
	var members [][]byte
	for r.Len() > 0 {
		start := len(b) - r.Len()
		zr, err := gzip.NewReader(r) // *bytes.Reader: no read-ahead, so r stops at the member's end
		require.NoError(t, err)
		zr.Multistream(false)
		_, err = io.Copy(io.Discard, zr)
		require.NoError(t, err)
		members = append(members, b[start:len(b)-r.Len()])
	}
	require.Len(t, members, 2, "unsigned apk: control and data members")

	var pkginfo string
	files := func(member []byte) map[string]*tar.Header {
		zr, err := gzip.NewReader(bytes.NewReader(member))
		require.NoError(t, err)
		zr.Multistream(false)
		tr := tar.NewReader(zr)
		out := map[string]*tar.Header{}
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
			data, err := io.ReadAll(tr)
			require.NoError(t, err)
			switch {
			case h.Name == ".PKGINFO":
				pkginfo = string(data) // nfpm writes no checksum record for it
			case h.Typeflag == tar.TypeReg:
				sum := sha1.Sum(data) //nolint:gosec
				assert.Equal(t, hex.EncodeToString(sum[:]), h.PAXRecords["APK-TOOLS.checksum.SHA1"], h.Name)
			}
			out[h.Name] = h
		}
		return out
	}
	control := files(members[0])
	require.Contains(t, control, ".PKGINFO")
	info := map[string]string{}
	for _, line := range strings.Split(pkginfo, "\n") {
		if k, v, ok := strings.Cut(line, " = "); ok {
			info[k] = v
		}
	}
	assert.Equal(t, "certagent", info["pkgname"])
	assert.Equal(t, "1.0.0", info["pkgver"])
	assert.Equal(t, "x86_64", info["arch"])
	sum := sha256.Sum256(members[1])
	assert.Equal(t, hex.EncodeToString(sum[:]), info["datahash"], "datahash")
	for _, s := range []string{".pre-deinstall", ".post-deinstall", ".post-install", ".post-upgrade"} {
		assert.Contains(t, control, s)
	}

	data := files(members[1])
	for _, p := range []string{"usr/bin/certagent", "etc/certagent/config.json", "usr/lib/systemd/system/certagent.service"} {
		assert.Contains(t, data, p)
	}
}
