package lease

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
)

// maxTryRounds bounds TryAcquire when the Lease keeps changing under it
// (created, deleted, recreated between calls).
const maxTryRounds = 3

// maxObservations is the size above which old observations are pruned.
const maxObservations = 4096

// observation is what this process knows about a Lease it does not hold.
type observation struct {
	rv  string
	uid string
	at  time.Time // local clock reading when this rv was first seen
}

// acquireRemote acquires the Lease of the slot the caller owns: Create if it
// is believed absent, takeover Update if it has expired by observation,
// otherwise ErrHeld (wait=false) or wait for a change. It returns how the
// lock was acquired ("create" or "takeover").
func (l *Locker) acquireRemote(ctx context.Context, s *slot, wait bool) (*Lock, string, error) {
	key, name := s.key, s.name
	var cur *coordinationv1.Lease // last observed state; nil means believed absent
	needGet := l.hasObservation(name)
	var prevDelay time.Duration
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			return nil, "", fmt.Errorf("acquire %s: %w", key, context.Cause(ctx))
		}
		if !wait && attempt > maxTryRounds {
			return nil, "", l.heldError(key, name, cur)
		}
		if needGet {
			needGet = false
			got, err := l.get(ctx, name)
			switch {
			case apierrors.IsNotFound(err):
				cur = nil
				l.forget(name)
			case err != nil:
				return nil, "", fmt.Errorf("acquire %s: get lease %s: %w", key, name, err)
			default:
				cur = got
			}
		}

		if cur == nil {
			lk, err := l.create(ctx, s)
			if err == nil {
				return lk, "create", nil
			}
			if !apierrors.IsAlreadyExists(err) {
				return nil, "", err
			}
			needGet = true
			continue
		}

		if k, ok := cur.Annotations[AnnotationKey]; ok && k != key {
			return nil, "", fmt.Errorf("acquire %s: lease %s belongs to key %q", key, name, k)
		}
		remaining := l.observe(name, cur)
		if remaining <= 0 {
			lk, err := l.takeover(ctx, s, cur)
			switch {
			case err == nil:
				return lk, "takeover", nil
			case apierrors.IsConflict(err):
				// Someone else wrote first: contention.
				l.metrics.contention.WithLabelValues("remote").Inc()
				if !wait {
					return nil, "", fmt.Errorf("acquire %s: lease %s changed during takeover: %w", key, name, ErrHeld)
				}
				needGet = true
				continue
			case apierrors.IsNotFound(err):
				cur = nil
				l.forget(name)
				continue
			default:
				return nil, "", err
			}
		}

		l.metrics.contention.WithLabelValues("remote").Inc()
		if !wait {
			return nil, "", l.heldError(key, name, cur)
		}
		delay := l.opts.Backoff.Delay(attempt, prevDelay)
		prevDelay = delay
		next, changed, err := l.waitForChange(ctx, name, cur.ResourceVersion, remaining, delay)
		if err != nil {
			return nil, "", fmt.Errorf("acquire %s: %w", key, err)
		}
		switch {
		case !changed:
			needGet = true
		case next == nil:
			cur = nil
			l.forget(name)
		default:
			cur = next
		}
	}
}

func (l *Locker) heldError(key, name string, cur *coordinationv1.Lease) error {
	if cur == nil {
		return fmt.Errorf("acquire %s: lease %s: %w", key, name, ErrHeld)
	}
	return fmt.Errorf("acquire %s: lease %s held by %q: %w", key, name, holderOf(cur), ErrHeld)
}

func (l *Locker) get(ctx context.Context, name string) (*coordinationv1.Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, l.opts.RequestTimeout)
	defer cancel()
	got, err := l.leases.Get(ctx, name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		l.metrics.apiErrors.WithLabelValues("get").Inc()
	}
	return got, err
}

