package owner

import (
	"context"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// Resolver maps the object a signal names to the workload that owns it: the
// top-level controller owner reached through ownerReferences (a Pod of a
// Deployment's ReplicaSet resolves to the Deployment). It never fails: when
// the chain cannot be followed (object gone, no permission, unknown kind,
// another cluster) it returns the object itself, so a signal is never
// dropped for that reason. The boolean reports whether an owner was found.
type Resolver interface {
	Resolve(ctx context.Context, obj v1alpha1.TargetRef) (v1alpha1.TargetRef, bool)
}

// Identity is the Resolver that resolves nothing: every object is its own
// workload. Tests and out-of-cluster runs without read access use it.
type Identity struct{}

// Resolve returns obj.
func (Identity) Resolve(_ context.Context, obj v1alpha1.TargetRef) (v1alpha1.TargetRef, bool) {
	return obj, false
}
