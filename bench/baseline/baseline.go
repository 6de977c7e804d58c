package baseline

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/backoff"
	"github.com/leasehold/leasehold/gateway/dedup"
	"github.com/leasehold/leasehold/lease"
)

// LeasePrefix starts the name of every Lease the baseline writes, as in the
// original design. The rest of the name is lease.LeaseName's hash of the
// fingerprint.
const LeasePrefix = "gw-lock"

// Dedup is the original design's deduplication; see the package
// documentation. It is safe for concurrent use, and it is not safe in the
// sense that Deduplicator promises: that is what it is measured for.
type Dedup struct {
	c      client.Client
	leases coordinationv1client.LeasesGetter
	opts   Options
}

var _ dedup.Deduplicator = (*Dedup)(nil)

// New returns a Dedup that writes RemediationRequests through c and Leases
// through leases. Both must read from the API server, not from a cache, as
// the original required.
func New(c client.Client, leases coordinationv1client.LeasesGetter, opts Options) (*Dedup, error) {
	if c == nil {
		return nil, errors.New("baseline: nil client")
	}
	if leases == nil {
		return nil, errors.New("baseline: nil Leases client")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Dedup{c: c, leases: leases, opts: opts}, nil
}

// errHeld is the failure of one lock attempt, which Retry spaces and counts.
var errHeld = errors.New("lock held by another pod")

// Record counts one incident with the original algorithm. Errors wrap
// dedup.ErrBusy (lock attempts exhausted; the message names the
// fingerprint), dedup.ErrUnavailable (any API error outside counting and
// release), or the context's error.
func (d *Dedup) Record(ctx context.Context, in dedup.Incident) (dedup.Result, error) {
	fp := in.Fingerprint
	if len(fp) != 64 {
		return dedup.Result{}, fmt.Errorf("baseline: fingerprint %q is not 64 hex digits", fp)
	}
	name := lease.LeaseName(LeasePrefix, fp)
	attempt := 0
	res, err := backoff.Retry(ctx, func(ctx context.Context) (dedup.Result, error) {
		attempt++
		if attempt > 1 {
			// After the wait: maybe the holder created the request.
			cur, err := d.open(ctx, fp)
			if err != nil {
				return dedup.Result{}, backoff.Permanent(fmt.Errorf("%w: re-check requests for fingerprint %s: %w", dedup.ErrUnavailable, fp, err))
			}
			if cur != nil {
				return d.count(ctx, cur, in), nil
			}
		}
		ok, err := d.acquire(ctx, name)
		if err != nil {
			return dedup.Result{}, backoff.Permanent(fmt.Errorf("%w: lock fingerprint %s: %w", dedup.ErrUnavailable, fp, err))
		}
		if !ok {
			return dedup.Result{}, errHeld
		}
		// On the request's context, as the original did: a request that
		// timed out leaves the Lease to expire.
		defer d.release(ctx, name)
		return d.locked(ctx, in)
	},
		backoff.WithPolicy(d.opts.Policy),
		backoff.WithMaxAttempts(d.opts.MaxAttempts),
		backoff.WithClock(d.opts.Clock),
	)
	if errors.Is(err, backoff.ErrExhausted) {
		return dedup.Result{}, fmt.Errorf("%w: lock acquisition timeout after %d attempts (fingerprint %s)", dedup.ErrBusy, d.opts.MaxAttempts, fp)
	}
	return res, err
}

// locked is the critical section: check, then count or create.
func (d *Dedup) locked(ctx context.Context, in dedup.Incident) (dedup.Result, error) {
	cur, err := d.open(ctx, in.Fingerprint)
	if err != nil {
		return dedup.Result{}, backoff.Permanent(fmt.Errorf("%w: check requests for fingerprint %s: %w", dedup.ErrUnavailable, in.Fingerprint, err))
	}
	if cur != nil {
		return d.count(ctx, cur, in), nil
	}
	rr := NewRequest(d.opts.Namespace, in)
	if err := d.c.Create(ctx, rr); err != nil {
		return dedup.Result{}, backoff.Permanent(fmt.Errorf("%w: create request for fingerprint %s: %w", dedup.ErrUnavailable, in.Fingerprint, err))
	}
	logr.FromContextOrDiscard(ctx).V(1).Info("Created remediation request", "remediationRequest", rr.Name)
	return dedup.Result{Outcome: dedup.Created, Name: rr.Name, OccurrenceCount: 1}, nil
}

// open lists the requests with fp's label and returns the first one that is
// not terminal, or nil.
func (d *Dedup) open(ctx context.Context, fp string) (*v1alpha1.RemediationRequest, error) {
	var list v1alpha1.RemediationRequestList
	if err := d.c.List(ctx, &list, client.InNamespace(d.opts.Namespace),
		client.MatchingLabels{v1alpha1.LabelFingerprint: v1alpha1.FingerprintLabelValue(fp)}); err != nil {
		return nil, err
	}
	for i := range list.Items {
		if rr := &list.Items[i]; rr.Spec.Fingerprint == fp && !rr.IsTerminal() {
			return rr, nil
		}
	}
	return nil, nil
}

// count adds one occurrence to cur: Get, then a status Update, retried from
// a fresh Get on Conflict up to CountAttempts tries. Whatever happens the
// answer is Duplicate, as in the original; when the update did not land,
// the count in the answer is the one read before, and the signal is lost
// from it.
func (d *Dedup) count(ctx context.Context, cur *v1alpha1.RemediationRequest, in dedup.Incident) dedup.Result {
	res := dedup.Result{Outcome: dedup.Duplicate, Name: cur.Name, OccurrenceCount: cur.EffectiveDeduplication().OccurrenceCount}
	key := client.ObjectKeyFromObject(cur)
	// A retry loop inside the attempt loop: the original's structure, kept.
	n, err := backoff.Retry(ctx, func(ctx context.Context) (int64, error) {
		var rr v1alpha1.RemediationRequest
		if err := d.c.Get(ctx, key, &rr); err != nil {
			return 0, backoff.Permanent(err)
		}
		dd := rr.EffectiveDeduplication()
		dd.OccurrenceCount++
		if at := metav1.NewMicroTime(in.ReceivedAt); dd.LastSeenAt.Before(&at) {
			dd.LastSeenAt = at
		}
		if !slices.Contains(dd.SignalNames, in.Signal.Name) && len(dd.SignalNames) < v1alpha1.MaxSignalNames {
			dd.SignalNames = append(dd.SignalNames, in.Signal.Name)
		}
		rr.Status.Deduplication = &dd
		if err := d.c.Status().Update(ctx, &rr); err != nil {
			if apierrors.IsConflict(err) {
				return 0, err
			}
			return 0, backoff.Permanent(err)
		}
		return dd.OccurrenceCount, nil
	},
		backoff.WithPolicy(d.opts.CountPolicy),
		backoff.WithMaxAttempts(d.opts.CountAttempts),
		backoff.WithClock(d.opts.Clock),
	)
	if err != nil {
		logr.FromContextOrDiscard(ctx).V(1).Info("Occurrence count not updated; answering duplicate all the same",
			"remediationRequest", cur.Name, "error", err.Error())
		return res
	}
	res.OccurrenceCount = n
	return res
}

// NewRequest returns the RemediationRequest the baseline (and the floor)
// create for in: the labels and spec leasehold's Recorder writes, so that
// the storm's verification finds it by the fingerprint label, but no
// generation label and a name with a random suffix made by the API server
// (generateName "rr-<first 12 hex digits of the fingerprint>-"), as the
// original design named its requests.
func NewRequest(namespace string, in dedup.Incident) *v1alpha1.RemediationRequest {
	return &v1alpha1.RemediationRequest{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:    namespace,
			GenerateName: "rr-" + in.Fingerprint[:min(12, len(in.Fingerprint))] + "-",
			Labels: map[string]string{
				v1alpha1.LabelFingerprint: v1alpha1.FingerprintLabelValue(in.Fingerprint),
				v1alpha1.LabelTarget:      v1alpha1.TargetLabelValue(in.Target),
			},
		},
		Spec: dedup.RequestSpec(in),
	}
}
