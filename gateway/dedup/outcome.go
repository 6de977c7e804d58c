package dedup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/backoff"
)

// Deadlines of the Recorder's own API calls, measured on Options.Clock.
// The client's per-request deadline (kubeclient's 5s) bounds one round
// trip only: client-go retries a request inside one call after a 429 or
// 5xx that carries Retry-After, up to 10 times (through internal/kubeclient
// only a read, waiting at most 1s each time), so a call without a deadline
// of its own can last minutes.
//
// A write is given writeTimeout; when it passes, the write's outcome is
// unknown and it is read back. Every read, a read back included, is
// bounded by readTimeout.
const (
	writeTimeout = 10 * time.Second
	readTimeout  = 5 * time.Second

	// readBackBudget is what is left for reading back a write that used
	// its whole deadline. It is a budget of time, not of reads: an API
	// server that restarts refuses connections for seconds and then
	// answers 503 while it installs its handlers, and a write in flight
	// when it went down becomes learnable once it is back. A fixed number
	// of reads would be spent in the first seconds of such an outage.
	readBackBudget = 32500 * time.Millisecond

	// maxReadsBack bounds the reads of one read back as a backstop: the
	// budget ends the loop first, since reads are readBackMinWait or more
	// apart.
	maxReadsBack = int(MaxOutcomeWait / readBackMinWait)
)

// MaxOutcomeWait bounds how long Record keeps a caller waiting after the
// caller's context ended, when its incident was already taken into a
// write: the write (at most 10s) and reading it back end at most
// MaxOutcomeWait after the write was sent. Past it, the caller has its
// answer: counted, not counted (ErrNotRecorded) or ErrUnknownOutcome. A
// server that passes its request context to Record must allow this much
// past its own deadline before giving up on the answer, and a process
// shutting down must allow it before abandoning the handlers still
// waiting.
const MaxOutcomeWait = writeTimeout + readBackBudget

// newReadBackPolicy returns the policy that spaces the reads back of one
// write, drawing its jitter from rnd: decorrelated jitter between 100ms and
// 1s. The writes in flight when an API server dies are all reset at once,
// by every replica, and without jitter they would all read back at the
// same instants, a burst each time, into a server that is coming back.
// Decorrelated jitter never waits less than 100ms, which keeps
// maxReadsBack a backstop that the budget reaches first. The cap is also
// the longest a server's Retry-After delays a read made through
// internal/kubeclient, so a server that asks for more does not stall the
// read back either.
func newReadBackPolicy(rnd func() float64) (backoff.Policy, error) {
	return backoff.NewDecorrelated(backoff.Config{
		BasePeriod: readBackMinWait, MaxPeriod: readBackMaxWait, Rand: rnd,
	})
}

// The bounds of the wait between two reads back.
const (
	readBackMinWait = 100 * time.Millisecond
	readBackMaxWait = time.Second
)

// errNotApplied: an ambiguous write was read back and had not been
// applied; the batch is retried like after a conflict.
var errNotApplied = errors.New("write not applied")

// bounded runs call with a context that also ends d after now on the
// Recorder's clock (so that tests drive it with a fake clock), and returns
// call's error, marked as a deadline (context.DeadlineExceeded) if that
// deadline ended it.
func (r *Recorder) bounded(ctx context.Context, d time.Duration, call func(context.Context) error) error {
	expired := fmt.Errorf("no answer within %s: %w", d, context.DeadlineExceeded)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	t := r.opts.Clock.NewTimer(d)
	finished := make(chan struct{})
	go func() {
		select {
		case <-t.C():
			cancel(expired)
		case <-finished:
		}
	}()
	err := call(ctx)
	close(finished)
	t.Stop()
	if err != nil && context.Cause(ctx) == expired && !errors.Is(err, expired) {
		err = fmt.Errorf("%w: %w", expired, err)
	}
	return err
}