// create tries to create the Lease for a key believed free. Errors are
// wrapped; apierrors.IsAlreadyExists still holds on contention.
func (l *Locker) create(ctx context.Context, s *slot) (*Lock, error) {
	holder := l.newHolder()
	sent := l.clock.Now()
	obj := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: l.opts.Namespace}}
	l.stamp(obj, s.key, holder, sent, 0)
	rctx, cancel := context.WithTimeout(ctx, l.opts.RequestTimeout)
	created, err := l.leases.Create(rctx, obj, metav1.CreateOptions{})
	cancel()
	if err != nil {
		if !apierrors.IsAlreadyExists(err) {
			l.metrics.apiErrors.WithLabelValues("create").Inc()
			l.cleanupAmbiguous(ctx, s.name, holder, err)
		}
		return nil, fmt.Errorf("acquire %s: create lease %s: %w", s.key, s.name, err)
	}
	return l.installNew(ctx, s, holder, created, sent, "create")
}

// takeover replaces the holder of a Lease that expired by observation. The
// Update carries the observed resourceVersion, so it fails with Conflict if
// anyone wrote since.
func (l *Locker) takeover(ctx context.Context, s *slot, cur *coordinationv1.Lease) (*Lock, error) {
	holder := l.newHolder()
	sent := l.clock.Now()
	next := cur.DeepCopy()
	l.stamp(next, s.key, holder, sent, transitions(cur)+1)
	rctx, cancel := context.WithTimeout(ctx, l.opts.RequestTimeout)
	updated, err := l.leases.Update(rctx, next, metav1.UpdateOptions{})
	cancel()
	if err != nil {
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			l.metrics.apiErrors.WithLabelValues("update").Inc()
			l.cleanupAmbiguous(ctx, s.name, holder, err)
		}
		return nil, fmt.Errorf("acquire %s: take over lease %s: %w", s.key, s.name, err)
	}
	l.metrics.takeovers.Inc()
	logr.FromContextOrDiscard(ctx).V(1).Info("took over expired lease",
		"key", s.key, "lease", s.name, "previousHolder", holderOf(cur), "holder", holder)
	return l.installNew(ctx, s, holder, updated, sent, "takeover")
}

// installNew wraps a Lease this Locker just wrote into a Lock held by the
// slot and starts its renewer.
func (l *Locker) installNew(ctx context.Context, s *slot, holder string, written *coordinationv1.Lease, sent time.Time, path string) (*Lock, error) {
	l.forget(s.name)
	lk := l.newLock(ctx, s, holder, written, sent)
	if err := l.install(lk); err != nil {
		_ = lk.release(ctx, closedError{}, false)
		return nil, fmt.Errorf("acquire %s: %w", s.key, err)
	}
	l.metrics.acquisitions.WithLabelValues(path).Inc()
	return lk, nil
}

// stamp writes our labels, annotation and a fresh holder record into obj.
func (l *Locker) stamp(obj *coordinationv1.Lease, key, holder string, now time.Time, transitions int32) {
	if obj.Labels == nil {
		obj.Labels = make(map[string]string, len(l.opts.Labels)+2)
	}
	for k, v := range l.opts.Labels {
		obj.Labels[k] = v
	}
	obj.Labels[LabelManagedBy] = ManagedByValue
	obj.Labels[LabelPrefix] = l.opts.Prefix
	if obj.Annotations == nil {
		obj.Annotations = make(map[string]string, 1)
	}
	obj.Annotations[AnnotationKey] = key
	t := metav1.NewMicroTime(now)
	secs := l.opts.durationSeconds()
	obj.Spec.HolderIdentity = &holder
	obj.Spec.LeaseDurationSeconds = &secs
	obj.Spec.AcquireTime = &t
	obj.Spec.RenewTime = t.DeepCopy()
	obj.Spec.LeaseTransitions = &transitions
}

// cleanupAmbiguous handles a write whose outcome is unknown (timeout,
// connection reset): if the write landed, the Lease names a holder nobody
// will renew or release. Delete it, conditionally, so the key does not stay
// locked for a whole duration. Best effort; its failures are only logged.
func (l *Locker) cleanupAmbiguous(ctx context.Context, name, holder string, cause error) {
	if !ambiguous(cause) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.opts.RequestTimeout)
	defer cancel()
	log := logr.FromContextOrDiscard(ctx).V(1)
	got, err := l.leases.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		log.Info("could not check lease after ambiguous write", "lease", name, "error", err.Error())
		return
	}
	if holderOf(got) != holder {
		return
	}
	err = l.leases.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{
		UID: &got.UID, ResourceVersion: &got.ResourceVersion,
	}})
	if err != nil {
		log.Info("could not delete lease after ambiguous write", "lease", name, "error", err.Error())
	}
}

