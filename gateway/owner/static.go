package owner

import (
	"context"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// Static is a Resolver backed by a fixed map, for the unit tests of code
// that consumes a Resolver: an object that is a key resolves to its value
// and true, any other object to itself and false. Keys are whole
// TargetRefs, compared field by field. A Static must not be written while
// it is in use.
type Static map[v1alpha1.TargetRef]v1alpha1.TargetRef

var (
	_ Resolver = Static(nil)
	_ Resolver = Identity{}
)

// Resolve returns s[obj] and true, or obj and false.
func (s Static) Resolve(_ context.Context, obj v1alpha1.TargetRef) (v1alpha1.TargetRef, bool) {
	if to, ok := s[obj]; ok {
		return to, true
	}
	return obj, false
}
