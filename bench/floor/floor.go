// Package floor is the benchmark's lower bound: a Deduplicator that makes
// exactly one unconditional Create per signal and answers Created. It does
// no deduplication at all (every signal is a new RemediationRequest), so
// its throughput and latency are the most the API server can do for one
// write per signal on the machine at hand; the benchmark reports leasehold
// against it. It lives with the benchmark and is never wired into the
// product.
package floor

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/bench/baseline"
	"github.com/leasehold/leasehold/gateway/dedup"
)

// Options configures a Dedup.
type Options struct {
	// Namespace of the RemediationRequests. Required.
	Namespace string
}

// Dedup creates one RemediationRequest per Record call. It is safe for
// concurrent use.
type Dedup struct {
	c         client.Client
	namespace string
}

var _ dedup.Deduplicator = (*Dedup)(nil)

// New returns a Dedup that creates RemediationRequests through c.
func New(c client.Client, opts Options) (*Dedup, error) {
	if c == nil {
		return nil, errors.New("floor: nil client")
	}
	if msgs := validation.IsDNS1123Label(opts.Namespace); len(msgs) > 0 {
		return nil, fmt.Errorf("floor: invalid options: Namespace %q: %v", opts.Namespace, msgs)
	}
	return &Dedup{c: c, namespace: opts.Namespace}, nil
}

// Record creates a RemediationRequest for in, shaped as the baseline's
// (fingerprint and target labels, random name suffix), and answers Created
// with an occurrence count of 1. An API error wraps dedup.ErrUnavailable.
func (d *Dedup) Record(ctx context.Context, in dedup.Incident) (dedup.Result, error) {
	if len(in.Fingerprint) != 64 {
		return dedup.Result{}, fmt.Errorf("floor: fingerprint %q is not 64 hex digits", in.Fingerprint)
	}
	rr := baseline.NewRequest(d.namespace, in)
	if err := d.c.Create(ctx, rr); err != nil {
		return dedup.Result{}, fmt.Errorf("%w: create request for fingerprint %s: %w", dedup.ErrUnavailable, in.Fingerprint, err)
	}
	return dedup.Result{Outcome: dedup.Created, Name: rr.Name, OccurrenceCount: 1}, nil
}
