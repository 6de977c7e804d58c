package owner

import (
	"context"
	"errors"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// Resolver maps the object a signal names to the workload that owns it: the
// top-level controller owner reached through ownerReferences (a Pod of a
// Deployment's ReplicaSet resolves to the Deployment).
//
// labels are the signal's labels (nil when it has none); a Resolver may
// read owner labels from them to resolve an object that no longer exists.
// The boolean reports whether an owner other than obj was found; with it
// false, the answer is obj itself. The error, which wraps ErrUnresolved,
// says that the workload cannot be told now: the caller must not record
// the signal under obj instead, since that would split one incident in
// two.
type Resolver interface {
	Resolve(ctx context.Context, obj v1alpha1.TargetRef, labels map[string]string) (v1alpha1.TargetRef, bool, error)
}

// ErrUnresolved is wrapped by every error a Resolver returns: the workload
// of the object could not be determined now, and no answer was guessed.
// Sending the signal again later may succeed.
var ErrUnresolved = errors.New("owner unresolved")

// LookupError is the error of a Resolve that stopped at a lookup it could
// not complete. It matches ErrUnresolved and the error of the lookup with
// errors.Is.
type LookupError struct {
	// Reason classifies the failure, as the reason label of errors_total:
	// timeout, unavailable, forbidden, unauthorized or canceled.
	Reason string
	// Kind, Namespace and Name identify the object whose lookup failed:
	// the signal's object, one of its owners, or a candidate owner of an
	// object that is gone. Namespace is empty for cluster-scoped kinds.
	Kind, Namespace, Name string
	// Err is the lookup's error.
	Err error
}

func (e *LookupError) Error() string {
	obj := e.Name
	if e.Namespace != "" {
		obj = e.Namespace + "/" + e.Name
	}
	return "look up " + e.Kind + " " + obj + ": " + e.Reason + ": " + e.Err.Error()
}

// Unwrap returns ErrUnresolved and the lookup's error.
func (e *LookupError) Unwrap() []error { return []error{ErrUnresolved, e.Err} }

// Identity is the Resolver that resolves nothing: every object is its own
// workload. Tests and out-of-cluster runs without read access use it.
type Identity struct{}

// Resolve returns obj.
func (Identity) Resolve(_ context.Context, obj v1alpha1.TargetRef, _ map[string]string) (v1alpha1.TargetRef, bool, error) {
	return obj, false, nil
}
