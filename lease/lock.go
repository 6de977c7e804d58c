package lease

import (
	"context"
	"errors"
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
	sent       time.Time // when the acquiring write was sent
	ctx        *lockContext
	// expired is the loss the lock reports once its safe deadline has
	// passed, whoever notices first (Err, Context, or the renewer).
	expired *lostError
	// renewCtx bounds the renewals; abortRenewal cancels one in flight
	// when Release cannot wait for it any longer, or the lock is lost. It
	// is not derived from ctx: Release cancels ctx first and then still
	// waits for a renewal in flight.
	renewCtx     context.Context
	abortRenewal context.CancelFunc

	stopOnce sync.Once
	stop     chan struct{} // closed to stop the renewer
	done     chan struct{} // closed when the renewer has exited
	released chan struct{} // closed when Release has finished

	// mu guards the fields below, and every cancellation of ctx, so that
	// Err and Context always agree.
	mu      sync.Mutex
	state   lockState
	lostErr error
	lease   *coordinationv1.Lease // the Lease as of our last successful write
	// deadline is the safe deadline on the local monotonic clock. It only
	// moves forward, and never once it has passed: a loss that Err or
	// Context may have reported is never undone by a late renewal.
	deadline time.Time
}

func (l *Locker) newLock(parent context.Context, s *slot, holder string, written *coordinationv1.Lease, sent time.Time) *Lock {
	// The lock outlives the acquiring call: keep the values of its context
	// (logger, trace), not its cancellation.
	values := context.WithoutCancel(parent)
	base, cancel := context.WithCancelCause(values)
	lk := &Lock{
		l:          l,
		slot:       s,
		key:        s.key,
		name:       s.name,
		holder:     holder,
		token:      Token{rv: written.ResourceVersion},
		acquiredAt: l.clock.Now(),
		sent:       sent,
		expired:    &lostError{reason: lossDeadline, detail: "no successful renewal before the safe deadline"},
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
		released:   make(chan struct{}),
		lease:      written,
		deadline:   sent.Add(l.opts.LeaseDuration - l.opts.SafetyMargin),
	}
	lk.ctx = &lockContext{Context: base, cancel: cancel, lk: lk, values: values}
	lk.renewCtx, lk.abortRenewal = context.WithCancel(values)
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

// Context returns a context cancelled when the lock ends. It carries the
// values of the context it was acquired with. Run the critical section
// under it.
//
// It is done no later than Err reports an error: its Err and Done compare
// the safe deadline with the Locker's clock themselves, so after a process
// pause it reports the loss as soon as it is looked at, not only once the
// renewer's timer fires. Its cause (context.Cause) matches ErrLost if the
// lock was lost (safe deadline passed, Lease taken over or deleted), and
// ErrReleased after Release or Locker.Close (which adds ErrClosed).
// Release cancels it before it deletes or hands off the Lease, with
// ErrReleased; if Release then finds that the Lease had been taken over or
// deleted, the cause becomes that ErrLost, so context.Cause read after
// Release returned is final (contexts derived from it keep the cause they
// were cancelled with).
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
// cancels Context has not fired yet, as after a process pause),
// ErrReleased once Release has begun, and ErrLost again if Release found
// the Lease taken over or deleted. Check it right before each protected
// write.
//
// Err is a read: it changes nothing. Declaring a loss (metrics, log),
// stopping the renewer and passing the key to the next local waiter are
// done by the renewer when its deadline timer fires, or by Release.
func (lk *Lock) Err() error {
	if lk == nil || lk.l == nil {
		return ErrNotHeld
	}
	lk.mu.Lock()
	defer lk.mu.Unlock()
	return lk.errLocked()
}

// errLocked is Err with lk.mu held.
func (lk *Lock) errLocked() error {
	switch lk.state {
	case stateLost:
		return lk.lostErr
	case stateReleased:
		return ErrReleased
	}
	if !lk.l.clock.Now().Before(lk.deadline) {
		// Also while a Release waits for the renewer: it will find the
		// deadline passed and end the lock as lost.
		return lk.expired
	}
	if lk.state == stateReleasing {
		return ErrReleased
	}
	return nil
}

// lose ends a held lock as lost: cancels Context with the reason (or
// corrects the cause to it, if a Release has cancelled it already), stops
// the renewer, and passes the key to the next local waiter. It returns the loss
// error (or ErrReleased if the lock was released first). A lock whose
// Release is still waiting for the renewer (stateReleasing) can be lost
// too: that Release then finds stateLost and touches nothing, and any other
// Release keeps waiting for it, so the lock ends exactly once.
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
	err := lk.expired
	if reason != lossDeadline {
		err = &lostError{reason: reason, detail: detail}
	}
	lk.state = stateLost
	lk.lostErr = err
	lk.ctx.endLocked(err)
	lk.mu.Unlock()

	lk.abortRenewal()
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
// RequestTimeout. When Release stops the loop, it waits for a renewal in
// flight, so that Release never races with a renewal, but still no longer
// than the safe deadline.
func (lk *Lock) renewLoop() {
	l := lk.l
	defer l.done()
	defer close(lk.done)

	results := make(chan renewResult, 1)
	inflight := false
	var renewT clock.Timer
	var renewC <-chan time.Time // nil while no renewal is scheduled
	left := lk.SafeDeadline().Sub(l.clock.Now())
	if left <= 0 { // the acquiring call itself outlasted the safe deadline
		lk.lose(lossDeadline, "no successful renewal before the safe deadline")
		return
	}
	deadlineT := l.clock.NewTimer(left)
	defer func() {
		deadlineT.Stop()
		if renewT != nil {
			renewT.Stop()
		}
	}()
	schedule := func(d time.Duration) {
		if renewT != nil {
			renewT.Stop()
		}
		renewT = l.clock.NewTimer(d)
		renewC = renewT.C()
	}

	// startRenewal sends a renewal, unless the safe deadline has passed:
	// then it ends the lock and returns false. A renewal sent that late
	// must not revive the lock, whose loss Err may already have reported
	// (a paused process can find both timers due at once).
	startRenewal := func() bool {
		sent := l.clock.Now()
		if !sent.Before(lk.SafeDeadline()) {
			lk.lose(lossDeadline, "no successful renewal before the safe deadline")
			return false
		}
		inflight = true
		renewC = nil
		lk.mu.Lock()
		base := lk.lease
		lk.mu.Unlock()
		l.begin()
		go func() {
			defer l.done()
			results <- lk.renewOnce(base, sent)
		}()
		return true
	}

	// handle records a renewal result and reports whether it ended the lock.
	handle := func(r renewResult) bool {
		switch r.outcome {
		case renewed, renewAdopt:
			if !lk.apply(r) {
				// Answered after the safe deadline: the loss may have
				// been reported already, and stands.
				lk.lose(lossDeadline, "no successful renewal before the safe deadline")
				return true
			}
			if r.outcome == renewed {
				l.metrics.renewals.Inc()
			}
		case renewTakenOver:
			lk.lose(lossTakenOver, r.detail)
			return true
		case renewDeleted:
			lk.lose(lossDeleted, r.detail)
			return true
		default:
			l.metrics.renewalFailures.Inc()
			lk.logger.V(1).Info("renewal failed", "error", r.err.Error(), "safeDeadline", lk.SafeDeadline())
		}
		return false
	}

	// expired handles the deadline timer firing: true if the lock is lost,
	// false after re-arming it for a deadline a renewal has moved.
	expired := func() bool {
		if left := lk.SafeDeadline().Sub(l.clock.Now()); left > 0 {
			deadlineT = l.clock.NewTimer(left)
			return false
		}
		lk.lose(lossDeadline, "no successful renewal before the safe deadline")
		return true
	}

	// The first renewal is due RenewInterval after the acquiring write was
	// sent, which is what the safe deadline counts from: a slow acquisition
	// must not push it towards the deadline.
	if first := l.opts.RenewInterval - l.clock.Since(lk.sent); first > 0 {
		schedule(first)
	} else if !startRenewal() {
		return
	}

	for {
		select {
		case <-lk.stop:
			for inflight {
				select {
				case r := <-results:
					inflight = false
					if handle(r) {
						return
					}
				case <-deadlineT.C():
					if expired() {
						return
					}
				}
			}
			return

		case <-deadlineT.C():
			if expired() {
				return
			}

		case <-renewC:
			if !inflight && !startRenewal() {
				return
			}

		case r := <-results:
			inflight = false
			if handle(r) {
				return
			}
			switch r.outcome {
			case renewed:
				deadlineT.Stop()
				deadlineT = l.clock.NewTimer(lk.SafeDeadline().Sub(l.clock.Now()))
				schedule(l.opts.RenewInterval)
			case renewAdopt:
				if !startRenewal() {
					return
				}
			default:
				schedule(l.opts.RenewInterval / 4)
			}
		}
	}
}

// apply records the outcome of a renewal: a successful one moves the safe
// deadline to its send time + duration - margin; an adopted one only
// refreshes the resourceVersion. It records nothing and returns false if
// the safe deadline has passed meanwhile: Err or Context may already have
// reported the loss, and a lock once reported lost stays lost.
func (lk *Lock) apply(r renewResult) bool {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if !lk.l.clock.Now().Before(lk.deadline) {
		return false
	}
	if r.lease == nil || (r.outcome != renewed && r.outcome != renewAdopt) {
		return true
	}
	lk.lease = r.lease
	if r.outcome == renewed {
		if d := r.sent.Add(lk.l.opts.LeaseDuration - lk.l.opts.SafetyMargin); d.After(lk.deadline) {
			lk.deadline = d
		}
	}
	return true
}

// renewOnce sends one renewal: an Update carrying the resourceVersion of
// our last write. On Conflict it reads the Lease to tell a takeover from
// our own earlier write that landed without us seeing the response.
func (lk *Lock) renewOnce(base *coordinationv1.Lease, sent time.Time) renewResult {
	l := lk.l
	ctx, cancel := context.WithTimeout(lk.renewCtx, l.opts.RequestTimeout)
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

// Release ends the lock. It cancels Context with ErrReleased, stops the
// renewer (waiting for a renewal in flight, at most until the safe
// deadline), then either hands the Lease to the next local waiter with one
// Update, or deletes it with UID and resourceVersion preconditions, so it
// never removes a Lease another holder owns. If that write finds the Lease
// taken over or deleted, Release returns an error matching ErrLost, and
// from then on Err and the cause of Context say so too: the key was held
// by someone else before this holder let it go. A Lease found holding the
// holder id of this Release's own hand-off (its answer lost) is no
// takeover: the waiter gets the lock. It runs on its own context
// bounded by Options.ReleaseTimeout, so a cancelled ctx still releases (ctx
// contributes only its values); if the time runs out while a renewal is in
// flight, Release abandons it, touches nothing, and the Lease expires after
// its duration.
//
// A Release that finds another one (or Locker.Close) at work waits for it
// to finish. A second Release returns nil, or an error matching ErrLost if
// the lock was lost (its safe deadline passed while the first waited for a
// renewal, or the first found the Lease taken over or deleted). Release
// after the lock was lost returns an error matching ErrLost and touches
// nothing.
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
	case stateReleasing, stateReleased:
		// Another Release (or Close) is at work: wait until it has deleted
		// or handed off the Lease, then report how the lock ended.
		lk.mu.Unlock()
		<-lk.released
		lk.mu.Lock()
		defer lk.mu.Unlock()
		if lk.state == stateLost {
			return fmt.Errorf("release %s: %w", lk.key, lk.lostErr)
		}
		return nil
	}
	lk.state = stateReleasing
	// Context ends now, before the Lease is let go; if the deadline has
	// already passed, with the loss Err reports.
	if !l.clock.Now().Before(lk.deadline) {
		cause = lk.expired
	}
	lk.ctx.endLocked(cause)
	lk.mu.Unlock()
	// Close waits for releases in progress, including those it did not
	// start, so that no API call of this Locker outlives it.
	l.begin()
	defer l.done()
	defer close(lk.released)

	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.opts.ReleaseTimeout)
	defer cancel()

	lk.stopOnce.Do(func() { close(lk.stop) })
	select {
	case <-lk.done:
	case <-rctx.Done():
		lk.abortRenewal()
		<-lk.done
	}

	lk.mu.Lock()
	if lk.state == stateLost {
		// The renewer ended the lock while we waited for it (a renewal
		// found the Lease taken over or deleted, or the safe deadline
		// passed during a hung renewal), or a loss was forced. lose has
		// passed the key on; the Lease is not ours to touch.
		err := lk.lostErr
		lk.mu.Unlock()
		return fmt.Errorf("release %s: %w", lk.key, err)
	}
	if !l.clock.Now().Before(lk.deadline) {
		// Another process may already have taken the Lease over. The state
		// stays stateReleasing while lose runs, so that a concurrent
		// Release keeps waiting for this one instead of ending the lock a
		// second time.
		lk.mu.Unlock()
		return fmt.Errorf("release %s: %w", lk.key, lk.lose(lossDeadline, "no successful renewal before the safe deadline"))
	}
	lk.state = stateReleased
	cur := lk.lease
	lk.mu.Unlock()

	l.metrics.held.Dec()
	l.metrics.holdDuration.Observe(l.clock.Since(lk.acquiredAt).Seconds())

	if rctx.Err() != nil {
		// We abandoned a renewal whose outcome is unknown: a Delete now
		// could only fail. Leave the Lease to expire.
		l.metrics.releases.WithLabelValues("error").Inc()
		if lk.slot != nil {
			l.passSlot(lk.slot, nil)
		}
		return fmt.Errorf("release %s: waiting for a renewal in flight, the lease is left to expire: %w", lk.key, context.Cause(rctx))
	}

	var w *waiter
	yield := false
	if handoff {
		w, yield = l.nextForHandoff(lk)
	}
	var pending handoffWrite // the hand-off that may have landed unseen
	if w != nil {
		var err error
		pending, err = l.handoff(rctx, lk, cur, w)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrLost) {
			lk.lostAtRelease(err)
			l.metrics.releases.WithLabelValues("lost").Inc()
			l.passSlot(lk.slot, w)
			return fmt.Errorf("release %s: hand-off: %w", lk.key, err)
		}
		// The hand-off was refused, or its outcome stayed unknown (the
		// Get that should tell failed too): fall back to a conditional
		// Delete. If the hand-off did land after all, the Delete fails on
		// the resourceVersion and its read-back finds the hand-off's
		// holder id: the hand-off stands, and the waiter gets the lock.
		lk.logger.V(1).Info("hand-off failed, deleting", "error", err.Error())
	}
	deleted, landed, err := l.deleteOwned(rctx, lk, cur, pending.holder)
	if landed != nil {
		l.grantHandoff(rctx, lk.slot, w, pending.holder, landed, pending.first)
		return nil
	}
	if errors.Is(err, ErrLost) {
		lk.lostAtRelease(err)
	}
	if s := lk.slot; s != nil {
		l.mu.Lock()
		if err == nil && yield {
			// A fairness release: the next local owner waits for remote
			// waiters to take the key first, watching from the Lease we
			// deleted.
			s.yieldAfter = deleted
		}
		l.passSlotLocked(s, w)
		l.mu.Unlock()
	}
	return err
}

