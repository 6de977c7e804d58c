package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/lease/internal/forceloss"
)

// Interface is what code that takes locks depends on. *Locker implements
// it, and so does leasetest.Fake, whose locks are real *Lock values.
type Interface interface {
	// TryAcquire takes the lock for key if it is free (or its Lease has
	// expired by this process's observation) and returns ErrHeld otherwise.
	TryAcquire(ctx context.Context, key string) (*Lock, error)
	// Acquire waits for the lock for key until ctx ends.
	Acquire(ctx context.Context, key string) (*Lock, error)
}

var _ Interface = (*Locker)(nil)

// Locker hands out named locks backed by coordination.k8s.io/v1 Leases in
// one namespace. It is safe for concurrent use. Per key it holds at most one
// Lease and queues its local waiters behind the holder; see the package
// documentation for the protocol and its guarantees.
type Locker struct {
	leases  coordinationv1client.LeaseInterface
	opts    Options
	clock   clock.Clock
	metrics *metrics

	// closeCtx is cancelled (cause ErrClosed) by Close; it aborts remote
	// acquisitions in progress.
	closeCtx    context.Context
	closeCancel context.CancelCauseFunc

	mu     sync.Mutex
	idle   *sync.Cond // broadcast when active drops to zero
	active int        // goroutines and calls Close waits for
	closed bool
	// slots has an entry for every key owned by a goroutine of this
	// process: the holder, or the head of the queue acquiring remotely.
	slots map[string]*slot
	// observed records, per Lease name, the resourceVersion last seen and
	// when this process first saw it (local monotonic clock). It is the
	// only basis of expiry.
	observed map[string]observation
	// sweepObserved is the sweeper's own record, so that sweeping and
	// acquiring do not reset each other's observations.
	sweepObserved map[string]observation
}

// slot is the per-key local exclusion state. Whoever owns the slot (the
// goroutine acquiring remotely, then the Lock it got) is the only one that
// talks to the API server about the key; the others wait in FIFO order.
type slot struct {
	key, name string
	holder    *Lock // nil while the owner is acquiring remotely
	waiters   []*waiter
	handoffs  int // consecutive local hand-offs since the Lease was written by a remote acquisition
	// yieldAfter is set, under Locker.mu, when a Release deleted the Lease
	// because the fairness bound (MaxLocalHandoffs) was reached; it holds
	// the resourceVersion of the deleted Lease, from which a watch sees the
	// deletion and any later creation. The next local owner of the slot
	// clears it and gives remote waiters a window to take the key first.
	yieldAfter string
}

// waiter is a goroutine queued in Acquire behind the slot's owner.
type waiter struct {
	ctx context.Context
	ch  chan grant // buffered; receives exactly one grant once popped from the queue
}

// grant is what a popped waiter receives.
type grant struct {
	lk  *Lock // the lock, handed off; if nil (and err is nil) the waiter owns the slot and acquires remotely
	err error // ErrClosed
}

func (s *slot) remove(w *waiter) bool {
	for i, q := range s.waiters {
		if q == w {
			s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
			return true
		}
	}
	return false
}

// New returns a Locker for the Leases of client in opts.Namespace. It
// validates opts and fills zero values with the defaults documented on each
// field. Take the typed client (clientset.CoordinationV1()): it never reads
// from an informer cache.
func New(client coordinationv1client.LeasesGetter, opts Options) (*Locker, error) {
	if client == nil {
		return nil, errors.New("lease: nil client")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer, opts.MetricsNamespace)
	if err != nil {
		return nil, err
	}
	l := &Locker{
		leases:        leaseClient{client.Leases(opts.Namespace)},
		opts:          opts,
		clock:         opts.Clock,
		metrics:       m,
		slots:         make(map[string]*slot),
		observed:      make(map[string]observation),
		sweepObserved: make(map[string]observation),
	}
	l.idle = sync.NewCond(&l.mu)
	l.closeCtx, l.closeCancel = context.WithCancelCause(context.Background())
	return l, nil
}

// TryAcquire takes the lock for key without waiting. It returns an error
// matching ErrHeld when another holder has it: another process whose Lease
// this Locker has not yet observed unchanged for a full lease duration, or
// another goroutine of this process (then without any API call). Acquiring a
// free key costs one Create.
//
// It never returns a lock that is not safely held: if the safe deadline of
// the lock it took has passed by the time it would return it (the process
// paused, or the write was answered that late), it ends that lock and
// returns an error matching ErrLost.
func (l *Locker) TryAcquire(ctx context.Context, key string) (*Lock, error) {
	return l.acquire(ctx, key, false)
}

