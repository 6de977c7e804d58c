package lease

import (
	"context"
	"errors"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
)

// throttledError is client-go's client-side rate limiter refusing a
// request because waiting for its turn would pass the context's deadline
// ("rate: Wait(n=1) would exceed context deadline", from
// golang.org/x/time/rate, which exports no sentinel for it). It matches
// context.DeadlineExceeded, so callers can tell a call that ran out of time
// from one that failed, and keeps the original message.
//
// It does not mean the request was never sent: client-go asks the limiter
// again before it retries a request answered with a 5xx and Retry-After
// (such as a 504 for a write that may still be applied), and reports the
// refusal alone. So for a write it is as ambiguous as a timeout.
type throttledError struct{ err error }

func (e *throttledError) Error() string   { return e.err.Error() }
func (e *throttledError) Unwrap() []error { return []error{e.err, context.DeadlineExceeded} }

// rateLimiterDeadline is the text golang.org/x/time/rate gives the error.
const rateLimiterDeadline = "would exceed context deadline"

// classify wraps the rate limiter's deadline error; other errors pass
// unchanged.
func classify(err error) error {
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), rateLimiterDeadline) {
		return err
	}
	return &throttledError{err: err}
}

// leaseClient is the Lease API as the Locker calls it: the typed client,
// with errors classified at this layer.
type leaseClient struct {
	coordinationv1client.LeaseInterface
}

func (c leaseClient) Get(ctx context.Context, name string, o metav1.GetOptions) (*coordinationv1.Lease, error) {
	got, err := c.LeaseInterface.Get(ctx, name, o)
	return got, classify(err)
}

func (c leaseClient) List(ctx context.Context, o metav1.ListOptions) (*coordinationv1.LeaseList, error) {
	got, err := c.LeaseInterface.List(ctx, o)
	return got, classify(err)
}

func (c leaseClient) Create(ctx context.Context, l *coordinationv1.Lease, o metav1.CreateOptions) (*coordinationv1.Lease, error) {
	got, err := c.LeaseInterface.Create(ctx, l, o)
	return got, classify(err)
}

func (c leaseClient) Update(ctx context.Context, l *coordinationv1.Lease, o metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	got, err := c.LeaseInterface.Update(ctx, l, o)
	return got, classify(err)
}

func (c leaseClient) Delete(ctx context.Context, name string, o metav1.DeleteOptions) error {
	return classify(c.LeaseInterface.Delete(ctx, name, o))
}

func (c leaseClient) Watch(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	w, err := c.LeaseInterface.Watch(ctx, o)
	return w, classify(err)
}
