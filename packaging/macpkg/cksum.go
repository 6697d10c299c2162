package macpkg

// cksumTable is CRC-32 with the POSIX polynomial 0x04C11DB7, MSB first (not
// the reflected IEEE table hash/crc32 uses).
var cksumTable = func() [256]uint32 {
	var t [256]uint32
	for i := range t {
		c := uint32(i) << 24
		for range 8 {
			if c&0x80000000 != 0 {
				c = c<<1 ^ 0x04C11DB7
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// Cksum is the POSIX cksum(1) CRC of b, which the BOM records per file: the
// CRC of the data followed by its length in as few bytes as it takes,
// complemented.
func Cksum(b []byte) uint32 {
	var c uint32
	for _, x := range b {
		c = c<<8 ^ cksumTable[byte(c>>24)^x]
	}
	for n := uint64(len(b)); n != 0; n >>= 8 {
		c = c<<8 ^ cksumTable[byte(c>>24)^byte(n)]
	}
	return ^c
}
