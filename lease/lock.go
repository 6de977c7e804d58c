package lease

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
)

type lockState int

const (
	stateHeld lockState = iota
	stateReleasing
	stateReleased
	stateLost
)

// Lock is one acquisition of a key. It renews itself until released or
// lost. Its methods are safe for concurrent use.
type Lock struct {
	l      *Locker
	slot   *slot // nil once detached (acquired while the Locker was closing)
	key    string
	name   string
	holder string
	token  Token
	logger logr.Logger

	acquiredAt time.Time
	ctx        context.Context
	cancel     context.CancelCauseFunc

	stopOnce sync.Once
	stop     chan struct{} // closed to stop the renewer
	done     chan struct{} // closed when the renewer has exited
	released chan struct{} // closed when Release has finished

	mu       sync.Mutex
	state    lockState
	lostErr  error
	lease    *coordinationv1.Lease // the Lease as of our last successful write
	deadline time.Time             // safe deadline on the local monotonic clock
}

func (l *Locker) newLock(parent context.Context, s *slot, holder string, written *coordinationv1.Lease, sent time.Time) *Lock {
	// The lock outlives the acquiring call: keep the values of its context
	// (logger, trace), not its cancellation.
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	lk := &Lock{
		l:          l,
		slot:       s,
		key:        s.key,
		name:       s.name,
		holder:     holder,
		token:      Token{rv: written.ResourceVersion},
		acquiredAt: l.clock.Now(),
		ctx:        ctx,
		cancel:     cancel,
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
		released:   make(chan struct{}),
		lease:      written,
		deadline:   sent.Add(l.opts.LeaseDuration - l.opts.SafetyMargin),
	}
	lk.logger = logr.FromContextOrDiscard(parent).WithValues("key", s.key, "lease", s.name, "holder", holder)
	l.metrics.held.Inc()
	return lk
}

// Key returns the key the lock was acquired for.
func (lk *Lock) Key() string { return lk.key }

// Token returns the fencing token of this acquisition.
func (lk *Lock) Token() Token { return lk.token }

// Holder returns the holder id written into the Lease for this acquisition.
func (lk *Lock) Holder() string { return lk.holder }

// Context returns a context cancelled when the lock ends. Its cause matches
// ErrLost if the lock was lost (safe deadline passed, Lease taken over or
// deleted), and ErrReleased after Release or Locker.Close (which adds
// ErrClosed). It carries the values of the context it was acquired with.
// Run the critical section under it.
func (lk *Lock) Context() context.Context { return lk.ctx }

// SafeDeadline returns the current safe deadline, on the Locker's clock:
// the lock is held at least until then unless a renewal observes a takeover
// or deletion. Renewals move it forward.
func (lk *Lock) SafeDeadline() time.Time {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	return lk.deadline
}

// Err reports synchronously whether the lock is still safely held: nil
// while it is, an error matching ErrLost once it was lost or its safe
// deadline has passed on the monotonic clock (even if the timer that
// cancels Context has not fired yet, as after a process pause), ErrReleased
// after release. Check it right before each protected write.
func (lk *Lock) Err() error {
	if lk == nil || lk.l == nil {
		return ErrNotHeld
	}
	lk.mu.Lock()
	state, lostErr, deadline := lk.state, lk.lostErr, lk.deadline
	lk.mu.Unlock()
	switch state {
	case stateLost:
		return lostErr
	case stateReleasing, stateReleased:
		return ErrReleased
	}
	if !lk.l.clock.Now().Before(deadline) {
		return lk.lose(lossDeadline, "no successful renewal before the safe deadline")
	}
	return nil
}

