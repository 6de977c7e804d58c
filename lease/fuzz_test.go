package lease_test

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/leasehold/leasehold/lease"
)

// FuzzLeaseName checks that any key, however long or strange, maps to a
// valid Lease name that keeps the prefix and is stable.
func FuzzLeaseName(f *testing.F) {
	for _, k := range []string{"", "a", "prod/apps/Deployment/shop/web", "Ünïcödé/\x00/..", string(make([]byte, 4096))} {
		f.Add("gw-lock", k)
		f.Add("ro-lock", k)
		f.Add("a23456789012345678901234567890", k) // the longest prefix New accepts
	}
	f.Fuzz(func(t *testing.T, prefix, key string) {
		if errs := validation.IsDNS1123Label(prefix); len(errs) > 0 || len(prefix) > 30 {
			t.Skip("New rejects this prefix")
		}
		name := lease.LeaseName(prefix, key)
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
			t.Fatalf("LeaseName(%q, %q) = %q: %v", prefix, key, name, errs)
		}
		if len(name) < len(prefix)+1+32 || name[:len(prefix)+1] != prefix+"-" {
			t.Fatalf("LeaseName(%q, %q) = %q: want the prefix and at least 32 hex digits", prefix, key, name)
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
