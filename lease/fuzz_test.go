package lease_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/leasehold/leasehold/lease"
)

// FuzzLeaseName checks that any key, however long or strange, maps to a
// stable name of at most 63 characters that keeps (up to 30 characters of)
// the prefix and 32 hex digits of the hash, and that LeaseName never
// panics, whatever the prefix; the name is a valid Lease name whenever the
// prefix is a DNS-1123 label.
func FuzzLeaseName(f *testing.F) {
	for _, k := range []string{"", "a", "prod/apps/Deployment/shop/web", "Ünïcödé/\x00/..", string(make([]byte, 4096))} {
		f.Add("gw-lock", k)
		f.Add("ro-lock", k)
		f.Add("a23456789012345678901234567890", k) // the longest prefix New accepts
		f.Add(strings.Repeat("p", 63), k)          // longer than New accepts
		f.Add(strings.Repeat("p", 200), k)
	}
	f.Fuzz(func(t *testing.T, prefix, key string) {
		name := lease.LeaseName(prefix, key)
		if len(name) > 63 {
			t.Fatalf("LeaseName(%q, %q) = %q: %d characters", prefix, key, name, len(name))
		}
		if errs := validation.IsDNS1123Label(prefix); len(errs) == 0 {
			if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
				t.Fatalf("LeaseName(%q, %q) = %q: %v", prefix, key, name, errs)
			}
		}
		kept := prefix[:min(len(prefix), 30)]
		if len(name) < len(kept)+1+32 || name[:len(kept)+1] != kept+"-" {
			t.Fatalf("LeaseName(%q, %q) = %q: want %q, a dash and at least 32 hex digits", prefix, key, name, kept)
		}
		if again := lease.LeaseName(prefix, key); again != name {
			t.Fatalf("LeaseName is not stable: %q then %q", name, again)
		}
	})
}

// FuzzParseToken checks that ParseToken never panics and that what it
// accepts round-trips and compares equal to itself.
func FuzzParseToken(f *testing.F) {
	for _, s := range []string{"", "0", "1", "42", "18446744073709551616", "-1", "01", "abc", " 7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := lease.ParseToken(s)
		if err != nil {
			return
		}
		if tok.String() != s {
			t.Fatalf("ParseToken(%q).String() = %q", s, tok.String())
		}
		if c, err := tok.Compare(tok); err != nil || c != 0 {
			t.Fatalf("token %q compared with itself: %d, %v", s, c, err)
		}
	})
}