// lose ends a held lock as lost: cancels Context with the reason, stops the
// renewer, and passes the key to the next local waiter. It returns the loss
// error (or ErrReleased if the lock was released first).
func (lk *Lock) lose(reason lossReason, detail string) error {
	lk.mu.Lock()
	switch lk.state {
	case stateLost:
		err := lk.lostErr
		lk.mu.Unlock()
		return err
	case stateReleased:
		lk.mu.Unlock()
		return ErrReleased
	}
	err := &lostError{reason: reason, detail: detail}
	lk.state = stateLost
	lk.lostErr = err
	lk.mu.Unlock()

	lk.cancel(err)
	lk.stopOnce.Do(func() { close(lk.stop) })
	m := lk.l.metrics
	m.losses.WithLabelValues(string(reason)).Inc()
	m.held.Dec()
	m.holdDuration.Observe(lk.l.clock.Since(lk.acquiredAt).Seconds())
	lk.logger.Info("lock lost", "reason", string(reason), "detail", detail)
	lk.l.vacate(lk)
	return err
}

type renewOutcome int

const (
	renewed renewOutcome = iota
	renewFailed
	renewTakenOver
	renewDeleted
	renewAdopt // our own earlier write landed unseen: retry with its resourceVersion
)

type renewResult struct {
	outcome renewOutcome
	lease   *coordinationv1.Lease
	sent    time.Time
	err     error
	detail  string
}

// renewLoop renews the Lease every RenewInterval, and ends the lock at the
// safe deadline on a timer of its own, so a hanging API call cannot delay
// the loss. Each renewal runs in a short-lived goroutine bounded by
// RequestTimeout; the loop waits for it only when stopped by Release, so
// that Release never races with a renewal.
func (lk *Lock) renewLoop() {
	l := lk.l
	defer l.done()
	defer close(lk.done)

	results := make(chan renewResult, 1)
	inflight := false
	var renewT, deadlineT clock.Timer
	defer func() {
		if renewT != nil {
			renewT.Stop()
			deadlineT.Stop()
		}
	}()
	left := lk.SafeDeadline().Sub(l.clock.Now())
	if left <= 0 { // the acquiring call itself outlasted the safe deadline
		lk.lose(lossDeadline, "no successful renewal before the safe deadline")
		return
	}
	renewT = l.clock.NewTimer(l.opts.RenewInterval)
	deadlineT = l.clock.NewTimer(left)

	startRenewal := func() {
		inflight = true
		sent := l.clock.Now()
		lk.mu.Lock()
		base := lk.lease
		lk.mu.Unlock()
		l.begin()
		go func() {
			defer l.done()
			results <- lk.renewOnce(base, sent)
		}()
	}

	for {
		select {
		case <-lk.stop:
			if inflight {
				lk.apply(<-results)
			}
			return

		case <-deadlineT.C():
			if left := lk.SafeDeadline().Sub(l.clock.Now()); left > 0 {
				deadlineT = l.clock.NewTimer(left)
				continue
			}
			lk.lose(lossDeadline, "no successful renewal before the safe deadline")
			return

		case <-renewT.C():
			if !inflight {
				startRenewal()
			}

		case r := <-results:
			inflight = false
			switch r.outcome {
			case renewed:
				lk.apply(r)
				l.metrics.renewals.Inc()
				deadlineT.Stop()
				deadlineT = l.clock.NewTimer(lk.SafeDeadline().Sub(l.clock.Now()))
				renewT = l.clock.NewTimer(l.opts.RenewInterval)
			case renewAdopt:
				lk.apply(r)
				startRenewal()
			case renewTakenOver:
				lk.lose(lossTakenOver, r.detail)
				return
			case renewDeleted:
				lk.lose(lossDeleted, r.detail)
				return
			default:
				l.metrics.renewalFailures.Inc()
				lk.logger.V(1).Info("renewal failed", "error", r.err.Error(), "safeDeadline", lk.SafeDeadline())
				renewT = l.clock.NewTimer(l.opts.RenewInterval / 4)
			}
		}
	}
}

// apply records the outcome of a renewal: a successful one moves the safe
// deadline to its send time + duration - margin; an adopted one only
// refreshes the resourceVersion.
func (lk *Lock) apply(r renewResult) {
	if r.lease == nil || (r.outcome != renewed && r.outcome != renewAdopt) {
		return
	}
	lk.mu.Lock()
	defer lk.mu.Unlock()
	lk.lease = r.lease
	if r.outcome == renewed {
		if d := r.sent.Add(lk.l.opts.LeaseDuration - lk.l.opts.SafetyMargin); d.After(lk.deadline) {
			lk.deadline = d
		}
	}
}

