package lease

import (
	"crypto/sha256"
	"encoding/hex"
)

// LeaseName returns the name of the Lease that guards key for the given
// prefix: "<prefix>-<hex of SHA-256(key)>" truncated to 63 characters, a
// DNS-1123 label. The hash, not a truncation of the key, keeps distinct keys
// on distinct names (at least 128 bits of the hash survive for prefixes of
// up to 30 characters).
func LeaseName(prefix, key string) string {
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:])
	if n := 63 - len(prefix) - 1; n < len(h) {
		h = h[:n]
	}
	return prefix + "-" + h
}
