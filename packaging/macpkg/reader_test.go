package macpkg

// Independent readers for what this package writes, used only by tests:
// they parse the bytes back by the format's rules rather than trusting the
// writer's own structures.

import (
	"bytes"
	"compress/zlib"
	"crypto/sha1" //nolint:gosec // xar format
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

type xarTOC struct {
	Checksum struct {
		Style  string `xml:"style,attr"`
		Offset int64  `xml:"offset"`
		Size   int64  `xml:"size"`
	} `xml:"toc>checksum"`
	Signature *struct {
		Style  string   `xml:"style,attr"`
		Offset int64    `xml:"offset"`
		Size   int64    `xml:"size"`
		Certs  []string `xml:"KeyInfo>X509Data>X509Certificate"`
	} `xml:"toc>signature"`
	Files []xarTOCFile `xml:"toc>file"`
}

type xarTOCFile struct {
	Name string `xml:"name"`
	Type string `xml:"type"`
	Mode string `xml:"mode"`
	Data *struct {
		Length   int64 `xml:"length"`
		Offset   int64 `xml:"offset"`
		Size     int64 `xml:"size"`
		Encoding struct {
			Style string `xml:"style,attr"`
		} `xml:"encoding"`
		Extracted string `xml:"extracted-checksum"`
		Archived  string `xml:"archived-checksum"`
	} `xml:"data"`
	Files []xarTOCFile `xml:"file"`
}

// parsedXar is a xar archive read back: the TOC, its compressed bytes, the
// heap, and every file's contents by path.
type parsedXar struct {
	TOC      xarTOC
	ZTOC     []byte
	Heap     []byte
	Contents map[string][]byte
}

func readXar(b []byte) (*parsedXar, error) {
	if len(b) < xarHeaderSize || binary.BigEndian.Uint32(b) != xarMagic {
		return nil, fmt.Errorf("not a xar archive")
	}
	hsize := int(binary.BigEndian.Uint16(b[4:]))
	if binary.BigEndian.Uint16(b[6:]) != 1 || binary.BigEndian.Uint32(b[24:]) != xarCksumSHA1 {
		return nil, fmt.Errorf("unexpected xar version or checksum algorithm")
	}
	zlen := binary.BigEndian.Uint64(b[8:])
	ulen := binary.BigEndian.Uint64(b[16:])
	if uint64(len(b)) < uint64(hsize)+zlen {
		return nil, fmt.Errorf("truncated TOC")
	}
	x := &parsedXar{ZTOC: b[hsize : uint64(hsize)+zlen], Heap: b[uint64(hsize)+zlen:], Contents: map[string][]byte{}}
	zr, err := zlib.NewReader(bytes.NewReader(x.ZTOC))
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	if uint64(len(raw)) != ulen {
		return nil, fmt.Errorf("TOC is %d bytes, header says %d", len(raw), ulen)
	}
	if err := xml.Unmarshal(raw, &x.TOC); err != nil {
		return nil, fmt.Errorf("TOC: %w", err)
	}
	c := x.TOC.Checksum
	sum := sha1.Sum(x.ZTOC) //nolint:gosec
	if c.Style != "sha1" || c.Size != 20 || int64(len(x.Heap)) < c.Offset+20 || !bytes.Equal(x.Heap[c.Offset:c.Offset+20], sum[:]) {
		return nil, fmt.Errorf("TOC checksum does not match the heap")
	}
	var walk func(prefix string, fs []xarTOCFile) error
	walk = func(prefix string, fs []xarTOCFile) error {
		for _, f := range fs {
			p := prefix + f.Name
			if f.Type == "directory" {
				if err := walk(p+"/", f.Files); err != nil {
					return err
				}
				continue
			}
			d := f.Data
			if d == nil || d.Offset+d.Length > int64(len(x.Heap)) {
				return fmt.Errorf("%s: data outside the heap", p)
			}
			data := x.Heap[d.Offset : d.Offset+d.Length]
			s := sha1.Sum(data) //nolint:gosec
			if hex.EncodeToString(s[:]) != d.Extracted || d.Extracted != d.Archived {
				return fmt.Errorf("%s: sha1 mismatch", p)
			}
			x.Contents[p] = data
		}
		return nil
	}
	if err := walk("", x.TOC.Files); err != nil {
		return nil, err
	}
	return x, nil
}

// bomPath is one Paths entry read back from a BOM.
type bomPath struct {
	Path          string
	Type          uint8
	Mode          uint16
	UID, GID      uint32
	Size, Cksum   uint32
	Parent, SeqNo uint32
}

func readBOM(b []byte) ([]bomPath, map[string][]byte, error) {
	if len(b) < bomHeaderSize || string(b[:8]) != "BOMStore" || binary.BigEndian.Uint32(b[8:]) != 1 {
		return nil, nil, fmt.Errorf("not a BOMStore")
	}
	u32 := func(b []byte, off int) uint32 { return binary.BigEndian.Uint32(b[off:]) }
	idxOff, varsOff := int(u32(b, 16)), int(u32(b, 24))
	n := int(u32(b, idxOff))
	blocks := make([][]byte, n)
	for i := range n {
		a, l := int(u32(b, idxOff+4+8*i)), int(u32(b, idxOff+8+8*i))
		if a+l > len(b) {
			return nil, nil, fmt.Errorf("block %d outside the file", i)
		}
		blocks[i] = b[a : a+l]
	}
	if nonNull := int(u32(b, 12)); nonNull != n-1 {
		return nil, nil, fmt.Errorf("header counts %d blocks, table has %d", nonNull, n-1)
	}
	vars := map[string][]byte{}
	nv := int(u32(b, varsOff))
	p := varsOff + 4
	for range nv {
		idx := u32(b, p)
		l := int(b[p+4])
		vars[string(b[p+5:p+5+l])] = blocks[idx]
		p += 5 + l
	}
	tree := vars["Paths"]
	if tree == nil || string(tree[:4]) != "tree" {
		return nil, nil, fmt.Errorf("no Paths tree")
	}
	leaf := blocks[u32(tree, 8)]
	if binary.BigEndian.Uint16(leaf) != 1 {
		return nil, nil, fmt.Errorf("Paths root is not a leaf")
	}
	count := int(binary.BigEndian.Uint16(leaf[2:]))
	if int(u32(tree, 16)) != count {
		return nil, nil, fmt.Errorf("tree counts %d entries, leaf has %d", u32(tree, 16), count)
	}
	var out []bomPath
	names := map[uint32]string{}
	for i := range count {
		key, val := blocks[u32(leaf, 12+8*i)], blocks[u32(leaf, 16+8*i)]
		md := blocks[u32(key, 4)]
		e := bomPath{SeqNo: u32(key, 0), Parent: u32(val, 0), Type: md[0]}
		name := strings.TrimSuffix(string(val[4:]), "\x00")
		if e.Parent == 0 {
			e.Path = name
		} else {
			e.Path = names[e.Parent] + "/" + name
		}
		names[e.SeqNo] = e.Path
		e.Mode = binary.BigEndian.Uint16(md[4:])
		e.UID, e.GID, e.Size = u32(md, 6), u32(md, 10), u32(md, 18)
		if e.Type == bomFile {
			e.Cksum = u32(md, 23)
		}
		out = append(out, e)
	}
	return out, vars, nil
}
