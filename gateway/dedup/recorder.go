package dedup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/backoff"
	"github.com/leasehold/leasehold/lease"
)

// Recorder is the Deduplicator of the gateway: deterministic names fence
// creates, resourceVersions fence count updates, a per-fingerprint lease
// lock keeps replicas from colliding, and concurrent identical incidents of
// one process share one attempt loop and one write.
type Recorder struct {
	c      client.Client
	locker lease.Interface
	opts   Options
	m      *metrics
	nonce  string        // random part of this Recorder's write ids
	seq    atomic.Uint64 // sequence part of its write ids
	// readBackPolicy spaces the reads back of a write whose outcome is
	// unknown, with jitter from Options.Rand.
	readBackPolicy backoff.Policy

	mu      sync.Mutex
	groups  map[string]*group // fingerprint -> incidents waiting to be counted
	names   map[string]string // fingerprint -> latest request name seen
	closed  bool              // set by Close: no new batches
	workers sync.WaitGroup
}

var _ Deduplicator = (*Recorder)(nil)

// group gathers the incidents of one fingerprint that wait to be counted.
// At most one worker goroutine runs per group; it exists while pending is
// not empty and is removed from Recorder.groups when it drains.
type group struct {
	pending []*waiter
}

// waiter is one Record call.
type waiter struct {
	in   Incident
	done chan struct{} // closed once res and err are set
	res  Result
	err  error
	// taken is set while a write that counts this incident is in flight;
	// gone once its caller's context ended (a caller whose incident is
	// taken still waits for the answer); tried once an attempt started
	// while it was pending. All are guarded by Recorder.mu.
	taken, gone, tried bool
	// cause is why the caller's context ended, once gone.
	cause error
}

// New returns a Recorder that writes RemediationRequests through c, which
// must read from the API server (not from an informer cache), and takes
// locks from locker.
func New(c client.Client, locker lease.Interface, opts Options) (*Recorder, error) {
	if c == nil {
		return nil, errors.New("dedup: nil client")
	}
	if locker == nil {
		return nil, errors.New("dedup: nil locker: locking cannot be switched off")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("dedup: %w", err)
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	readBack, err := newReadBackPolicy(opts.Rand)
	if err != nil {
		return nil, fmt.Errorf("dedup: read-back policy: %w", err)
	}
	var nonce [4]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("dedup: draw write id: %w", err)
	}
	return &Recorder{
		c:              c,
		locker:         locker,
		opts:           opts,
		m:              m,
		nonce:          hex.EncodeToString(nonce[:]),
		readBackPolicy: readBack,
		groups:         make(map[string]*group),
		names:          make(map[string]string),
	}, nil
}

// Record counts one incident; see Deduplicator. It joins the batch of its
// fingerprint: if no worker runs for it, this call starts one. The worker
// runs on a context of its own, not any one caller's (a caller that gives
// up must not abort the write for the others); it is bounded by the attempt
// budget and by deadlines of its own on every read and write (see
// MaxOutcomeWait). After Close, Record fails with ErrUnavailable wrapping
// ErrClosed.
//
// When ctx ends before the incident was taken into a write, Record returns
// at once with ErrNotRecorded: it was not counted. Once taken, Record waits
// for the write's answer whatever ctx says, at most MaxOutcomeWait past the
// end of ctx, since only that answer tells whether the incident was
// counted: returning early would turn a counted signal into an error,
// which the sender retries into a double count.
func (r *Recorder) Record(ctx context.Context, in Incident) (Result, error) {
	if len(in.Fingerprint) != 64 {
		return Result{}, fmt.Errorf("dedup: fingerprint %q is not 64 hex digits", in.Fingerprint)
	}
	w := &waiter{in: in, done: make(chan struct{})}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return Result{}, fmt.Errorf("%w: fingerprint %s: %w", ErrUnavailable, in.Fingerprint, ErrClosed)
	}
	g, running := r.groups[in.Fingerprint]
	if !running {
		g = &group{}
		r.groups[in.Fingerprint] = g
	}
	g.pending = append(g.pending, w)
	if !running {
		r.workers.Add(1)
	}
	r.mu.Unlock()
	if !running {
		go r.work(in.Fingerprint, g)
	}

	select {
	case <-w.done:
		return w.res, w.err
	case <-ctx.Done():
	}
	r.mu.Lock()
	select {
	case <-w.done:
		// Answered while the context ended: the answer is the truth.
		r.mu.Unlock()
		return w.res, w.err
	default:
	}
	w.gone, w.cause = true, context.Cause(ctx)
	if !w.taken {
		g.pending = slices.DeleteFunc(g.pending, func(p *waiter) bool { return p == w })
		r.mu.Unlock()
		return Result{}, notRecorded(w)
	}
	r.mu.Unlock()
	// The write that counts it is in flight; putBack answers it with
	// ErrNotRecorded if that write turns out not to have counted it.
	<-w.done
	return w.res, w.err
}