// Acquire takes the lock for key, waiting as long as ctx allows: behind
// local holders in FIFO order without API calls, and for a remote holder by
// watching its Lease until it is deleted or expires by observation. Without
// a deadline on ctx it waits forever, like sync.Mutex.Lock. API errors other
// than contention end the wait at once. Like TryAcquire, it returns an error
// matching ErrLost rather than a lock whose safe deadline has passed.
func (l *Locker) Acquire(ctx context.Context, key string) (*Lock, error) {
	return l.acquire(ctx, key, true)
}

func (l *Locker) acquire(ctx context.Context, key string, wait bool) (*Lock, error) {
	method := "try"
	if wait {
		method = "wait"
	}
	l.metrics.attempts.WithLabelValues(method).Inc()
	start := l.clock.Now()
	lk, err := l.acquireSlot(ctx, key, wait)
	if err == nil {
		if lerr := lk.Err(); lerr != nil {
			// The lock ended before it could be returned: the acquisition
			// outlasted its safe deadline (a pause, or a write answered
			// late), or a loss was observed during the lock delay. It is
			// not safely held; end it (touching nothing once the deadline
			// has passed) and pass the key on.
			switch {
			case errors.Is(lerr, ErrReleased):
				// Nobody holds a lock not yet returned but the Locker:
				// Close released it (a hand-off granted as Close began).
				lerr = closedError{}
			case l.closeCtx.Err() != nil:
				// Close released it and found it lost on the way: still
				// an acquisition ended by Close, and the loss is kept.
				lerr = fmt.Errorf("%w: %w", ErrClosed, lerr)
			}
			_ = lk.Release(ctx)
			lk, err = nil, fmt.Errorf("acquire %s: lock ended before it was returned: %w", key, lerr)
		}
	}
	outcome := "acquired"
	switch {
	case err == nil:
	case errors.Is(err, ErrHeld):
		outcome = "held"
	case ctx.Err() != nil || errors.Is(err, ErrClosed):
		outcome = "canceled"
	default:
		outcome = "error"
	}
	l.metrics.acquireDuration.WithLabelValues(outcome).Observe(l.clock.Since(start).Seconds())
	return lk, err
}

func (l *Locker) acquireSlot(ctx context.Context, key string, wait bool) (*Lock, error) {
	if key == "" {
		return nil, errors.New("acquire: empty key")
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("acquire %s: %w", key, context.Cause(ctx))
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, fmt.Errorf("acquire %s: %w", key, ErrClosed)
	}
	s := l.slots[key]
	if s == nil {
		s = &slot{key: key, name: LeaseName(l.opts.Prefix, key)}
		l.slots[key] = s
		l.active++
		l.mu.Unlock()
		defer l.done()
		return l.acquireOwned(ctx, s, wait)
	}
	l.metrics.contention.WithLabelValues("local").Inc()
	if !wait {
		l.mu.Unlock()
		return nil, fmt.Errorf("acquire %s: held in this process: %w", key, ErrHeld)
	}
	w := &waiter{ctx: ctx, ch: make(chan grant, 1)}
	s.waiters = append(s.waiters, w)
	l.active++
	l.mu.Unlock()
	defer l.done()

	var g grant
	select {
	case g = <-w.ch:
	case <-ctx.Done():
		l.mu.Lock()
		removed := s.remove(w)
		l.mu.Unlock()
		if !removed {
			// Popped concurrently: the grant is on its way (a hand-off
			// takes at most one bounded API call). Give it back.
			g = <-w.ch
			switch {
			case g.lk != nil:
				_ = g.lk.Release(ctx) // runs on its own bounded context; hands off to the next waiter
			case g.err == nil:
				l.passSlot(s, nil)
			}
		}
		return nil, fmt.Errorf("acquire %s: waiting in this process: %w", key, context.Cause(ctx))
	}
	if g.err != nil {
		return nil, fmt.Errorf("acquire %s: %w", key, g.err)
	}
	if g.lk != nil {
		return g.lk, nil
	}
	return l.acquireOwned(ctx, s, true)
}

// acquireOwned acquires the Lease for the slot the caller owns. On failure
// the slot goes to the next waiter.
func (l *Locker) acquireOwned(ctx context.Context, s *slot, wait bool) (*Lock, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(l.closeCtx, func() { cancel(ErrClosed) })
	defer stop()

	lk, path, err := l.acquireRemote(ctx, s, wait)
	if err != nil {
		l.passSlot(s, nil)
		return nil, err
	}
	if path == "takeover" && l.opts.LockDelay > 0 {
		t := l.clock.NewTimer(l.opts.LockDelay)
		defer t.Stop()
		select {
		case <-t.C():
		case <-ctx.Done():
			// The lock owns the slot now; Release hands it on.
			_ = lk.Release(ctx)
			return nil, fmt.Errorf("acquire %s: lock delay: %w", s.key, context.Cause(ctx))
		}
	}
	return lk, nil
}

