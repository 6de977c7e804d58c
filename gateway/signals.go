package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/dedup"
	"github.com/leasehold/leasehold/gateway/owner"
	"github.com/leasehold/leasehold/gateway/signal"
)

// Result is the answer about one entry of a payload (one alert of a
// webhook, or the one event). It is the body of a 201, 202 or 200 answer to
// a single-entry payload, and an element of BatchResult.
type Result struct {
	// Index of the entry in the payload (alerts[Index]).
	Index int `json:"index"`
	// Outcome is "created", "duplicate", "ignored" or "rejected". A failed
	// entry has no Result: it fails the whole answer.
	Outcome string `json:"outcome"`
	// RemediationRequest names the request created or joined.
	RemediationRequest string `json:"remediationRequest,omitempty"`
	// OccurrenceCount of that request right after this entry was counted.
	OccurrenceCount int64 `json:"occurrenceCount,omitempty"`
	// Fingerprint of the entry's workload (created and duplicate).
	Fingerprint string `json:"fingerprint,omitempty"`
	// Reason an entry was ignored.
	Reason string `json:"reason,omitempty"`
	// Error and Field say why an entry was rejected.
	Error string `json:"error,omitempty"`
	Field string `json:"field,omitempty"`
}

// BatchResult is the body of a 207 answer: one Result per entry, in payload
// order.
type BatchResult struct {
	Results []Result `json:"results"`
}

// entry is a Result in the making; err is set when the entry failed.
type entry struct {
	Result
	err error
}

// Reasons an entry fails without having been tried.
var (
	errNotTried   = errors.New("not tried: another entry of the payload failed first")
	errOverloaded = errors.New("too many signals in flight")
)

func (s *Server) handleAlertmanager(w http.ResponseWriter, r *http.Request) {
	r, body, ok := s.admit(w, r)
	if !ok {
		return
	}
	items, err := s.decodeAlerts(body, s.signalOpts)
	if err != nil {
		s.invalidPayload(w, r, err)
		return
	}
	s.answer(w, r, items)
}

func (s *Server) handleKubernetesEvent(w http.ResponseWriter, r *http.Request) {
	r, body, ok := s.admit(w, r)
	if !ok {
		return
	}
	item, err := s.decodeEvent(body, s.signalOpts)
	if err != nil {
		s.invalidPayload(w, r, err)
		return
	}
	s.answer(w, r, []signal.Item{item})
}

// admit runs the checks every signal request passes before decoding, in
// this order: method, authentication, content type, body size. It answers
// and returns false when one fails; otherwise it returns the request (its
// context's logger now names the user) and the body.
func (s *Server) admit(w http.ResponseWriter, r *http.Request) (*http.Request, []byte, bool) {
	if !allowMethods(w, r, http.MethodPost) {
		return r, nil, false
	}
	r, ok := s.authorize(w, r)
	if !ok {
		return r, nil, false
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != ContentTypeJSON {
		w.Header().Set("Accept-Post", ContentTypeJSON)
		writeProblem(w, newProblem(r, http.StatusUnsupportedMediaType, ProblemMediaType,
			fmt.Sprintf("Content-Type %q is not %s", r.Header.Get("Content-Type"), ContentTypeJSON)))
		return r, nil, false
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		writeProblem(w, newProblem(r, http.StatusUnsupportedMediaType, ProblemMediaType,
			fmt.Sprintf("Content-Encoding %q is not supported", ce)))
		return r, nil, false
	}
	tooLarge := func() {
		writeProblem(w, newProblem(r, http.StatusRequestEntityTooLarge, ProblemTooLarge,
			fmt.Sprintf("the body exceeds %d bytes", s.cfg.MaxBodyBytes)))
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		tooLarge()
		return r, nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			tooLarge()
			return r, nil, false
		}
		writeProblem(w, newProblem(r, http.StatusBadRequest, ProblemInvalid, "read body: "+err.Error()))
		return r, nil, false
	}
	return r, body, true
}