func notRecorded(w *waiter) error {
	return fmt.Errorf("%w: fingerprint %s: %w", ErrNotRecorded, w.in.Fingerprint, w.cause)
}

// Close stops new batches and waits, until ctx ends, for the workers in
// flight: callers release the Locker after it, so that no lock is released
// under a write that is still being made. A worker answering callers ends
// at most MaxOutcomeWait after the last of them gave up; give ctx that
// much if callers may still be waiting.
func (r *Recorder) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		r.workers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("dedup: workers still running: %w", context.Cause(ctx))
	}
}

// work runs attempt loops for g until no incident is pending. Incidents
// that arrive while a write is in flight are counted by the next one.
func (r *Recorder) work(fp string, g *group) {
	defer r.workers.Done()
	log := r.opts.Logger.WithValues("fingerprint", fp)
	ctx := logr.NewContext(context.Background(), log)
	for {
		r.mu.Lock()
		if len(g.pending) == 0 {
			delete(r.groups, fp)
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()

		failed := 0
		_, err := backoff.Retry(ctx, func(ctx context.Context) (struct{}, error) {
			result, err := r.attempt(ctx, fp, g)
			r.m.attempts.WithLabelValues(result).Inc()
			if err != nil {
				failed++
			}
			return struct{}{}, err
		},
			backoff.WithPolicy(r.opts.Policy),
			backoff.WithMaxAttempts(r.opts.MaxAttempts),
			backoff.WithClock(r.opts.Clock),
			backoff.WithNotify(func(_ error, attempt int, next time.Duration) {
				r.m.backoff.WithLabelValues(attemptLabel(attempt)).Observe(next.Seconds())
			}),
		)
		switch {
		case err == nil:
			if failed > 0 {
				r.m.successes.Inc()
			}
			continue
		case errors.Is(err, backoff.ErrExhausted):
			r.m.exhausted.Inc()
			err = fmt.Errorf("%w for fingerprint %s after %d attempts: %w", ErrBusy, fp, r.opts.MaxAttempts, err)
		}
		// Only incidents that an attempt of this loop saw fail; those that
		// joined after its last attempt began get a loop of their own. The
		// callers log the error, with their request's details.
		r.mu.Lock()
		g.pending = slices.DeleteFunc(g.pending, func(w *waiter) bool {
			if w.tried {
				r.answer(w, Result{}, err)
			}
			return w.tried
		})
		r.mu.Unlock()
	}
}

// Attempt outcomes that Retry sees as failures.
var (
	errHeld     = errors.New("lock held by another writer")
	errConflict = errors.New("request changed since it was read")
	errExists   = errors.New("request created by another writer")
	errLockLost = errors.New("lock lost before the write")
)

// attempt reads the fingerprint's latest request, takes the lock if the
// write needs it, and counts every incident pending at that moment with
// one create or one status update. It returns the attempt's result label
// and nil when the taken incidents were answered (or none was left).
func (r *Recorder) attempt(ctx context.Context, fp string, g *group) (string, error) {
	r.mu.Lock()
	for _, w := range g.pending {
		w.tried = true
	}
	r.mu.Unlock()
	cur, next, err := r.latest(ctx, fp)
	if err != nil {
		return resultError, backoff.Permanent(fmt.Errorf("%w: read requests for fingerprint %s: %w", ErrUnavailable, fp, err))
	}

	if r.opts.Lock == LockAll || (cur != nil && r.opts.Lock == LockUpdates) {
		lk, err := r.locker.TryAcquire(ctx, fp)
		switch {
		case errors.Is(err, lease.ErrHeld):
			return resultHeld, errHeld
		case err != nil:
			return resultError, backoff.Permanent(fmt.Errorf("%w: lock fingerprint %s: %w", ErrUnavailable, fp, err))
		}
		defer func() {
			if err := lk.Release(ctx); err != nil {
				logr.FromContextOrDiscard(ctx).V(1).Info("Release failed; the lease will expire", "error", err.Error())
			}
		}()
		if err := r.criticalSectionDelay(ctx); err != nil {
			return resultError, err
		}
		// The lock only saves attempts, but a lock lost while this replica
		// stood still means another writer is likely at work: let it.
		if lk.Err() != nil {
			return resultLost, errLockLost
		}
		if cur == nil {
			return r.create(ctx, fp, g, next, lk.Token().String())
		}
		return r.update(ctx, g, cur)
	}
	if err := r.criticalSectionDelay(ctx); err != nil {
		return resultError, err
	}
	if cur == nil {
		return r.create(ctx, fp, g, next, "")
	}
	return r.update(ctx, g, cur)
}

func (r *Recorder) criticalSectionDelay(ctx context.Context) error {
	if r.opts.CriticalSectionDelay <= 0 {
		return nil
	}
	t := r.opts.Clock.NewTimer(r.opts.CriticalSectionDelay)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return backoff.Permanent(context.Cause(ctx))
	}
}