// lostAtRelease records that Release found the Lease taken over or
// deleted: the lock had been lost before it was released. Err and the
// cause of Context report that loss from now on.
func (lk *Lock) lostAtRelease(err error) {
	var lost *lostError
	if !errors.As(err, &lost) {
		return
	}
	lk.mu.Lock()
	defer lk.mu.Unlock()
	lk.state = stateLost
	lk.lostErr = lost
	lk.ctx.endLocked(lost)
}

// maxHandoffWrites bounds the hand-off Updates of one Release: a second one
// only after the first met our own unseen renewal.
const maxHandoffWrites = 2

// handoffWrite is the hand-off Release sent: the holder id it writes for
// the waiter, and when its first Update was sent (the safe time to count a
// landed hand-off from).
type handoffWrite struct {
	holder string
	first  time.Time
}

// handoff gives the Lease to waiter w with one Update: a new holder id, a
// new acquireTime and leaseTransitions+1, so the token (the returned
// resourceVersion) increases like on any other acquisition. On Conflict,
// or a response lost on the way back, it reads the Lease: our own renewal
// that landed unseen is retried over once; the hand-off itself having
// landed is a success. It returns an error matching ErrLost when another
// holder took the Lease or it is gone, and another error when the outcome
// is unknown; then the hand-off may still have landed, and what it sent
// lets the caller recognise it.
func (l *Locker) handoff(ctx context.Context, lk *Lock, cur *coordinationv1.Lease, w *waiter) (handoffWrite, error) {
	s := lk.slot
	hw := handoffWrite{holder: l.newHolder()}
	holder := hw.holder
	base := cur
	var err error
	for try := 0; try < maxHandoffWrites; try++ {
		sent := l.clock.Now()
		if try == 0 {
			hw.first = sent
		}
		next := base.DeepCopy()
		l.stamp(next, s.key, holder, sent, transitions(base)+1)
		var updated *coordinationv1.Lease
		updated, err = l.leases.Update(ctx, next, metav1.UpdateOptions{})
		switch {
		case err == nil:
			l.grantHandoff(ctx, s, w, holder, updated, sent)
			return hw, nil
		case apierrors.IsNotFound(err):
			return hw, &lostError{reason: lossDeleted, detail: "lease deleted"}
		case !apierrors.IsConflict(err):
			l.metrics.apiErrors.WithLabelValues("update").Inc()
			if !ambiguous(err) {
				return hw, err
			}
		}
		got, gerr := l.leases.Get(ctx, lk.name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(gerr):
			return hw, &lostError{reason: lossDeleted, detail: "lease deleted"}
		case gerr != nil:
			l.metrics.apiErrors.WithLabelValues("get").Inc()
			return hw, fmt.Errorf("%w (then: get lease: %v)", err, gerr)
		case got.UID != cur.UID:
			return hw, &lostError{reason: lossDeleted, detail: "lease deleted and recreated"}
		case holderOf(got) == holder:
			// One of our hand-off Updates landed; its response was lost.
			// The earliest send time is the safe one to count from.
			l.grantHandoff(ctx, s, w, holder, got, hw.first)
			return hw, nil
		case holderOf(got) != lk.holder:
			return hw, &lostError{reason: lossTakenOver, detail: fmt.Sprintf("lease now held by %q", holderOf(got))}
		}
		// Still ours: a renewal of ours landed without us seeing it (or
		// the failed hand-off did not land). Retry over what is stored.
		base = got
	}
	return hw, err
}

