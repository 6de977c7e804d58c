package lease

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/resourceversion"
)

// Token is a fencing token: the resourceVersion returned by the write that
// acquired the lock (Create, takeover Update or local hand-off Update).
//
// Resource versions of one resource type are comparable since Kubernetes
// 1.35 and keep increasing across deletes and re-creates, so tokens of one
// key strictly increase over every successful acquisition, across releases,
// takeovers and processes. The one assumption: etcd is never restored to an
// older revision.
//
// Pass the token to the resource the lock protects and let that resource
// reject writes carrying a token lower than the highest it has accepted;
// that is what makes a paused, stale holder harmless.
type Token struct {
	rv string
}

// ParseToken parses a token previously produced by Token.String.
func ParseToken(s string) (Token, error) {
	if _, err := resourceversion.CompareResourceVersion(s, s); err != nil {
		return Token{}, fmt.Errorf("parse token: %w", err)
	}
	return Token{rv: s}, nil
}

// String returns the token as a decimal string; ParseToken reverses it.
func (t Token) String() string { return t.rv }

// IsZero reports whether t is the zero Token, which no lock ever has.
func (t Token) IsZero() bool { return t.rv == "" }

// Compare returns -1, 0 or +1 as t is older than, the same as, or newer than
// other. It fails if either token is zero or malformed.
func (t Token) Compare(other Token) (int, error) {
	c, err := resourceversion.CompareResourceVersion(t.rv, other.rv)
	if err != nil {
		return 0, fmt.Errorf("compare tokens: %w", err)
	}
	return c, nil
}
