package macpkg

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path"
	"strings"
	"time"
)

// BOM ("bill of materials") layout, as Apple's Installer reads it: a
// 512-byte header, named blocks ("vars"), the blocks themselves, and the
// block table. Big-endian throughout. Block 0 is the null block. Written from
// the format notes published by bomutils and stuckliste; no code copied.
const (
	bomHeaderSize = 512
	// pathsBlockSize is the node size Apple uses for the Paths tree; one
	// leaf holds (4096-12)/8 = 510 entries, far more than we ship.
	pathsBlockSize = 4096
	smallBlockSize = 128
	maxLeafEntries = (pathsBlockSize - 12) / 8
	// bomFlags marks an entry as carrying full metadata (not path-only).
	bomFlags = 0x000f
	bomFile  = 1
	bomDir   = 2
)

type bomBuilder struct {
	blocks [][]byte // blocks[0] is the null block
}

func (b *bomBuilder) add(data []byte) uint32 {
	b.blocks = append(b.blocks, data)
	return uint32(len(b.blocks) - 1)
}

type be struct{ bytes.Buffer }

func (w *be) u8(v uint8)   { w.WriteByte(v) }
func (w *be) u16(v uint16) { _ = binary.Write(&w.Buffer, binary.BigEndian, v) }
func (w *be) u32(v uint32) { _ = binary.Write(&w.Buffer, binary.BigEndian, v) }

// tree writes a tree header and its single leaf node (entries are
// key/value block index pairs) and returns the header's block index.
func (b *bomBuilder) tree(blockSize int, pairs [][2]uint32) uint32 {
	var node be
	node.u16(1) // leaf
	node.u16(uint16(len(pairs)))
	node.u32(0) // next
	node.u32(0) // prev
	for _, p := range pairs {
		node.u32(p[0])
		node.u32(p[1])
	}
	leaf := make([]byte, blockSize)
	copy(leaf, node.Bytes())
	leafIdx := b.add(leaf)
	var h be
	h.WriteString("tree")
	h.u32(1)
	h.u32(leafIdx)
	h.u32(uint32(blockSize))
	h.u32(uint32(len(pairs)))
	h.u8(0)
	return b.add(h.Bytes())
}

// BOM returns the Bom file describing entries (the payload's files and
// directories, parents listed before their children, starting with ".").
func BOM(entries []Entry, mtime time.Time) ([]byte, error) {
	if len(entries) == 0 || entries[0].Path != "." {
		return nil, fmt.Errorf("macpkg: bom: the first entry must be \".\"")
	}
	if len(entries) > maxLeafEntries {
		return nil, fmt.Errorf("macpkg: bom: %d entries, at most %d supported", len(entries), maxLeafEntries)
	}
	b := &bomBuilder{blocks: [][]byte{nil}}
	seq := map[string]uint32{}
	var pairs [][2]uint32
	archSize := map[uint32]uint32{}
	for i, e := range entries {
		id := uint32(i + 1)
		clean := path.Clean(e.Path) // "./Library" and "Library" are one path
		if _, dup := seq[clean]; dup {
			return nil, fmt.Errorf("macpkg: bom: %s listed twice", e.Path)
		}
		seq[clean] = id
		var parent uint32
		name := "."
		if i > 0 {
			if clean == "." || strings.HasPrefix(clean, "../") || path.IsAbs(clean) {
				return nil, fmt.Errorf("macpkg: bom: %s is not below the install root", e.Path)
			}
			dir := path.Dir(clean)
			p, ok := seq[dir]
			if !ok {
				return nil, fmt.Errorf("macpkg: bom: %s listed before its directory %s", e.Path, dir)
			}
			parent, name = p, path.Base(clean)
		}
		var md be
		if e.Dir {
			md.u8(bomDir)
		} else {
			md.u8(bomFile)
		}
		md.u8(1)
		md.u16(bomFlags)
		md.u16(uint16(e.fullMode()))
		md.u32(e.UID)
		md.u32(e.GID)
		md.u32(uint32(mtime.Unix()))
		md.u32(uint32(len(e.Data)))
		md.u8(1)
		if !e.Dir {
			md.u32(Cksum(e.Data))
		}
		md.Write(make([]byte, 8))
		mdIdx := b.add(md.Bytes())

		var key be // sequence number and metadata block
		key.u32(id)
		key.u32(mdIdx)
		var val be // parent's sequence number and the name
		val.u32(parent)
		val.WriteString(name)
		val.u8(0)
		pairs = append(pairs, [2]uint32{b.add(key.Bytes()), b.add(val.Bytes())})

		if !e.Dir {
			if len(e.Archs) == 0 {
				archSize[0] += uint32(len(e.Data))
			}
			for _, s := range e.Archs {
				archSize[s.CPUType] += s.Size
			}
		}
	}
	paths := b.tree(pathsBlockSize, pairs)
	hl := b.tree(pathsBlockSize, nil)
	size64 := b.tree(smallBlockSize, nil)
	var vi be
	vi.u32(1)
	vi.u32(b.tree(smallBlockSize, nil))
	vi.u32(0) // empty tree
	vi.u8(1)  // empty tree
	vindex := b.add(vi.Bytes())

	var info be
	info.u32(1)
	info.u32(uint32(len(entries)))
	info.u32(uint32(len(archSize)))
	// Fixed order (plain files, x86_64, arm64) keeps the output stable.
	for _, ct := range []uint32{0, cpuTypeX86_64, cpuTypeARM64} {
		if sz, ok := archSize[ct]; ok {
			info.u32(ct)
			info.u32(0)
			info.u32(sz)
			info.u32(0)
		}
	}
	bomInfo := b.add(info.Bytes())

	vars := []struct {
		name string
		idx  uint32
	}{{"BomInfo", bomInfo}, {"Paths", paths}, {"HLIndex", hl}, {"VIndex", vindex}, {"Size64", size64}}
	var vb be
	vb.u32(uint32(len(vars)))
	for _, v := range vars {
		vb.u32(v.idx)
		vb.u8(uint8(len(v.name)))
		vb.WriteString(v.name)
	}

	// Layout: header, vars, blocks, block table.
	var body be
	body.Write(make([]byte, bomHeaderSize))
	varsOff := uint32(body.Len())
	body.Write(vb.Bytes())
	offsets := make([]uint32, len(b.blocks))
	for i, blk := range b.blocks {
		if i == 0 {
			continue
		}
		offsets[i] = uint32(body.Len())
		body.Write(blk)
	}
	var table be
	table.u32(uint32(len(b.blocks)))
	for i, blk := range b.blocks {
		table.u32(offsets[i])
		table.u32(uint32(len(blk)))
	}
	// An empty free list, padded with the two null entries Apple's
	// writer leaves.
	table.u32(2)
	table.Write(make([]byte, 16))
	indexOff := uint32(body.Len())
	body.Write(table.Bytes())

	out := body.Bytes()
	copy(out, "BOMStore")
	binary.BigEndian.PutUint32(out[8:], 1)
	binary.BigEndian.PutUint32(out[12:], uint32(len(b.blocks)-1))
	binary.BigEndian.PutUint32(out[16:], indexOff)
	binary.BigEndian.PutUint32(out[20:], uint32(table.Len()))
	binary.BigEndian.PutUint32(out[24:], varsOff)
	binary.BigEndian.PutUint32(out[28:], uint32(vb.Len()))
	return out, nil
}