// grantHandoff makes the Lease just handed off a Lock of waiter w.
func (l *Locker) grantHandoff(ctx context.Context, s *slot, w *waiter, holder string, written *coordinationv1.Lease, sent time.Time) {
	nlk := l.newLock(w.ctx, s, holder, written, sent)

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		nlk.slot = nil
		close(nlk.done)
		_ = nlk.release(ctx, closedError{}, false)
		l.passSlot(s, w) // fails w and anyone left with ErrClosed
		return
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
}

// deleteOwned deletes the Lease only if it is still exactly the one we
// wrote last (UID and resourceVersion preconditions). It returns the
// resourceVersion of the Lease it deleted.
//
// handedTo is the holder id of a hand-off whose outcome is unknown, or
// empty. If the Delete meets that hand-off (Conflict, and the Lease names
// that holder), it deletes nothing and returns the Lease as landed: the
// hand-off stands, nobody else wrote the Lease, and the caller grants it.
//
// Only a Lease found deleted, or held by a holder id that is not ours,
// makes the error match ErrLost; a Conflict whose read-back fails leaves
// the outcome unknown, and the error says so without ErrLost.
func (l *Locker) deleteOwned(ctx context.Context, lk *Lock, cur *coordinationv1.Lease, handedTo string) (deleted string, landed *coordinationv1.Lease, err error) {
	uid, rv := cur.UID, cur.ResourceVersion
	for try := 0; ; try++ {
		err = l.leases.Delete(ctx, lk.name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
		switch {
		case err == nil:
			l.metrics.releases.WithLabelValues("deleted").Inc()
			return rv, nil, nil
		case apierrors.IsNotFound(err):
			l.metrics.releases.WithLabelValues("lost").Inc()
			return "", nil, fmt.Errorf("release %s: %w", lk.key, &lostError{reason: lossDeleted, detail: "lease already deleted"})
		case !apierrors.IsConflict(err):
			l.metrics.apiErrors.WithLabelValues("delete").Inc()
			l.metrics.releases.WithLabelValues("error").Inc()
			return "", nil, fmt.Errorf("release %s: delete lease %s: %w", lk.key, lk.name, err)
		}
		// Conflict: taken over, unless a write of ours landed unseen: a
		// renewal (delete what it wrote), or the hand-off.
		got, gerr := l.leases.Get(ctx, lk.name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(gerr):
			l.metrics.releases.WithLabelValues("lost").Inc()
			return "", nil, fmt.Errorf("release %s: %w", lk.key, &lostError{reason: lossDeleted, detail: "lease deleted"})
		case gerr != nil:
			l.metrics.apiErrors.WithLabelValues("get").Inc()
			l.metrics.releases.WithLabelValues("error").Inc()
			return "", nil, fmt.Errorf("release %s: delete lease %s: %w (then: get lease: %v)", lk.key, lk.name, err, gerr)
		case got.UID != uid:
			l.metrics.releases.WithLabelValues("lost").Inc()
			return "", nil, fmt.Errorf("release %s: %w", lk.key, &lostError{reason: lossDeleted, detail: "lease deleted and recreated"})
		case handedTo != "" && holderOf(got) == handedTo:
			return "", got, nil
		case try == 0 && holderOf(got) == lk.holder:
			rv = got.ResourceVersion
			continue
		}
		l.metrics.releases.WithLabelValues("lost").Inc()
		return "", nil, fmt.Errorf("release %s: %w", lk.key, &lostError{reason: lossTakenOver, detail: "lease changed by another holder"})
	}
}
