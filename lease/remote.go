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
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/clock"
)

// maxTryRounds bounds TryAcquire when the Lease keeps changing under it
// (created, deleted, recreated between calls).
const maxTryRounds = 3

// maxObservations is the size above which old observations are pruned.
const maxObservations = 4096

// yieldWindow is how long the next local owner of a key waits before it
// creates the Lease again, after a Release deleted it because the fairness
// bound (Options.MaxLocalHandoffs) was reached. A process already watching
// the Lease sees the deletion one event delivery later and creates it well
// inside the window; without the window the local waiter, which needs no
// event, would win that race about half of the time and the bound would
// not give other processes a turn. When nobody else wants the key, the
// window is the whole cost: one fairness release per MaxLocalHandoffs
// hand-offs is delayed this long. Measured on the Locker's clock.
const yieldWindow = 100 * time.Millisecond

// watchTimeout is sent as ListOptions.TimeoutSeconds on a waiter's watch,
// so the API server ends it after this long instead of after its own
// randomised 30 to 60 minutes. The waiter then re-opens it from the newest
// resourceVersion it has seen, which keeps that version recent enough for
// the server's watch cache; a re-open every few minutes costs next to
// nothing next to the renewal events the watch carries.
const watchTimeout = 5 * time.Minute

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
//
// cur is what the caller believes the Lease to be. It is read from the API
// server (Get) only when that belief is unknown: at the start if this
// Locker has seen the Lease before, after a lost Create or a failed
// takeover, and after a wait the watch did not cover. While waiting, one
// watch (lw) is kept across rounds, so a renewal of the remote holder costs
// an event, not a request.
func (l *Locker) acquireRemote(ctx context.Context, s *slot, wait bool) (*Lock, string, error) {
	key, name := s.key, s.name
	lw := &leaseWatch{l: l, name: name}
	defer lw.stop()
	var cur *coordinationv1.Lease // last observed state; nil means believed absent
	needGet := l.hasObservation(name)
	if after := l.takeYield(s); after != "" && wait {
		got, err := l.yieldTurn(ctx, lw, after)
		if err != nil {
			return nil, "", fmt.Errorf("acquire %s: %w", key, err)
		}
		cur, needGet = got, false
	}
	// contended counts this call once in contention_total, however many
	// rounds it waits.
	contended := false
	contend := func() {
		if !contended {
			contended = true
			l.metrics.contention.WithLabelValues("remote").Inc()
		}
	}
	// retries and prevDelay feed the backoff policy; they advance only when
	// a backoff delay was actually waited.
	retries := 0
	var prevDelay time.Duration
	lostCreate := false // the previous round's Create failed with AlreadyExists
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
				if lostCreate && wait {
					// Created and deleted again between our Create and
					// our Get: the key is churning. Without a delay this
					// would be a Create/Get loop as fast as the API
					// server answers. (TryAcquire is bounded by
					// maxTryRounds instead.)
					retries++
					prevDelay = l.opts.Backoff.Delay(retries, prevDelay)
					if err := l.pause(ctx, prevDelay); err != nil {
						return nil, "", fmt.Errorf("acquire %s: %w", key, err)
					}
				}
			case err != nil:
				return nil, "", fmt.Errorf("acquire %s: get lease %s: %w", key, name, err)
			default:
				cur = got
			}
		}
		lostCreate = false

		if cur == nil {
			lk, err := l.create(ctx, s)
			if err == nil {
				return lk, "create", nil
			}
			if !apierrors.IsAlreadyExists(err) {
				return nil, "", err
			}
			needGet, lostCreate = true, true
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
				// Someone else wrote first: contention. A watch that
				// should have reported that write may be stuck on a
				// dead connection; re-open it from what the Get returns.
				contend()
				if !wait {
					return nil, "", fmt.Errorf("acquire %s: lease %s changed during takeover: %w", key, name, ErrHeld)
				}
				lw.stop()
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

		contend()
		if !wait {
			return nil, "", l.heldError(key, name, cur)
		}
		delay := l.opts.Backoff.Delay(retries+1, prevDelay)
		next, woke, err := l.waitForChange(ctx, lw, cur, remaining, delay)
		if err != nil {
			return nil, "", fmt.Errorf("acquire %s: %w", key, err)
		}
		l.metrics.wakeups.WithLabelValues(string(woke)).Inc()
		switch woke {
		case wokeChanged:
			cur = next
		case wokeDeleted:
			cur = nil
			l.forget(name)
		case wokeExpired:
			// The watch was healthy for the whole wait and reported no
			// change: cur is current, and the next round takes it over
			// with one Update carrying its resourceVersion.
		case wokePoll:
			retries++
			prevDelay = delay
			needGet = true
		}
	}
}

