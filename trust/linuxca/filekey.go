package linuxca

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"time"

	"github.com/certagent/certagent/trust"
)

// fileKey identifies one version of a file: a rewrite (rename over it)
// changes the inode, an in-place write changes size or mtime.
type fileKey struct {
	size  int64
	mtime time.Time
	ino   uint64
}

func statKey(path string) (fileKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileKey{}, err
	}
	return fileKey{size: st.Size(), mtime: st.ModTime(), ino: inode(st)}, nil
}

// nextPEMCert parses the next PEM block of data. It returns the
// certificates found (none for a non-certificate or unparsable block) and
// the rest; rest is nil when data holds no more blocks.
func nextPEMCert(data []byte) ([]*trust.Cert, []byte) {
	b, rest := pem.Decode(data)
	if b == nil {
		return nil, nil
	}
	if b.Type != "CERTIFICATE" {
		return nil, rest
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, rest
	}
	return []*trust.Cert{trust.NewCert(c)}, rest
}
