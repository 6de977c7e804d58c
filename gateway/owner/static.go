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

// Func is a Resolver made of a function, for tests of code that consumes a
// Resolver and must see it fail or block.
type Func func(ctx context.Context, obj v1alpha1.TargetRef, labels map[string]string) (v1alpha1.TargetRef, bool, error)

var (
	_ Resolver = Static(nil)
	_ Resolver = Identity{}
	_ Resolver = Func(nil)
)

// Resolve returns s[obj] and true, or obj and false.
func (s Static) Resolve(_ context.Context, obj v1alpha1.TargetRef, _ map[string]string) (v1alpha1.TargetRef, bool, error) {
	if to, ok := s[obj]; ok {
		return to, true, nil
	}
	return obj, false, nil
}

// Resolve calls f.
func (f Func) Resolve(ctx context.Context, obj v1alpha1.TargetRef, labels map[string]string) (v1alpha1.TargetRef, bool, error) {
	return f(ctx, obj, labels)
}