// ambiguous reports whether a failed write may still have been applied by
// the API server. It is ambiguous unless the error proves otherwise: a
// write answered as applied is counted, one wrongly taken as not applied
// is sent again and counted twice, so an error this function does not
// recognise (client-go reports a lost response body as a plain formatted
// error, a lost HTTP/2 connection as a plain errors.New) must cost a read
// back, never a double count. Definite (not applied) are:
//
//   - an API status the server answers only without applying the write
//     (see refused);
//   - a failure to connect: nothing was sent;
//   - an error the client raised before sending (the object could not be
//     encoded or mapped to a resource).
func ambiguous(err error) bool {
	if err == nil {
		return false
	}
	var s apierrors.APIStatus
	if errors.As(err, &s) {
		return !refused(s.Status())
	}
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "dial" {
		return false
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return false // only connect(2) is refused
	}
	if runtime.IsNotRegisteredError(err) || runtime.IsMissingKind(err) || runtime.IsMissingVersion(err) ||
		meta.IsNoMatchError(err) {
		return false
	}
	return true
}

// refused reports whether an API status says the write was not applied.
// The codes below are answered by the API server before the write reaches
// storage (validation, admission, authorization, preconditions, flow
// control). A 503 is definite only with a Status body, that is from the
// API server itself: a proxy in front of it (the only source of a 503
// without one, which client-go marks CauseTypeUnexpectedServerResponse)
// may have forwarded the write before failing. 408, 500, 502, 504 and the
// Timeout, ServerTimeout and InternalError reasons, and every code not
// listed, are ambiguous: the write may have reached storage.
func refused(st metav1.Status) bool {
	switch st.Reason {
	case metav1.StatusReasonTimeout, metav1.StatusReasonServerTimeout, metav1.StatusReasonInternalError:
		return false
	}
	switch st.Code {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
		http.StatusMethodNotAllowed, http.StatusNotAcceptable, http.StatusConflict, http.StatusGone,
		http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity,
		http.StatusTooManyRequests:
		return true
	case http.StatusServiceUnavailable:
		return !unexpectedResponse(st)
	}
	return false
}

// unexpectedResponse reports whether client-go made st up from an answer
// that carried no API Status.
func unexpectedResponse(st metav1.Status) bool {
	return st.Details != nil && slices.ContainsFunc(st.Details.Causes, func(c metav1.StatusCause) bool {
		return c.Type == metav1.CauseTypeUnexpectedServerResponse
	})
}

// writeID returns a new id for one create or count update, unique across
// the processes that write the requests: the identity, a random part drawn
// when the Recorder was made (a restarted process with the same identity
// draws another one) and a sequence number.
func (r *Recorder) writeID() string {
	id := r.nonce + "-" + strconv.FormatUint(r.seq.Add(1), 10)
	if r.opts.Identity == "" {
		return id
	}
	return r.opts.Identity + "/" + id
}

// appendWrite adds id to the ring of recent writes, newest last, dropping
// the oldest beyond v1alpha1.MaxRecentWrites.
func appendWrite(ring []string, id string) []string {
	ring = append(slices.Clone(ring), id)
	if n := len(ring) - v1alpha1.MaxRecentWrites; n > 0 {
		ring = ring[n:]
	}
	return ring
}

// verdict is what a read back shows about an ambiguous write.
type verdict int

const (
	// undecided: the request as read cannot tell whether the write was
	// applied.
	undecided verdict = iota
	// applied: the write's id is on the request.
	applied
	// notApplied: the request as read proves that the write was not
	// applied.
	notApplied
)

// createVerdict judges an ambiguous create that carried write id id from
// got, the request of that name as read back (nil: it does not exist). A
// request without our id was created by another writer, so ours was not
// applied: the name admits one create.
func createVerdict(got *v1alpha1.RemediationRequest, id string) verdict {
	if got != nil && got.Annotations[v1alpha1.AnnotationWriteID] == id {
		return applied
	}
	return notApplied
}

// updateVerdict judges an ambiguous count update that was based on cur,
// set the count to count and carried write id id, from got, the request
// as read back (nil: it does not exist). An undecided verdict comes with
// the reason.
func updateVerdict(cur, got *v1alpha1.RemediationRequest, count int64, id string) (verdict, error) {
	if got != nil && slices.Contains(got.EffectiveDeduplication().RecentWrites, id) {
		return applied, nil
	}
	if why := absenceProvesNothing(cur, got, count, id); why != nil {
		return undecided, why
	}
	return notApplied, nil
}

