package dedup

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/backoff"
)

// Reading a request back after an ambiguous write: at most resolveReads
// reads, spaced 100ms doubling to 1s (6.5s of waits in all), each bounded
// by resolveReadTimeout so that the worker, and the callers waiting for
// the write, cannot hang on a client without deadlines.
const (
	resolveReads       = 10
	resolveReadTimeout = 5 * time.Second
)

// MaxOutcomeWait bounds how long a write in flight when its callers'
// deadline passed keeps them waiting for its outcome: the write's own
// request deadline (the client's, at most resolveReadTimeout by
// kubeclient's default), then reading it back. A server answering such
// callers must allow this much past its request deadline.
const MaxOutcomeWait = resolveReadTimeout + resolveReads*resolveReadTimeout + 7*time.Second

// resolvePolicy spaces the reads. No jitter: one replica's reads of one
// request do not collide with anyone.
var resolvePolicy = func() backoff.Policy {
	p, err := backoff.NewExponential(backoff.Config{
		BasePeriod: 100 * time.Millisecond, MaxPeriod: time.Second, Multiplier: 2, NoJitter: true,
	})
	if err != nil {
		panic(err) // a constant configuration
	}
	return p
}()

// errNotApplied: an ambiguous write was read back and had not been
// applied; the batch is retried like after a conflict.
var errNotApplied = errors.New("write not applied")

// ambiguous reports whether a failed write may still have been applied by
// the API server. An answer with an API status is definite (the server
// refused it), except a timeout or an internal error, after which the
// write may have reached storage. A transport error after the request may
// have been sent (reset, EOF, a lost HTTP/2 connection, the per-request
// deadline) is ambiguous; a failure to connect is definite, since nothing
// was sent. Any other error (one the client made before sending, such as
// an encoding error) is definite.
func ambiguous(err error) bool {
	if err == nil {
		return false
	}
	var s apierrors.APIStatus
	if errors.As(err, &s) {
		st := s.Status()
		switch {
		case st.Code == http.StatusGatewayTimeout, st.Code == http.StatusInternalServerError:
			return true
		case st.Reason == metav1.StatusReasonTimeout, st.Reason == metav1.StatusReasonServerTimeout,
			st.Reason == metav1.StatusReasonInternalError:
			return true
		}
		return false
	}
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "dial" {
		return false
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return false // only a dial is refused
	}
	if _, ok := errors.AsType[*url.Error](err); ok {
		return true // the HTTP client failed the request: lost connections of every kind
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	for _, target := range []error{io.EOF, io.ErrUnexpectedEOF, syscall.ECONNRESET, syscall.EPIPE,
		context.DeadlineExceeded, context.Canceled} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
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

// readBack reads the request name after an ambiguous write. It returns the
// request from the first read that succeeds (nil if it does not exist), or
// the last read's error if none of resolveReads reads succeeded.
//
// The answer is final for writes the API server has finished with when the
// read is served. A write it is still processing then (the client gave up
// first) could land after the read; see the package documentation.
func (r *Recorder) readBack(ctx context.Context, name string) (*v1alpha1.RemediationRequest, error) {
	return backoff.Retry(ctx, func(ctx context.Context) (*v1alpha1.RemediationRequest, error) {
		ctx, cancel := context.WithTimeout(ctx, resolveReadTimeout)
		defer cancel()
		var rr v1alpha1.RemediationRequest
		err := r.c.Get(ctx, client.ObjectKey{Namespace: r.opts.Namespace, Name: name}, &rr)
		switch {
		case err == nil:
			return &rr, nil
		case apierrors.IsNotFound(err):
			return nil, nil
		}
		return nil, err
	}, backoff.WithPolicy(resolvePolicy), backoff.WithMaxAttempts(resolveReads), backoff.WithClock(r.opts.Clock))
}