// renewOnce sends one renewal: an Update carrying the resourceVersion of
// our last write. On Conflict it reads the Lease to tell a takeover from
// our own earlier write that landed without us seeing the response.
func (lk *Lock) renewOnce(base *coordinationv1.Lease, sent time.Time) renewResult {
	l := lk.l
	ctx, cancel := context.WithTimeout(lk.ctx, l.opts.RequestTimeout)
	defer cancel()
	next := base.DeepCopy()
	t := metav1.NewMicroTime(sent)
	secs := l.opts.durationSeconds()
	next.Spec.RenewTime = &t
	next.Spec.LeaseDurationSeconds = &secs
	updated, err := l.leases.Update(ctx, next, metav1.UpdateOptions{})
	switch {
	case err == nil:
		return renewResult{outcome: renewed, lease: updated, sent: sent}
	case apierrors.IsNotFound(err):
		return renewResult{outcome: renewDeleted, detail: "lease deleted"}
	case !apierrors.IsConflict(err):
		l.metrics.apiErrors.WithLabelValues("update").Inc()
		return renewResult{outcome: renewFailed, err: err}
	}
	got, err := l.leases.Get(ctx, lk.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return renewResult{outcome: renewDeleted, detail: "lease deleted"}
	case err != nil:
		l.metrics.apiErrors.WithLabelValues("get").Inc()
		return renewResult{outcome: renewFailed, err: err}
	case got.UID != base.UID:
		return renewResult{outcome: renewDeleted, detail: "lease deleted and recreated"}
	case holderOf(got) != lk.holder:
		return renewResult{outcome: renewTakenOver, detail: fmt.Sprintf("lease now held by %q", holderOf(got))}
	}
	return renewResult{outcome: renewAdopt, lease: got}
}

// Release ends the lock. It stops the renewer first (waiting for a renewal
// in flight), cancels Context with ErrReleased, then either hands the Lease
// to the next local waiter with one Update, or deletes it with UID and
// resourceVersion preconditions, so it never removes a Lease another holder
// owns. It runs on its own context bounded by Options.ReleaseTimeout, so a
// cancelled ctx still releases (ctx contributes only its values).
//
// A second Release returns nil. Release after the lock was lost returns an
// error matching ErrLost and touches nothing.
func (lk *Lock) Release(ctx context.Context) error {
	if lk == nil || lk.l == nil {
		return ErrNotHeld
	}
	return lk.release(ctx, ErrReleased, true)
}

func (lk *Lock) release(ctx context.Context, cause error, handoff bool) error {
	l := lk.l
	lk.mu.Lock()
	switch lk.state {
	case stateLost:
		err := lk.lostErr
		lk.mu.Unlock()
		return fmt.Errorf("release %s: %w", lk.key, err)
	case stateReleasing:
		lk.mu.Unlock()
		<-lk.released
		return nil
	case stateReleased:
		lk.mu.Unlock()
		return nil
	}
	lk.state = stateReleasing
	lk.mu.Unlock()
	defer close(lk.released)

	lk.stopOnce.Do(func() { close(lk.stop) })
	<-lk.done

	lk.mu.Lock()
	if lk.state == stateLost { // the renewer saw a takeover while we waited
		err := lk.lostErr
		lk.mu.Unlock()
		return fmt.Errorf("release %s: %w", lk.key, err)
	}
	if !l.clock.Now().Before(lk.deadline) {
		lk.state = stateHeld // let lose take it from here
		lk.mu.Unlock()
		return fmt.Errorf("release %s: %w", lk.key, lk.lose(lossDeadline, "no successful renewal before the safe deadline"))
	}
	lk.state = stateReleased
	cur := lk.lease
	lk.mu.Unlock()

	lk.cancel(cause)
	l.metrics.held.Dec()
	l.metrics.holdDuration.Observe(l.clock.Since(lk.acquiredAt).Seconds())

	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.opts.ReleaseTimeout)
	defer cancel()

	var w *waiter
	if handoff {
		w = l.nextForHandoff(lk)
	}
	if w != nil {
		err := l.handoff(rctx, lk, cur, w)
		if err == nil {
			return nil
		}
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			l.metrics.releases.WithLabelValues("lost").Inc()
			l.passSlot(lk.slot, w)
			return fmt.Errorf("release %s: hand-off: %w", lk.key, &lostError{reason: lossTakenOver, detail: err.Error()})
		}
		// Unknown outcome: fall back to a conditional Delete. If the
		// hand-off did land, the Delete fails on the resourceVersion and
		// the Lease expires after one duration.
		lk.logger.V(1).Info("hand-off failed, deleting", "error", err.Error())
	}
	err := l.deleteOwned(rctx, lk, cur)
	if lk.slot != nil {
		l.passSlot(lk.slot, w)
	}
	return err
}

