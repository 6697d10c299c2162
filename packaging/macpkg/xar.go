package macpkg

import (
	"bytes"
	"compress/zlib"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // xar's TOC checksum and Apple's RSA signature are SHA-1 by format
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// xar archive layout: a 28-byte big-endian header, the zlib-compressed XML
// table of contents, then the heap. The heap starts with the SHA-1 of the
// compressed TOC (and, when signed, the RSA signature over that checksum);
// file data follows, stored uncompressed (Payload and Scripts are already
// gzip'd).
const (
	xarMagic      = 0x78617221 // "xar!"
	xarHeaderSize = 28
	xarVersion    = 1
	xarCksumSHA1  = 1
	sha1Size      = 20
)

// XarNode is a file or a directory (with Children) in a xar archive.
type XarNode struct {
	Name     string
	Data     []byte
	Mode     uint32
	Children []*XarNode
	dir      bool
}

// XarFile and XarDir build nodes.
func XarFile(name string, mode uint32, data []byte) *XarNode {
	return &XarNode{Name: name, Mode: mode, Data: data}
}

// XarDir is a directory node.
func XarDir(name string, children ...*XarNode) *XarNode {
	return &XarNode{Name: name, Mode: 0o755, Children: children, dir: true}
}

// Signer signs a product archive the way productsign does for the RSA
// signature: PKCS#1 v1.5 over the TOC's SHA-1, with the certificate chain
// (leaf first) in the TOC.
type Signer struct {
	Key   *rsa.PrivateKey
	Chain []*x509.Certificate
}

// ErrSigner reports an unusable signing key or chain.
var ErrSigner = errors.New("macpkg: bad signer")

// WriteXar writes nodes as a xar archive.
func WriteXar(w io.Writer, nodes []*XarNode, mtime time.Time, signer *Signer) error {
	var heapFiles [][]byte
	sigSize := 0
	if signer != nil {
		if signer.Key == nil || len(signer.Chain) == 0 {
			return fmt.Errorf("%w: key and at least the leaf certificate are required", ErrSigner)
		}
		if !signer.Key.PublicKey.Equal(signer.Chain[0].PublicKey) {
			return fmt.Errorf("%w: the key does not match the leaf certificate", ErrSigner)
		}
		sigSize = signer.Key.Size()
	}
	heapOff := sha1Size + sigSize

	var toc strings.Builder
	toc.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n<xar>\n <toc>\n")
	fmt.Fprintf(&toc, "  <checksum style=\"sha1\">\n   <offset>0</offset>\n   <size>%d</size>\n  </checksum>\n", sha1Size)
	fmt.Fprintf(&toc, "  <creation-time>%s</creation-time>\n", mtime.UTC().Format("2006-01-02T15:04:05"))
	if signer != nil {
		fmt.Fprintf(&toc, "  <signature style=\"RSA\">\n   <offset>%d</offset>\n   <size>%d</size>\n", sha1Size, sigSize)
		toc.WriteString("   <KeyInfo xmlns=\"http://www.w3.org/2000/09/xmldsig#\">\n    <X509Data>\n")
		for _, c := range signer.Chain {
			fmt.Fprintf(&toc, "     <X509Certificate>%s</X509Certificate>\n", base64.StdEncoding.EncodeToString(c.Raw))
		}
		toc.WriteString("    </X509Data>\n   </KeyInfo>\n  </signature>\n")
	}
	id := 0
	var walk func(n *XarNode, depth int)
	walk = func(n *XarNode, depth int) {
		id++
		ind := strings.Repeat(" ", depth)
		fmt.Fprintf(&toc, "%s<file id=\"%d\">\n", ind, id)
		if !n.dir {
			sum := sha1.Sum(n.Data) //nolint:gosec // format-mandated
			h := hex.EncodeToString(sum[:])
			fmt.Fprintf(&toc, "%s <data>\n%s  <length>%d</length>\n%s  <offset>%d</offset>\n%s  <size>%d</size>\n"+
				"%s  <encoding style=\"application/octet-stream\"/>\n"+
				"%s  <extracted-checksum style=\"sha1\">%s</extracted-checksum>\n"+
				"%s  <archived-checksum style=\"sha1\">%s</archived-checksum>\n%s </data>\n",
				ind, ind, len(n.Data), ind, heapOff, ind, len(n.Data), ind, ind, h, ind, h, ind)
			heapFiles = append(heapFiles, n.Data)
			heapOff += len(n.Data)
		}
		typ := "file"
		if n.dir {
			typ = "directory"
		}
		t := mtime.UTC().Format("2006-01-02T15:04:05Z")
		fmt.Fprintf(&toc, "%s <ctime>%s</ctime>\n%s <mtime>%s</mtime>\n%s <atime>%s</atime>\n", ind, t, ind, t, ind, t)
		fmt.Fprintf(&toc, "%s <group>wheel</group>\n%s <gid>0</gid>\n%s <user>root</user>\n%s <uid>0</uid>\n", ind, ind, ind, ind)
		fmt.Fprintf(&toc, "%s <mode>%04o</mode>\n%s <type>%s</type>\n", ind, n.Mode&0o7777, ind, typ)
		var name bytes.Buffer
		_ = xml.EscapeText(&name, []byte(n.Name))
		fmt.Fprintf(&toc, "%s <name>%s</name>\n", ind, name.String())
		for _, c := range n.Children {
			walk(c, depth+1)
		}
		fmt.Fprintf(&toc, "%s</file>\n", ind)
	}
	for _, n := range nodes {
		walk(n, 2)
	}
	toc.WriteString(" </toc>\n</xar>\n")

	var ztoc bytes.Buffer
	zw, err := zlib.NewWriterLevel(&ztoc, zlib.BestCompression)
	if err != nil {
		return fmt.Errorf("macpkg: xar toc: %w", err)
	}
	if _, err := io.WriteString(zw, toc.String()); err != nil {
		return fmt.Errorf("macpkg: xar toc: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("macpkg: xar toc: %w", err)
	}
	sum := sha1.Sum(ztoc.Bytes()) //nolint:gosec // format-mandated

	hdr := make([]byte, xarHeaderSize)
	binary.BigEndian.PutUint32(hdr, xarMagic)
	binary.BigEndian.PutUint16(hdr[4:], xarHeaderSize)
	binary.BigEndian.PutUint16(hdr[6:], xarVersion)
	binary.BigEndian.PutUint64(hdr[8:], uint64(ztoc.Len()))
	binary.BigEndian.PutUint64(hdr[16:], uint64(len(toc.String())))
	binary.BigEndian.PutUint32(hdr[24:], xarCksumSHA1)
	parts := [][]byte{hdr, ztoc.Bytes(), sum[:]}
	if signer != nil {
		// PKCS#1 v1.5 is deterministic, so a signed build is reproducible
		// too.
		sig, err := rsa.SignPKCS1v15(rand.Reader, signer.Key, crypto.SHA1, sum[:])
		if err != nil {
			return fmt.Errorf("macpkg: xar signature: %w", err)
		}
		parts = append(parts, sig)
	}
	parts = append(parts, heapFiles...)
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			return fmt.Errorf("macpkg: xar: %w", err)
		}
	}
	return nil
}
