package lease

import "errors"

// Sentinel errors. Callers branch on them with errors.Is; the returned errors
// wrap them with the key and the operation.
var (
	// ErrHeld means the key is held by another holder: another process, or
	// another goroutine of this process through the same Locker.
	ErrHeld = errors.New("lease: lock held by another holder")

	// ErrLost means a lock that was acquired is no longer safely held: its
	// safe deadline passed without a successful renewal, or its Lease was
	// observed taken over or deleted (by a renewal, or by Release itself).
	// It is the cause of Lock.Context once lost, and what Lock.Err and
	// Lock.Release return afterwards. TryAcquire and Acquire return it for
	// a lock that ended before they could return it.
	ErrLost = errors.New("lease: lock lost")

	// ErrReleased is the cause of Lock.Context after a Release (or after
	// Locker.Close released the lock, see ErrClosed) and what Lock.Err
	// returns afterwards. It is deliberately not ErrLost: a released lock
	// ended by the holder's own decision. If Release finds the Lease taken
	// over or deleted, both say ErrLost instead.
	ErrReleased = errors.New("lease: lock released")

	// ErrNotHeld is what Lock.Release and Lock.Err return for a nil or
	// zero Lock, which no Locker acquired. A Lock that was acquired never
	// reports it: once released, Err returns ErrReleased and Release nil;
	// once lost (also when Release found it lost), both return ErrLost.
	ErrNotHeld = errors.New("lease: lock not held by this locker")

	// ErrClosed is returned by TryAcquire and Acquire once the Locker is
	// closing (also when Close released the lock before they could return
	// it; if that release found the Lease taken over, the error matches
	// ErrLost as well), and is the cause (with ErrReleased) of the Context of locks
	// released by Locker.Close, unless that release found the Lease taken
	// over or deleted: then the cause is ErrLost.
	ErrClosed = errors.New("lease: locker closed")
)

// lossReason is a bounded label value for the losses metric.
type lossReason string

const (
	lossDeadline  lossReason = "deadline"   // no successful renewal before the safe deadline
	lossTakenOver lossReason = "taken_over" // a renewal found another holder in the Lease
	lossDeleted   lossReason = "deleted"    // a renewal found the Lease gone
	lossForced    lossReason = "forced"     // leasetest forced the loss
)

// lostError is ErrLost with the reason, so errors.Is(err, ErrLost) holds and
// the message says why.
type lostError struct {
	reason lossReason
	detail string
}

func (e *lostError) Error() string {
	if e.detail == "" {
		return ErrLost.Error() + " (" + string(e.reason) + ")"
	}
	return ErrLost.Error() + " (" + string(e.reason) + "): " + e.detail
}

func (e *lostError) Unwrap() error { return ErrLost }

// closedError is the cause given to a lock released by Locker.Close: both
// ErrClosed and ErrReleased. It is not ErrLost; if that release then finds
// the Lease taken over or deleted, the cause becomes the ErrLost it found
// (lostAtRelease). It is also the error of an acquisition whose lock Close
// released before it could be returned.
type closedError struct{}

func (closedError) Error() string   { return ErrClosed.Error() + ": " + ErrReleased.Error() }
func (closedError) Is(t error) bool { return t == ErrClosed || t == ErrReleased }