// handoff gives the Lease to waiter w with one Update: a new holder id, a
// new acquireTime and leaseTransitions+1, so the token (the returned
// resourceVersion) increases like on any other acquisition.
func (l *Locker) handoff(ctx context.Context, lk *Lock, cur *coordinationv1.Lease, w *waiter) error {
	s := lk.slot
	holder := l.newHolder()
	sent := l.clock.Now()
	next := cur.DeepCopy()
	l.stamp(next, s.key, holder, sent, transitions(cur)+1)
	updated, err := l.leases.Update(ctx, next, metav1.UpdateOptions{})
	if err != nil {
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			l.metrics.apiErrors.WithLabelValues("update").Inc()
		}
		return err
	}
	nlk := l.newLock(w.ctx, s, holder, updated, sent)

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		nlk.slot = nil
		close(nlk.done)
		_ = nlk.release(ctx, closedError{}, false)
		l.passSlot(s, w) // fails w and anyone left with ErrClosed
		return nil
	}
	s.holder = nlk
	s.handoffs++
	l.active++
	w.ch <- grant{lk: nlk}
	l.mu.Unlock()
	go nlk.renewLoop()

	l.metrics.handoffs.Inc()
	l.metrics.releases.WithLabelValues("handoff").Inc()
	l.metrics.acquisitions.WithLabelValues("handoff").Inc()
	return nil
}

// deleteOwned deletes the Lease only if it is still exactly the one we
// wrote last (UID and resourceVersion preconditions).
func (l *Locker) deleteOwned(ctx context.Context, lk *Lock, cur *coordinationv1.Lease) error {
	uid, rv := cur.UID, cur.ResourceVersion
	for try := 0; ; try++ {
		err := l.leases.Delete(ctx, lk.name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
		switch {
		case err == nil:
			l.metrics.releases.WithLabelValues("deleted").Inc()
			return nil
		case apierrors.IsNotFound(err):
			l.metrics.releases.WithLabelValues("lost").Inc()
			return fmt.Errorf("release %s: %w", lk.key, &lostError{reason: lossDeleted, detail: "lease already deleted"})
		case !apierrors.IsConflict(err):
			l.metrics.apiErrors.WithLabelValues("delete").Inc()
			l.metrics.releases.WithLabelValues("error").Inc()
			return fmt.Errorf("release %s: delete lease %s: %w", lk.key, lk.name, err)
		}
		// Conflict: taken over, unless a renewal of ours landed unseen.
		got, gerr := l.leases.Get(ctx, lk.name, metav1.GetOptions{})
		if try == 0 && gerr == nil && got.UID == uid && holderOf(got) == lk.holder {
			rv = got.ResourceVersion
			continue
		}
		l.metrics.releases.WithLabelValues("lost").Inc()
		return fmt.Errorf("release %s: %w", lk.key, &lostError{reason: lossTakenOver, detail: "lease changed by another holder"})
	}
}