// absenceProvesNothing returns why got, read back after an ambiguous
// count update that was based on cur, set the count to count and carried
// write id id, cannot tell whether that update was applied; nil when it
// can (the id is in the ring, or its absence means not applied).
func absenceProvesNothing(cur, got *v1alpha1.RemediationRequest, count int64, id string) error {
	if got == nil {
		return nil // deleted: an update needs the request, so it was not applied
	}
	d := got.EffectiveDeduplication()
	if slices.Contains(d.RecentWrites, id) {
		return nil
	}
	// Every update appends one id and adds at least one to the count. If
	// ours was applied and then pushed out of the ring, at least
	// MaxRecentWrites updates followed it, so the count reached
	// ours + MaxRecentWrites; below that, an absent id means not applied.
	if d.OccurrenceCount >= count+v1alpha1.MaxRecentWrites {
		return fmt.Errorf("%d later writes may have pushed the write id out of status.deduplication.recentWrites", v1alpha1.MaxRecentWrites)
	}
	// An empty ring on a request that changed since the update's read: the
	// API server drops recentWrites when its CRD predates the field (the
	// gateway was upgraded before the CRD), and so does a writer built
	// before it. Either can hide an applied update, and the count cannot
	// tell: a request counted by such writers only looks exactly like one
	// that our update reached. A request that did not change (same
	// resourceVersion) proves the update was not applied, since it changes
	// the count; so does an id missing from a ring that is not empty, given
	// that every writer keeps the ring (see the package documentation).
	if len(d.RecentWrites) == 0 && got.ResourceVersion != cur.ResourceVersion {
		return errors.New("status.deduplication.recentWrites is empty although the request changed since it was read " +
			"(a CRD without the field, or a writer that drops it): the write id cannot be looked up")
	}
	return nil
}

// readAnswer is what one read back learned about the request.
type readAnswer int

const (
	// readOpen: nothing about the request; read again.
	readOpen readAnswer = iota
	// readFound: the request was read.
	readFound
	// readAbsent: the API server says the request does not exist.
	readAbsent
)

// classifyRead judges the error of one read back of a request. Only the
// API server's own NotFound about the object proves it absent. A 404
// without an API Status body (the server's mux answers so for a resource
// it does not serve yet, as while a restarted server installs its CRD
// handlers) says nothing about the object. Every other error may pass
// while the budget lasts, so it is read again: a refused or reset
// connection, a deadline, 429 and 5xx, and also 401 and 403 (a restarted
// server answers them until its authenticator and authorizer caches are
// filled).
func classifyRead(err error) readAnswer {
	if err == nil {
		return readFound
	}
	var s apierrors.APIStatus
	if errors.As(err, &s) && apierrors.IsNotFound(err) && !unexpectedResponse(s.Status()) {
		return readAbsent
	}
	return readOpen
}

// readBack reads the request name after an ambiguous write until a read
// settles what is there (see classifyRead) or deadline passes on the
// Recorder's clock, and returns the request (nil if it does not exist) or,
// if no read settled it, an error that wraps the last read's. Reads are
// spaced by the Recorder's read-back policy and each has readTimeout; the deadline also
// cuts the read in flight when it passes.
//
// The answer is final for writes the API server has finished with when the
// read is served. A write it is still processing then (the client gave up
// first) could land after the read; see the package documentation.
func (r *Recorder) readBack(ctx context.Context, name string, deadline time.Time) (*v1alpha1.RemediationRequest, error) {
	budget := deadline.Sub(r.opts.Clock.Now())
	if budget <= 0 {
		return nil, fmt.Errorf("no time left to read it back: %w", context.DeadlineExceeded)
	}
	var got *v1alpha1.RemediationRequest
	err := r.bounded(ctx, budget, func(ctx context.Context) error {
		var err error
		got, err = backoff.Retry(ctx, func(ctx context.Context) (*v1alpha1.RemediationRequest, error) {
			var rr v1alpha1.RemediationRequest
			err := r.bounded(ctx, readTimeout, func(ctx context.Context) error {
				return r.c.Get(ctx, client.ObjectKey{Namespace: r.opts.Namespace, Name: name}, &rr)
			})
			switch classifyRead(err) {
			case readFound:
				return &rr, nil
			case readAbsent:
				return nil, nil
			}
			return nil, err
		}, backoff.WithPolicy(r.readBackPolicy), backoff.WithMaxAttempts(maxReadsBack),
			backoff.WithMaxElapsedTime(budget), backoff.WithClock(r.opts.Clock))
		return err
	})
	return got, err
}