// take marks the pending incidents as counted by the write about to be
// made and returns them, oldest first. Callers that already left are
// dropped instead.
func (r *Recorder) take(g *group) []*waiter {
	r.mu.Lock()
	defer r.mu.Unlock()
	batch := slices.DeleteFunc(g.pending, func(w *waiter) bool { return w.gone })
	g.pending = nil
	for _, w := range batch {
		w.taken = true
	}
	return batch
}

// putBack returns incidents whose write did not count them to the front of
// the pending list, for the next attempt. Those whose callers' contexts
// ended meanwhile are answered ErrNotRecorded instead: they were not
// counted, and their callers are waiting for exactly that answer.
func (r *Recorder) putBack(g *group, batch []*waiter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	kept := slices.DeleteFunc(slices.Clone(batch), func(w *waiter) bool {
		if w.gone {
			r.answer(w, Result{}, notRecorded(w))
		}
		return w.gone
	})
	for _, w := range kept {
		w.taken = false
	}
	g.pending = append(kept, g.pending...)
}

// unknown answers the incidents of an ambiguous write whose outcome stays
// open with ErrUnknownOutcome, and ends the loop: why says why the read
// back (or its failure) did not settle it. The others pending fail with
// ErrUnavailable (they were not counted): the request's state is not
// known well enough to count them now.
func (r *Recorder) unknown(batch []*waiter, what string, writeErr, why error) (string, error) {
	err := fmt.Errorf("%w: %s: %w; %w", ErrUnknownOutcome, what, writeErr, why)
	r.mu.Lock()
	for _, w := range batch {
		r.answer(w, Result{}, err)
	}
	r.mu.Unlock()
	return resultUnknown, backoff.Permanent(fmt.Errorf("%w: %s: outcome unknown: %w", ErrUnavailable, what, why))
}

// answer completes one Record call. Recorder.mu must not be needed by the
// reader: done is closed after res and err are set.
func (r *Recorder) answer(w *waiter, res Result, err error) {
	w.res, w.err = res, err
	close(w.done)
}

// create makes generation next of the fingerprint's requests, counting the
// first pending incident, and then adds the rest of the batch to it.
func (r *Recorder) create(ctx context.Context, fp string, g *group, next int64, token string) (string, error) {
	batch := r.take(g)
	if len(batch) == 0 {
		return resultIdle, nil
	}
	first := batch[0]
	id := r.writeID()
	rr := r.newRequest(first.in, next, token, id)
	log := logr.FromContextOrDiscard(ctx).WithValues("remediationRequest", rr.Name)
	sent := r.opts.Clock.Now()
	if err := r.bounded(ctx, writeTimeout, func(ctx context.Context) error { return r.c.Create(ctx, rr) }); err != nil {
		switch {
		case apierrors.IsAlreadyExists(err):
			r.putBack(g, batch)
			// Read it at once: the next attempt counts into it.
			r.remember(fp, rr.Name)
			return resultExists, backoff.RetryAfter(0, errExists)
		case !ambiguous(err):
			r.putBack(g, batch)
			return resultError, backoff.Permanent(fmt.Errorf("%w: create %s: %w", ErrUnavailable, rr.Name, err))
		}
		got, rerr := r.readBack(ctx, rr.Name, sent.Add(MaxOutcomeWait))
		switch {
		case rerr != nil:
			r.putBack(g, batch[1:]) // not part of this write
			return r.unknown(batch[:1], "create "+rr.Name, err, fmt.Errorf("reading it back failed: %w", rerr))
		case createVerdict(got, id) == notApplied:
			// Not created, or created by another writer: count into it
			// on the next attempt.
			log.V(1).Info("Create failed and was not applied", "error", err.Error())
			r.putBack(g, batch)
			return resultNotApplied, errNotApplied
		}
		log.V(1).Info("Create failed but was applied", "error", err.Error())
		rr = got
	}
	r.remember(fp, rr.Name)
	r.m.batch.Observe(1)
	log.Info("Created remediation request", "generation", next)
	r.answer(first, Result{Outcome: Created, Name: rr.Name, OccurrenceCount: 1}, nil)
	if rest := batch[1:]; len(rest) > 0 {
		r.putBack(g, rest)
		// The creator was answered; the others are counted by an update,
		// now if nothing interferes.
		return r.update(ctx, g, rr)
	}
	return resultWritten, nil
}

