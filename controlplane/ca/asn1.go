package ca

import "encoding/asn1"

// bitString extracts the subjectPublicKey BIT STRING from a DER
// SubjectPublicKeyInfo.
func bitString(spki []byte) ([]byte, bool) {
	var info struct {
		Algorithm asn1.RawValue
		PublicKey asn1.BitString
	}
	if rest, err := asn1.Unmarshal(spki, &info); err != nil || len(rest) != 0 {
		return nil, false
	}
	return info.PublicKey.RightAlign(), true
}