// authorize checks the bearer token (and the access review) unless
// authentication is off.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	if s.auth == nil {
		return r, true
	}
	ctx := r.Context()
	log := logr.FromContextOrDiscard(ctx)
	token, ok := bearerToken(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="leasehold-gateway"`)
		writeProblem(w, newProblem(r, http.StatusUnauthorized, ProblemUnauthenticated, "missing bearer token in the Authorization header"))
		return r, false
	}
	d, err := s.auth.authenticate(ctx, token)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// Nothing was recorded yet: a 503 the sender may retry, like any
			// signal whose deadline passed before it was taken into a write.
			w.Header().Set("Retry-After", retryAfterSeconds(s.cfg.RetryAfter))
			writeProblem(w, newProblem(r, http.StatusServiceUnavailable, ProblemDeadline,
				"the request deadline passed while validating the token; the signal was not counted and may be sent again"))
			return r, false
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			// The client went away (or the server is stopping); nobody
			// reads the answer. Not an error of ours: a flood of clients
			// that give up while joining one review must not cost a
			// line each.
			log.V(1).Info("token not validated: request cancelled", "error", err.Error())
			w.Header().Set("Retry-After", retryAfterSeconds(s.cfg.RetryAfter))
			writeProblem(w, newProblem(r, http.StatusServiceUnavailable, ProblemAuthUnavailable,
				"the request was cancelled while validating the token; the signal was not counted and may be sent again"))
			return r, false
		}
		log.Error(err, "authenticate")
		w.Header().Set("Retry-After", retryAfterSeconds(s.cfg.RetryAfter))
		writeProblem(w, newProblem(r, http.StatusServiceUnavailable, ProblemAuthUnavailable, "cannot validate the token now: "+err.Error()))
		return r, false
	}
	switch d.verdict {
	case unauthenticated:
		log.V(1).Info("token rejected", "reason", d.reason)
		w.Header().Set("WWW-Authenticate", `Bearer realm="leasehold-gateway", error="invalid_token"`)
		writeProblem(w, newProblem(r, http.StatusUnauthorized, ProblemUnauthenticated, "the bearer token is not valid"))
		return r, false
	case forbidden:
		log.V(1).Info("access denied", "user", d.user, "reason", d.reason)
		writeProblem(w, newProblem(r, http.StatusForbidden, ProblemForbidden,
			fmt.Sprintf("user %q may not %s %s.%s in namespace %q", d.user, AccessVerb, AccessResource, v1alpha1.GroupVersion.Group, s.cfg.Namespace)))
		return r, false
	}
	return r.WithContext(logr.NewContext(ctx, log.WithValues("user", d.user))), true
}

// invalidPayload answers 400 for a payload the decoder refused as a whole.
func (s *Server) invalidPayload(w http.ResponseWriter, r *http.Request, err error) {
	logr.FromContextOrDiscard(r.Context()).V(1).Info("invalid payload", "error", err.Error())
	p := newProblem(r, http.StatusBadRequest, ProblemInvalid, err.Error())
	var fe *signal.FieldError
	if errors.As(err, &fe) {
		p.Field = fe.Field
	}
	writeProblem(w, p)
}

// answer records the entries of a decoded payload and answers.
//
// A payload is acknowledged (2xx) only if every entry was handled; a single
// failed entry fails the whole answer, because the senders retry whole
// payloads: Alertmanager resends the whole webhook after a 5xx, whatever
// the body says. Entries recorded before the failure are then
// counted again on the retry. That over-counts, which is acceptable; never
// losing an acknowledged signal is the invariant.
//
// The answer is about the first failed entry, unless another entry's
// outcome is unknown: then it is that one's 504, so that an answer never
// says "not counted" about an entry that may have been. A 503 speaks for
// its failed entry only: entries of the payload that succeeded were
// counted, and are counted again when the sender retries the whole
// payload (the over-count above).
func (s *Server) answer(w http.ResponseWriter, r *http.Request, items []signal.Item) {
	ctx := r.Context()
	entries := s.process(ctx, items)
	var failed *entry
	for i := range entries {
		e := &entries[i]
		outcome := e.Outcome
		if e.err != nil {
			outcome = OutcomeError
			// The first failure that is not a consequence of another, or
			// the first of unknown outcome.
			switch {
			case errors.Is(e.err, errNotTried):
			case failed == nil,
				errors.Is(e.err, dedup.ErrUnknownOutcome) && !errors.Is(failed.err, dedup.ErrUnknownOutcome):
				failed = e
			}
		}
		s.metrics.signals.WithLabelValues(outcome).Inc()
	}
	if failed != nil {
		s.fail(w, r, *failed, len(entries))
		return
	}
	if len(entries) != 1 {
		results := make([]Result, len(entries))
		for i, e := range entries {
			results[i] = e.Result
		}
		writeJSON(w, http.StatusMultiStatus, ContentTypeJSON, BatchResult{Results: results})
		return
	}
	e := entries[0]
	switch e.Outcome {
	case OutcomeCreated:
		writeJSON(w, http.StatusCreated, ContentTypeJSON, e.Result)
	case OutcomeDuplicate:
		writeJSON(w, http.StatusAccepted, ContentTypeJSON, e.Result)
	case OutcomeIgnored:
		writeJSON(w, http.StatusOK, ContentTypeJSON, e.Result)
	default: // rejected
		p := newProblem(r, http.StatusBadRequest, ProblemInvalid, e.Error)
		p.Field = e.Field
		p.Index = &e.Index
		writeProblem(w, p)
	}
}

// fail answers for a payload one of whose entries, e, failed.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, e entry, n int) {
	detail := fmt.Sprintf("entry %d", e.Index)
	if e.Fingerprint != "" {
		detail += " (fingerprint " + e.Fingerprint + ")"
	}
	detail += ": " + e.err.Error()
	if n > 1 {
		detail += "; no entry of this payload is acknowledged, send it again whole"
	}
	problem := func(status int, typ, detail string) {
		p := newProblem(r, status, typ, detail)
		p.Index = &e.Index
		writeProblem(w, p)
	}
	retryable := func(status int, typ, detail string) {
		w.Header().Set("Retry-After", retryAfterSeconds(s.cfg.RetryAfter))
		problem(status, typ, detail)
	}
	// The dedup errors say whether the signal was counted, so they come
	// before the request's own deadline: ErrUnavailable, ErrBusy and
	// ErrNotRecorded mean it was not (a 503 the sender may retry safely),
	// ErrUnknownOutcome that it may have been (a 504, without Retry-After).
	// An owner the resolver could not determine stops the signal before
	// any write: a 503 too.
	switch {
	case errors.Is(e.err, errOverloaded):
		retryable(http.StatusServiceUnavailable, ProblemOverloaded, detail)
	case errors.Is(e.err, dedup.ErrUnknownOutcome):
		problem(http.StatusGatewayTimeout, ProblemUnavailable,
			detail+"; the signal may have been counted: the API server did not confirm the write either way, and sending it again may count it twice")
	case errors.Is(e.err, dedup.ErrNotRecorded):
		retryable(http.StatusServiceUnavailable, ProblemDeadline,
			detail+"; the signal was not counted and may be sent again")
	case errors.Is(e.err, owner.ErrUnresolved):
		retryable(http.StatusServiceUnavailable, ProblemOwnerUnresolved,
			detail+"; the signal was not counted and may be sent again")
	case errors.Is(e.err, dedup.ErrBusy):
		retryable(http.StatusServiceUnavailable, ProblemBusy, detail)
	case errors.Is(e.err, dedup.ErrUnavailable):
		// A deadline of one API call inside dedup comes wrapped in
		// ErrUnavailable: the write was not made.
		retryable(http.StatusServiceUnavailable, ProblemUnavailable, detail)
	case errors.Is(e.err, context.DeadlineExceeded), errors.Is(r.Context().Err(), context.DeadlineExceeded):
		// Our own deadline, from a Deduplicator that does not say whether
		// the signal was counted.
		problem(http.StatusGatewayTimeout, ProblemDeadline, detail+"; the signal may have been counted")
	case errors.Is(e.err, context.Canceled):
		// The client went away; nobody reads this answer.
		retryable(http.StatusServiceUnavailable, ProblemUnavailable, detail)
	default:
		problem(http.StatusInternalServerError, ProblemInternal, detail)
	}
}

// process turns items into entries, recording the firing ones: at most
// BatchConcurrency at a time, on slots of the in-flight cap reserved all at
// once, without waiting. After the first failure no further entry is
// started (each one started would be counted again on the retry); entries
// already being recorded finish.
func (s *Server) process(ctx context.Context, items []signal.Item) []entry {
	at, ok := receivedAt(ctx)
	if !ok {
		at = s.cfg.Clock.Now()
	}
	entries := make([]entry, len(items))
	var fires []int
	broken := false
	for i, it := range items {
		e := &entries[i]
		e.Index = i
		switch it.Disposition {
		case signal.Fire:
			if it.Signal == nil {
				e.err, broken = errors.New("decoder returned a firing entry without a signal"), true
				continue
			}
			fires = append(fires, i)
		case signal.Ignore:
			e.Outcome, e.Reason = OutcomeIgnored, it.Reason
			s.logEntry(ctx, i, it).V(1).Info("signal ignored", "reason", it.Reason)
		case signal.Reject:
			e.Outcome = OutcomeRejected
			if it.Err != nil {
				e.Error = it.Err.Error()
				var fe *signal.FieldError
				if errors.As(it.Err, &fe) {
					e.Field = fe.Field
				}
			}
			s.logEntry(ctx, i, it).V(1).Info("signal rejected", "error", e.Error)
		default:
			e.err, broken = fmt.Errorf("decoder returned unknown disposition %d", it.Disposition), true
		}
	}
	if len(fires) == 0 || broken {
		for _, i := range fires {
			entries[i].err = errNotTried
		}
		return entries
	}
	k := min(len(fires), s.cfg.BatchConcurrency)
	if !s.slots.tryAcquire(k) {
		for _, i := range fires {
			entries[i].err = errOverloaded
		}
		return entries
	}
	defer s.slots.release(k)

	var next atomic.Int64
	var stop atomic.Bool
	work := func() {
		for {
			j := int(next.Add(1) - 1)
			if j >= len(fires) {
				return
			}
			i := fires[j]
			switch {
			case ctx.Err() != nil:
				// Never handed to the deduplicator: certainly not counted.
				entries[i].err = fmt.Errorf("%w: %w", dedup.ErrNotRecorded, context.Cause(ctx))
			case stop.Load():
				entries[i].err = errNotTried
			default:
				entries[i] = s.record(ctx, i, items[i].Signal, at)
				if entries[i].err != nil {
					stop.Store(true)
				}
			}
		}
	}
	if k == 1 {
		work()
		return entries
	}
	var wg sync.WaitGroup
	for range k {
		wg.Go(work)
	}
	wg.Wait()
	return entries
}

// record resolves the owner of one firing signal and records the incident.
func (s *Server) record(ctx context.Context, i int, sig *signal.Signal, at time.Time) entry {
	target, _, err := s.cfg.Resolver.Resolve(ctx, sig.Target, sig.Labels)
	if err != nil {
		return s.unresolved(ctx, i, sig, err)
	}
	fp := dedup.Fingerprint(target)
	res, err := s.cfg.Dedup.Record(ctx, dedup.Incident{
		Fingerprint:  fp,
		Target:       target,
		SignalTarget: sig.Target,
		Signal:       *sig,
		ReceivedAt:   at,
	})
	e := entry{Result: Result{Index: i, Fingerprint: fp}}
	log := logr.FromContextOrDiscard(ctx).WithValues(
		"index", i, "fingerprint", fp, "remediationRequest", res.Name,
		"signal", sig.Name, "target", target.String())
	if err != nil {
		e.err = err
		switch {
		case errors.Is(err, dedup.ErrUnknownOutcome):
			log.Error(err, "signal may have been recorded: the outcome of its write is unknown")
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
			log.Info("signal not recorded: request ended", "error", err.Error())
		default:
			log.Error(err, "signal not recorded")
		}
		return e
	}
	e.RemediationRequest, e.OccurrenceCount = res.Name, res.OccurrenceCount
	switch res.Outcome {
	case dedup.Created:
		e.Outcome = OutcomeCreated
		log.Info("remediation request created", "occurrenceCount", res.OccurrenceCount)
	case dedup.Duplicate:
		e.Outcome = OutcomeDuplicate
		log.V(1).Info("signal joined remediation request", "occurrenceCount", res.OccurrenceCount)
	default:
		e.err = fmt.Errorf("dedup returned unknown outcome %q", res.Outcome)
		log.Error(e.err, "signal recorded with an unknown outcome")
	}
	return e
}

// unresolved is the entry of a signal whose owner the resolver could not
// determine. It has no fingerprint: recording the signal under its own
// object instead would split its incident in two.
func (s *Server) unresolved(ctx context.Context, i int, sig *signal.Signal, err error) entry {
	log := logr.FromContextOrDiscard(ctx).WithValues("index", i, "signal", sig.Name, "signalTarget", sig.Target.String())
	e := entry{Result: Result{Index: i}}
	if ctx.Err() != nil {
		// The request ended while the owner was being looked up: like
		// an entry never handed to the deduplicator, certainly not
		// counted.
		e.err = fmt.Errorf("%w: resolve the owner of %s: %w", dedup.ErrNotRecorded, sig.Target, err)
		log.Info("signal not recorded: request ended", "error", e.err.Error())
		return e
	}
	e.err = fmt.Errorf("resolve the owner of %s: %w", sig.Target, err)
	log.Info("signal not recorded: owner unresolved", "error", e.err.Error())
	return e
}

// logEntry is the logger for an entry that is not recorded. It has no
// fingerprint (no owner was resolved); it names the object instead.
func (s *Server) logEntry(ctx context.Context, i int, it signal.Item) logr.Logger {
	log := logr.FromContextOrDiscard(ctx).WithValues("index", i)
	if it.Signal != nil {
		log = log.WithValues("signal", it.Signal.Name, "signalTarget", it.Signal.Target.String())
	}
	return log
}
