package lease

import (
	"crypto/sha256"
	"encoding/hex"
)

// LeaseName returns the name of the Lease that guards key for the given
// prefix: "<prefix>-<hex of SHA-256(key)>" truncated to 63 characters, a
// DNS-1123 label when the prefix is one. The hash, not a truncation of the
// key, keeps distinct keys on distinct names: at least 32 hex digits (128
// bits) of it always remain. New accepts prefixes of up to 30 characters,
// which keep all of the prefix; LeaseName itself never fails, and cuts a
// longer prefix to 30 characters.
func LeaseName(prefix, key string) string {
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:])
	if len(prefix) > maxPrefixLen {
		prefix = prefix[:maxPrefixLen]
	}
	return prefix + "-" + h[:63-len(prefix)-1]
}
