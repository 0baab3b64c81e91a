package harness

import (
	"crypto/rand"
	"encoding/hex"
)

// Suffix returns a short random hex string for names that must not collide
// with objects made by other suites on the same machine. Six hex digits keep
// "wbr-" + suffix and similar interface names well inside IFNAMSIZ (15).
func Suffix() string {
	var b [3]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:])
}

// RandomID returns a 64-hex-digit identifier shaped like a container ID.
func RandomID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