// pause waits d on the Locker's clock, or until ctx ends.
func (l *Locker) pause(ctx context.Context, d time.Duration) error {
	t := l.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C():
		return nil
	}
}

// takeYield returns and clears the slot's fairness mark.
func (l *Locker) takeYield(s *slot) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	after := s.yieldAfter
	s.yieldAfter = ""
	return after
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
//
// A refusal by client-go's rate limiter (throttledError) counts as
// ambiguous: it may have refused the retry of a write that was sent and
// applied, and the error does not say which. Treating it as sent costs one
// Get; treating it as unsent could leave a Lease nobody renews.
func ambiguous(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return true // transport error, context deadline or rate limiter: the request may have been sent
	}
	return apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) ||
		apierrors.IsInternalError(err) || apierrors.IsUnexpectedServerError(err)
}

// wakeReason says why a wait for a change ended; it is also the label of
// the wakeups metric.
type wakeReason string

const (
	wokeChanged wakeReason = "changed" // the watch reported a newer version
	wokeDeleted wakeReason = "deleted" // the watch reported a deletion newer than cur
	wokeExpired wakeReason = "expired" // expiry by observation came and the watch, healthy throughout, reported nothing
	wokePoll    wakeReason = "poll"    // the backoff delay, or expiry, passed without a working watch: look again
)

// waitForChange waits for the Lease to change from cur, on the watch lw
// (opened from cur's resourceVersion if it is not open yet, and left open
// for the next round). Events not newer than cur are ignored: a Get may
// have raced ahead of the watch. The wait ends at the latest when cur
// would expire by observation (remaining), the watch open included;
// without a working watch it ends after the backoff delay instead.
func (l *Locker) waitForChange(ctx context.Context, lw *leaseWatch, cur *coordinationv1.Lease, remaining, delay time.Duration) (*coordinationv1.Lease, wakeReason, error) {
	deadline := l.clock.Now().Add(remaining)
	healthy := lw.open(ctx, cur.ResourceVersion, remaining) == nil
	reopened := false
	// arm returns the timer for what is left of this wait, or nil if
	// nothing is.
	arm := func() clock.Timer {
		d := deadline.Sub(l.clock.Now())
		if !healthy {
			d = min(d, delay)
		}
		if d <= 0 {
			return nil
		}
		return l.clock.NewTimer(d)
	}
	timeUp := func() (*coordinationv1.Lease, wakeReason, error) {
		if healthy {
			return nil, wokeExpired, nil
		}
		return nil, wokePoll, nil
	}
	timer := arm()
	if timer == nil {
		return timeUp()
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	fired := false
	for {
		var ev watch.Event
		var ok bool
		if fired {
			// Events that arrived with the timer still win: taking over
			// on a stale version would only fail.
			select {
			case ev, ok = <-lw.events():
			default:
				return timeUp()
			}
		} else {
			select {
			case <-ctx.Done():
				return nil, "", context.Cause(ctx)
			case <-timer.C():
				fired = true
				continue
			case ev, ok = <-lw.events():
			}
		}
		if ok && ev.Type != watch.Error {
			if next, changed := newerThan(ev, cur.ResourceVersion); changed {
				if next == nil {
					return nil, wokeDeleted, nil
				}
				return next, wokeChanged, nil
			}
			continue
		}
		// The watch closed or failed. A clean close (the server's
		// timeout) loses nothing: re-open from cur, once per round. An
		// error (such as 410 Gone) or a second close means the watch
		// cannot be trusted now: fall back to the backoff delay and a Get.
		lw.stop()
		if ok {
			logr.FromContextOrDiscard(ctx).V(1).Info("watch failed", "lease", lw.name, "status", errorStatus(ev))
		} else if !reopened {
			reopened = true
			if lw.open(ctx, cur.ResourceVersion, deadline.Sub(l.clock.Now())) == nil {
				continue
			}
		}
		healthy = false
		if fired {
			return timeUp()
		}
		timer.Stop()
		if timer = arm(); timer == nil {
			return timeUp()
		}
	}
}

// yieldTurn runs after a fairness release deleted the Lease at
// resourceVersion after: for yieldWindow it watches the Lease for a
// creation by another process. It returns the Lease that process created
// (the caller then waits for it like any contender), or nil when the
// window passed without one. A watch that cannot be opened does not shorten
// the window; the Create that follows finds out.
func (l *Locker) yieldTurn(ctx context.Context, lw *leaseWatch, after string) (*coordinationv1.Lease, error) {
	deadline := l.clock.Now().Add(yieldWindow)
	_ = lw.open(ctx, after, l.opts.RequestTimeout)
	left := deadline.Sub(l.clock.Now())
	if left <= 0 {
		return nil, nil
	}
	timer := l.clock.NewTimer(left)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-timer.C():
			return nil, nil
		case ev, ok := <-lw.events():
			if !ok || ev.Type == watch.Error {
				lw.stop()
				continue
			}
			// The deletion we made (or any later one) is no reason to
			// stop yielding; a creation is.
			if next, changed := newerThan(ev, after); changed && next != nil {
				return next, nil
			}
		}
	}
}

