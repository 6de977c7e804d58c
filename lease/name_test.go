package lease_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/leasehold/leasehold/lease"
)

// LeaseName is total: prefixes longer than New accepts (it used to panic
// from 63 characters on) are cut so that 32 hex digits of the hash remain.
func TestLeaseNameLongPrefix(t *testing.T) {
	for _, n := range []int{30, 31, 40, 62, 63, 64, 200} {
		prefix := strings.Repeat("a", n)
		name := lease.LeaseName(prefix, "k")
		if len(name) > 63 {
			t.Errorf("prefix of %d: name %q is %d characters", n, name, len(name))
		}
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 && n <= 63 {
			t.Errorf("prefix of %d: %q: %v", n, name, errs)
		}
		kept := min(n, 30)
		if !strings.HasPrefix(name, prefix[:kept]+"-") || len(name)-kept-1 < 32 {
			t.Errorf("prefix of %d: %q should keep %d characters of the prefix and at least 32 hex digits", n, name, kept)
		}
		if lease.LeaseName(prefix, "other") == name {
			t.Errorf("prefix of %d: distinct keys share a name", n)
		}
	}
}
