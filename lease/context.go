package lease

import (
	"context"
	"errors"
	"sync/atomic"
)

// lockContext is the context a Lock hands out (Lock.Context). It is a
// cancelCtx (base) that the lock cancels when it ends, with two additions:
//
//   - Err, Done and Value first compare the safe deadline with the
//     Locker's clock, exactly as Lock.Err does, and cancel base with the
//     deadline loss if it has passed. A process resuming from a pause thus
//     finds the context done as soon as it looks, before the renewer's
//     timer has had a chance to fire: the context never reports the lock
//     live while Lock.Err reports it lost. (A goroutine already blocked on
//     Done wakes when the timer fires; it cannot act before then anyway.)
//     Cancelling base is the only effect of such a read: declaring the
//     loss, stopping the renewer and passing the key on stay with the
//     renewer.
//   - If Release learns that the lock had been lost (its Lease taken over
//     or deleted) after it cancelled base with ErrReleased, the cause is
//     corrected to that loss: Value answers from late, a context cancelled
//     with it, so context.Cause (which looks the cancelCtx up through
//     Value) reports ErrLost from then on.
//
// Done returns base's channel and Value finds base, so contexts derived
// from it attach to base directly, without a goroutine each, and are
// cancelled with it.
type lockContext struct {
	context.Context // base
	cancel          context.CancelCauseFunc
	lk              *Lock
	values          context.Context // the acquiring context's values, without its cancellation
	late            atomic.Pointer[context.Context]
}

func (c *lockContext) Done() <-chan struct{} {
	c.expireIfDue()
	return c.Context.Done()
}

func (c *lockContext) Err() error {
	c.expireIfDue()
	return c.Context.Err()
}

func (c *lockContext) Value(key any) any {
	c.expireIfDue()
	if late := c.late.Load(); late != nil {
		return (*late).Value(key)
	}
	return c.Context.Value(key)
}

// expireIfDue ends the context with the deadline loss if the lock is held,
// or being released, and its safe deadline has passed. It decides under the
// lock's mutex, on the same clock and deadline as Lock.Err, so the two
// never disagree.
func (c *lockContext) expireIfDue() {
	if c.late.Load() != nil {
		return // the cause is final
	}
	lk := c.lk
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if (lk.state == stateHeld || lk.state == stateReleasing) && !lk.l.clock.Now().Before(lk.deadline) {
		c.endLocked(lk.expired)
	}
}

// endLocked cancels the context with cause, or, if it was already
// cancelled with a cause that is not a loss and cause is one, corrects the
// cause. The caller holds lk.mu, so that the lock's state and its context
// change together.
func (c *lockContext) endLocked(cause error) {
	if c.Context.Err() == nil {
		c.cancel(cause)
		return
	}
	if !errors.Is(cause, ErrLost) || errors.Is(context.Cause(c.Context), ErrLost) || c.late.Load() != nil {
		return
	}
	late, cancel := context.WithCancelCause(c.values)
	cancel(cause)
	c.late.Store(&late)
}
