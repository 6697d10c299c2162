//go:build !windows

package trusttest

// wineFullECDSA: see ecdsa_windows.go. Elsewhere certificates keep every
// signature length ECDSA produces.
const wineFullECDSA = false
