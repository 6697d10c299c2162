package macpkg

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrNotMachO reports input that is not a thin 64-bit little-endian Mach-O
// executable (what Go builds for darwin/amd64 and darwin/arm64).
var ErrNotMachO = errors.New("macpkg: not a thin 64-bit Mach-O")

// Mach-O constants from <mach-o/loader.h> and <mach/machine.h>.
const (
	machoMagic64  = 0xfeedfacf
	fatMagic      = 0xcafebabe
	cpuTypeX86_64 = 0x01000007
	cpuTypeARM64  = 0x0100000c
	// fatAlign is 2^14: the 16 KiB page size of arm64 macOS, which lipo
	// also uses for arm64 slices; x86_64 is happy with it too.
	fatAlign = 14
)

// Slice is one architecture inside a universal binary.
type Slice struct {
	CPUType, CPUSubtype uint32
	Offset, Size        uint32
}

// Universal joins thin Mach-O executables into one universal ("fat") file,
// as `lipo -create` does: a big-endian fat header, one fat_arch record per
// slice, and each slice at a 16 KiB-aligned offset. Slices keep their own
// code signatures (the Go linker ad-hoc signs arm64).
func Universal(thins ...[]byte) ([]byte, []Slice, error) {
	if len(thins) == 0 {
		return nil, nil, fmt.Errorf("%w: no slices", ErrNotMachO)
	}
	slices := make([]Slice, len(thins))
	seen := map[uint32]bool{}
	for i, b := range thins {
		if len(b) < 32 || binary.LittleEndian.Uint32(b) != machoMagic64 {
			return nil, nil, fmt.Errorf("%w: slice %d", ErrNotMachO, i)
		}
		ct := binary.LittleEndian.Uint32(b[4:])
		if seen[ct] {
			return nil, nil, fmt.Errorf("macpkg: universal: cpu type %#x given twice", ct)
		}
		seen[ct] = true
		slices[i] = Slice{CPUType: ct, CPUSubtype: binary.LittleEndian.Uint32(b[8:]), Size: uint32(len(b))}
	}
	const align = 1 << fatAlign
	off := uint64(align) // header and records fit in the first page
	for i := range slices {
		if off+uint64(slices[i].Size) > 1<<32-1 {
			return nil, nil, errors.New("macpkg: universal: larger than 4 GiB")
		}
		slices[i].Offset = uint32(off)
		off = (off + uint64(slices[i].Size) + align - 1) &^ (align - 1)
	}
	last := slices[len(slices)-1]
	out := make([]byte, last.Offset+last.Size)
	binary.BigEndian.PutUint32(out, fatMagic)
	binary.BigEndian.PutUint32(out[4:], uint32(len(slices)))
	for i, s := range slices {
		rec := out[8+20*i:]
		binary.BigEndian.PutUint32(rec, s.CPUType)
		binary.BigEndian.PutUint32(rec[4:], s.CPUSubtype)
		binary.BigEndian.PutUint32(rec[8:], s.Offset)
		binary.BigEndian.PutUint32(rec[12:], s.Size)
		binary.BigEndian.PutUint32(rec[16:], fatAlign)
		copy(out[s.Offset:], thins[i])
	}
	return out, slices, nil
}