// install makes lk the holder of its slot and starts its renewer. It fails
// with ErrClosed when the Locker closed meanwhile; lk is then detached from
// the slot and the caller must release it.
func (l *Locker) install(lk *Lock) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		lk.slot = nil
		close(lk.done) // no renewer
		return ErrClosed
	}
	lk.slot.holder = lk
	l.active++
	l.mu.Unlock()
	go lk.renewLoop()
	return nil
}

// passSlot gives the slot to w, or to the first waiter when w is nil, or
// frees it. The caller owns the slot (and holds no lock on it).
func (l *Locker) passSlot(s *slot, w *waiter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.passSlotLocked(s, w)
}

func (l *Locker) passSlotLocked(s *slot, w *waiter) {
	s.holder = nil
	s.handoffs = 0
	if l.closed {
		if w != nil {
			w.ch <- grant{err: ErrClosed}
		}
		for _, q := range s.waiters {
			q.ch <- grant{err: ErrClosed}
		}
		s.waiters = nil
		if l.slots[s.key] == s {
			delete(l.slots, s.key)
		}
		return
	}
	if w == nil && len(s.waiters) > 0 {
		w = s.waiters[0]
		s.waiters = s.waiters[1:]
	}
	if w == nil {
		delete(l.slots, s.key)
		return
	}
	w.ch <- grant{}
}

// vacate passes the slot on after lk was lost.
func (l *Locker) vacate(lk *Lock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := lk.slot; s != nil && s.holder == lk {
		l.passSlotLocked(s, nil)
	}
}

// nextForHandoff pops the first waiter that may receive lk by a local
// hand-off, or returns nil when lk must really be released: no live
// waiter, the fairness bound reached, hand-offs disabled, or closing.
// fairness reports that only the bound stands in the way of a hand-off to
// a live waiter: the release that follows is the one that gives other
// processes their turn.
func (l *Locker) nextForHandoff(lk *Lock) (w *waiter, fairness bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := lk.slot
	if s == nil || s.holder != lk || l.closed || l.opts.MaxLocalHandoffs < 0 {
		return nil, false
	}
	for i, q := range s.waiters {
		if q.ctx.Err() != nil {
			continue
		}
		if s.handoffs >= l.opts.MaxLocalHandoffs {
			return nil, true
		}
		s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
		return q, false
	}
	return nil, false
}

func (l *Locker) begin() {
	l.mu.Lock()
	l.active++
	l.mu.Unlock()
}

func (l *Locker) done() {
	l.mu.Lock()
	l.active--
	if l.active == 0 {
		l.idle.Broadcast()
	}
	l.mu.Unlock()
}

// Close stops the Locker: new acquisitions and queued waiters fail with
// ErrClosed, acquisitions in progress are aborted, held locks are released
// (their Context is cancelled with a cause matching ErrClosed and
// ErrReleased, or ErrLost if the release finds the Lease taken over or
// deleted, as Release does; no local hand-off), and Close waits for every
// goroutine the Locker started and for Releases still in progress. It
// returns the release errors other than ErrLost. Calling Close again waits
// and returns nil.
func (l *Locker) Close() error {
	l.mu.Lock()
	if l.closed {
		for l.active > 0 {
			l.idle.Wait()
		}
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.closeCancel(ErrClosed)
	var held []*Lock
	for _, s := range l.slots {
		if s.holder != nil {
			held = append(held, s.holder)
		}
		for _, w := range s.waiters {
			w.ch <- grant{err: ErrClosed}
		}
		s.waiters = nil
	}
	l.mu.Unlock()

	var errs []error
	for _, lk := range held {
		if err := lk.release(context.Background(), closedError{}, false); err != nil && !errors.Is(err, ErrLost) {
			errs = append(errs, err)
		}
	}
	l.mu.Lock()
	for l.active > 0 {
		l.idle.Wait()
	}
	l.mu.Unlock()
	return errors.Join(errs...)
}

// newHolder returns a holder id unique to one acquisition.
func (l *Locker) newHolder() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return l.opts.Identity + "/" + hex.EncodeToString(b[:])
}

// forceLoss is the hook leasetest uses to simulate a lost lock.
func (l *Locker) forceLoss(key string, detail string) bool {
	l.mu.Lock()
	var lk *Lock
	if s := l.slots[key]; s != nil {
		lk = s.holder
	}
	l.mu.Unlock()
	if lk == nil {
		return false
	}
	lk.lose(lossForced, detail)
	return true
}

func init() {
	forceloss.Func = func(locker any, key, detail string) bool {
		l, ok := locker.(*Locker)
		return ok && l.forceLoss(key, detail)
	}
}