// update adds every pending incident to cur's occurrence count with one
// status update carrying cur's resourceVersion: if the request changed
// since it was read (another count, a phase change), nothing is written.
func (r *Recorder) update(ctx context.Context, g *group, cur *v1alpha1.RemediationRequest) (string, error) {
	batch := r.take(g)
	if len(batch) == 0 {
		return resultIdle, nil
	}
	rr := cur.DeepCopy()
	d := rr.EffectiveDeduplication()
	for _, w := range batch {
		d.OccurrenceCount++
		if at := metav1.NewMicroTime(w.in.ReceivedAt); d.LastSeenAt.Before(&at) {
			d.LastSeenAt = at
		}
		if !slices.Contains(d.SignalNames, w.in.Signal.Name) && len(d.SignalNames) < v1alpha1.MaxSignalNames {
			d.SignalNames = append(d.SignalNames, w.in.Signal.Name)
		}
	}
	id := r.writeID()
	d.RecentWrites = appendWrite(d.RecentWrites, id)
	rr.Status.Deduplication = &d
	sent := r.opts.Clock.Now()
	if err := r.bounded(ctx, writeTimeout, func(ctx context.Context) error { return r.c.Status().Update(ctx, rr) }); err != nil {
		switch {
		case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
			r.putBack(g, batch)
			return resultConflict, errConflict
		case !ambiguous(err):
			r.putBack(g, batch)
			return resultError, backoff.Permanent(fmt.Errorf("%w: update %s: %w", ErrUnavailable, rr.Name, err))
		}
		got, rerr := r.readBack(ctx, rr.Name, sent.Add(MaxOutcomeWait))
		if rerr != nil {
			return r.unknown(batch, "update "+rr.Name, err, fmt.Errorf("reading it back failed: %w", rerr))
		}
		v, why := updateVerdict(cur, got, d.OccurrenceCount, id)
		switch v {
		case undecided:
			return r.unknown(batch, "update "+rr.Name, err, why)
		case notApplied:
			logr.FromContextOrDiscard(ctx).V(1).Info("Update failed and was not applied", "remediationRequest", rr.Name, "error", err.Error())
			r.putBack(g, batch)
			return resultNotApplied, errNotApplied
		}
		logr.FromContextOrDiscard(ctx).V(1).Info("Update failed but was applied", "remediationRequest", rr.Name, "error", err.Error())
	}
	r.m.batch.Observe(float64(len(batch)))
	logr.FromContextOrDiscard(ctx).V(1).Info("Counted duplicate signals", "remediationRequest", rr.Name, "added", len(batch), "occurrenceCount", d.OccurrenceCount)
	r.mu.Lock()
	for _, w := range batch {
		r.answer(w, Result{Outcome: Duplicate, Name: rr.Name, OccurrenceCount: d.OccurrenceCount}, nil)
	}
	r.mu.Unlock()
	return resultWritten, nil
}

