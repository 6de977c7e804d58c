package baseline

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// acquire is the original's AcquireLock: true when this pod holds the
// Lease now, false when another pod does. Every flaw in it is deliberate;
// see the package documentation.
func (d *Dedup) acquire(ctx context.Context, name string) (bool, error) {
	leases := d.leases.Leases(d.opts.Namespace)
	l, err := leases.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		now := metav1.NewMicroTime(d.opts.Clock.Now())
		seconds := int32(d.opts.LeaseDuration / time.Second)
		_, err := leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: d.opts.Namespace, Name: name},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       &d.opts.Identity,
				LeaseDurationSeconds: &seconds,
				AcquireTime:          &now,
				RenewTime:            &now,
			},
		}, metav1.CreateOptions{})
		switch {
		case apierrors.IsAlreadyExists(err):
			return false, nil
		case err != nil:
			return false, err
		}
		return true, nil
	}
	if err != nil {
		return false, err
	}
	// The holder is the pod: a second request of this replica "holds" the
	// lock the first one took.
	if h := l.Spec.HolderIdentity; h != nil && *h == d.opts.Identity {
		return true, nil
	}
	// A remote timestamp against the local clock; a Lease missing either
	// field never expires.
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return false, nil
	}
	expiry := l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second)
	if !d.opts.Clock.Now().After(expiry) {
		return false, nil
	}
	// Takeover leaves acquireTime and leaseTransitions as they were. The
	// Update carries the resourceVersion of the Get.
	now := metav1.NewMicroTime(d.opts.Clock.Now())
	l.Spec.HolderIdentity = &d.opts.Identity
	l.Spec.RenewTime = &now
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	switch {
	case apierrors.IsConflict(err):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// release is the original's ReleaseLock: Get, and if this pod is the
// holder, Delete without preconditions. Whatever another writer did to the
// Lease between the two calls is deleted with it; and since the holder is
// the pod, a Lease another request of this replica still relies on is
// deleted too. Errors are logged, not returned, as the original did.
func (d *Dedup) release(ctx context.Context, name string) {
	log := logr.FromContextOrDiscard(ctx)
	leases := d.leases.Leases(d.opts.Namespace)
	l, err := leases.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if !apierrors.IsNotFound(err) {
			log.V(1).Info("Release failed; the lease will expire", "lease", name, "error", err.Error())
		}
		return
	}
	if h := l.Spec.HolderIdentity; h == nil || *h != d.opts.Identity {
		return
	}
	if err := leases.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		log.V(1).Info("Release failed; the lease will expire", "lease", name, "error", err.Error())
	}
}