// ambiguous reports whether a failed write may nevertheless have been
// applied by the server.
func ambiguous(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return true // transport error or context deadline: the request may have been sent
	}
	return apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) ||
		apierrors.IsInternalError(err) || apierrors.IsUnexpectedServerError(err)
}

// waitForChange waits for the Lease to change from rv. A watch on that one
// Lease ends the wait as soon as it is modified or deleted; without a
// working watch, the backoff delay bounds the wait instead. Either way the
// wait ends at the latest when the Lease would expire by observation
// (remaining). changed=false means the caller should look again.
func (l *Locker) waitForChange(ctx context.Context, name, rv string, remaining, delay time.Duration) (next *coordinationv1.Lease, changed bool, err error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var events <-chan watch.Event
	w, werr := l.leases.Watch(wctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", name).String(),
		ResourceVersion: rv,
	})
	if werr != nil {
		l.metrics.apiErrors.WithLabelValues("watch").Inc()
		logr.FromContextOrDiscard(ctx).V(1).Info("watch failed, polling", "lease", name, "error", werr.Error())
	} else {
		defer w.Stop()
		events = w.ResultChan()
	}
	started := l.clock.Now()
	wait := remaining
	if events == nil {
		wait = min(delay, remaining)
	}
	timer := l.clock.NewTimer(wait)
	defer func() { timer.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil, false, context.Cause(ctx)
		case <-timer.C():
			return nil, false, nil
		case ev, ok := <-events:
			if ok {
				switch ev.Type {
				case watch.Deleted:
					return nil, true, nil
				case watch.Added, watch.Modified:
					if lease, isLease := ev.Object.(*coordinationv1.Lease); isLease && lease.ResourceVersion != rv {
						return lease, true, nil
					}
					continue
				case watch.Bookmark:
					continue
				}
			}
			// Closed or failed (for example 410 Gone): fall back to the
			// backoff delay, then look again.
			events = nil
			timer.Stop()
			timer = l.clock.NewTimer(max(0, min(delay, remaining-l.clock.Since(started))))
		}
	}
}

func (l *Locker) hasObservation(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.observed[name]
	return ok
}

func (l *Locker) forget(name string) {
	l.mu.Lock()
	delete(l.observed, name)
	l.mu.Unlock()
}

// observe records lease and returns how long until it expires by this
// process's observation: its duration after the moment this process first
// saw its current resourceVersion. Zero or less means expired.
func (l *Locker) observe(name string, lease *coordinationv1.Lease) time.Duration {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	o, ok := l.observed[name]
	if !ok || o.rv != lease.ResourceVersion || o.uid != string(lease.UID) {
		if !ok && len(l.observed) >= maxObservations {
			l.pruneLocked(now)
		}
		o = observation{rv: lease.ResourceVersion, uid: string(lease.UID), at: now}
		l.observed[name] = o
	}
	return recordDuration(lease, l.opts.LeaseDuration) - now.Sub(o.at)
}

// pruneLocked drops observations older than twice the lease duration.
// Dropping one only delays a takeover; it never makes one early.
func (l *Locker) pruneLocked(now time.Time) {
	for name, o := range l.observed {
		if now.Sub(o.at) > 2*l.opts.LeaseDuration {
			delete(l.observed, name)
		}
	}
}

// recordDuration is the duration the Lease declares, or def if it declares
// none (a Lease with missing fields expires like any other).
func recordDuration(lease *coordinationv1.Lease, def time.Duration) time.Duration {
	if d := lease.Spec.LeaseDurationSeconds; d != nil && *d > 0 {
		return time.Duration(*d) * time.Second
	}
	return def
}

func holderOf(lease *coordinationv1.Lease) string {
	if lease == nil || lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

func transitions(lease *coordinationv1.Lease) int32 {
	if lease.Spec.LeaseTransitions == nil {
		return 0
	}
	return *lease.Spec.LeaseTransitions
}