// newerThan returns the Lease an event carries if the event is newer than
// rv: (lease, true) for an addition or modification, (nil, true) for a
// deletion, (nil, false) for anything else. An event not newer than what
// the caller already knows (for example one a Get overtook) changes nothing.
func newerThan(ev watch.Event, rv string) (*coordinationv1.Lease, bool) {
	lease, ok := ev.Object.(*coordinationv1.Lease)
	if !ok {
		return nil, false
	}
	switch ev.Type {
	case watch.Added, watch.Modified, watch.Deleted:
	default:
		return nil, false
	}
	cmp, err := resourceversion.CompareResourceVersion(lease.ResourceVersion, rv)
	if err != nil {
		// Not comparable (never from a conforming server): any other
		// version is a change, as before comparison existed.
		cmp = 1
		if lease.ResourceVersion == rv {
			cmp = 0
		}
	}
	if cmp <= 0 {
		return nil, false
	}
	if ev.Type == watch.Deleted {
		return nil, true
	}
	return lease, true
}

func errorStatus(ev watch.Event) string {
	if st, ok := ev.Object.(*metav1.Status); ok {
		return st.Message
	}
	return fmt.Sprintf("%T", ev.Object)
}

// leaseWatch is the watch one acquisition keeps on its Lease while it
// waits, across rounds. Only the acquiring goroutine uses it.
type leaseWatch struct {
	l      *Locker
	name   string
	w      watch.Interface // nil while not open
	cancel context.CancelFunc
}

// open opens the watch from rv, unless it is open. Opening is bounded by
// RequestTimeout and by bound (what is left of the caller's wait), on the
// real clock like every request timeout; the watch itself lives until stop
// or the end of ctx. A failure is counted and logged, and leaves the watch
// closed.
func (lw *leaseWatch) open(ctx context.Context, rv string, bound time.Duration) error {
	if lw.w != nil {
		return nil
	}
	l := lw.l
	limit := min(l.opts.RequestTimeout, bound)
	if limit <= 0 {
		return context.DeadlineExceeded
	}
	// The open must be bounded, but the context given to Watch also ends
	// the stream: so end that context only if the open outlives its limit.
	wctx, cancel := context.WithCancel(ctx)
	octx, ocancel := context.WithTimeout(ctx, limit)
	abort := context.AfterFunc(octx, cancel)
	secs := int64(watchTimeout / time.Second)
	w, err := l.leases.Watch(wctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", lw.name).String(),
		ResourceVersion: rv,
		TimeoutSeconds:  &secs,
	})
	inTime := abort()
	ocancel()
	if err == nil && !inTime {
		w.Stop()
		err = fmt.Errorf("open watch: %w", context.DeadlineExceeded)
	}
	if err != nil {
		cancel()
		// An open cut short because the caller's wait is over, or its
		// context ended, is no API error.
		cut := !inTime && (ctx.Err() != nil || limit < l.opts.RequestTimeout)
		if !cut {
			l.metrics.apiErrors.WithLabelValues("watch").Inc()
			logr.FromContextOrDiscard(ctx).V(1).Info("watch failed, polling", "lease", lw.name, "error", err.Error())
		}
		return err
	}
	lw.w, lw.cancel = w, cancel
	return nil
}

// events is the channel of the open watch, or nil (blocks forever).
func (lw *leaseWatch) events() <-chan watch.Event {
	if lw.w == nil {
		return nil
	}
	return lw.w.ResultChan()
}

func (lw *leaseWatch) stop() {
	if lw.w != nil {
		lw.w.Stop()
		lw.cancel()
		lw.w, lw.cancel = nil, nil
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