// latest returns the fingerprint's request that still absorbs signals, or
// nil and the generation a new request must take. A cached name costs one
// Get while that request is not terminal; otherwise a List by label finds
// the highest generation. Both read from the API server, so a request
// another replica created is seen.
//
// Generation n+1 is only ever created after generation n was seen
// terminal, and terminal phases are final, so at most one request per
// fingerprint is non-terminal, and creating "max generation + 1" collides
// on the name with any other writer that read the same state.
func (r *Recorder) latest(ctx context.Context, fp string) (*v1alpha1.RemediationRequest, int64, error) {
	r.mu.Lock()
	name := r.names[fp]
	r.mu.Unlock()
	if name != "" {
		var rr v1alpha1.RemediationRequest
		err := r.bounded(ctx, readTimeout, func(ctx context.Context) error {
			return r.c.Get(ctx, client.ObjectKey{Namespace: r.opts.Namespace, Name: name}, &rr)
		})
		switch {
		case err == nil && rr.Spec.Fingerprint == fp && !rr.IsTerminal():
			return &rr, 0, nil
		case err != nil && !apierrors.IsNotFound(err):
			return nil, 0, err
		}
	}

	var list v1alpha1.RemediationRequestList
	if err := r.bounded(ctx, readTimeout, func(ctx context.Context) error {
		return r.c.List(ctx, &list, client.InNamespace(r.opts.Namespace),
			client.MatchingLabels{v1alpha1.LabelFingerprint: v1alpha1.FingerprintLabelValue(fp)})
	}); err != nil {
		return nil, 0, err
	}
	var (
		open *v1alpha1.RemediationRequest
		top  int64
	)
	for i := range list.Items {
		rr := &list.Items[i]
		if rr.Spec.Fingerprint != fp {
			continue // a label prefix collision: 160 bits make it theoretical
		}
		gen := generation(rr)
		top = max(top, gen)
		if !rr.IsTerminal() && (open == nil || gen > generation(open)) {
			open = rr
		}
	}
	if open != nil {
		r.remember(fp, open.Name)
		return open, 0, nil
	}
	return nil, top + 1, nil
}

// generation reads the generation label; requests without one (made by
// hand) count as generation 0, so they never block a new generation.
func generation(rr *v1alpha1.RemediationRequest) int64 {
	n, err := strconv.ParseInt(rr.Labels[v1alpha1.LabelGeneration], 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// remember caches the latest request name of fp. The cache is a hint: a
// wrong or missing entry costs a List, never correctness.
func (r *Recorder) remember(fp, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.names[fp]; !ok && len(r.names) >= r.opts.MaxCachedNames {
		for k := range r.names { // evict an arbitrary entry
			delete(r.names, k)
			break
		}
	}
	r.names[fp] = name
}

// Name returns the name of generation gen of the fingerprint's requests.
// It carries the whole fingerprint: the name is the fence of the creates,
// so two fingerprints whose names agreed would share one sequence of
// requests, and the second would never get one of its own. With the
// longest prefix and generation it stays far below the 253 characters an
// object name may have.
func Name(prefix, fp string, gen int64) string {
	return fmt.Sprintf("%s-%s-%d", prefix, fp, gen)
}

func (r *Recorder) newRequest(in Incident, gen int64, token, writeID string) *v1alpha1.RemediationRequest {
	rr := &v1alpha1.RemediationRequest{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: r.opts.Namespace,
			Name:      Name(r.opts.NamePrefix, in.Fingerprint, gen),
			Labels: map[string]string{
				v1alpha1.LabelFingerprint: v1alpha1.FingerprintLabelValue(in.Fingerprint),
				v1alpha1.LabelTarget:      v1alpha1.TargetLabelValue(in.Target),
				v1alpha1.LabelGeneration:  strconv.FormatInt(gen, 10),
			},
			Annotations: map[string]string{v1alpha1.AnnotationWriteID: writeID},
		},
		Spec: RequestSpec(in),
	}
	if token != "" {
		rr.Annotations[v1alpha1.AnnotationFencingToken] = token
	}
	return rr
}

// RequestSpec is the spec of a RemediationRequest for in, as every
// strategy that records incidents writes it.
func RequestSpec(in Incident) v1alpha1.RemediationRequestSpec {
	spec := v1alpha1.RemediationRequestSpec{
		Fingerprint:       in.Fingerprint,
		SignalName:        truncate(in.Signal.Name, 253),
		Severity:          truncate(in.Signal.Severity, 63),
		Source:            in.Signal.Source,
		Target:            in.Target,
		SignalTarget:      in.SignalTarget,
		ReceivedAt:        metav1.NewMicroTime(in.ReceivedAt),
		SignalLabels:      in.Signal.Labels,
		SignalAnnotations: in.Signal.Annotations,
	}
	if !in.Signal.FiringTime.IsZero() {
		t := metav1.NewTime(in.Signal.FiringTime)
		spec.FiringTime = &t
	}
	return spec
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
