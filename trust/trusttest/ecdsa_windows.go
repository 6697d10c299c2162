package trusttest

// wineFullECDSA makes mint sign ECDSA certificates again until r and s
// have full length. Wine's crypt32 concatenates the two integers as
// decoded, without padding them to the curve's size, so a root whose r or
// s begins with a zero byte (about 1 in 128) fails CertGetCertificateChain
// with CERT_TRUST_IS_NOT_SIGNATURE_VALID under Wine, and the Windows tests
// that run there (scripts/wine-test.sh) would fail at random; Windows itself
// verifies such signatures.
const wineFullECDSA = true
