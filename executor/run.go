package executor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
)

// ErrNoWatch is returned by Run when the Simulator's client cannot watch.
var ErrNoWatch = errors.New("executor: Run needs a client that implements client.WithWatch")

const (
	// rewatchDelay spaces the watches Run opens after one ends or fails to
	// open, so that an API server that ends every watch at once, or is
	// restarting, is not hammered.
	rewatchDelay = time.Second
	// maxWatchFailures is how many watches in a row may fail to open
	// (or their list fail) before Run gives up: half a minute of an API
	// server that does not answer.
	maxWatchFailures = 30
	// stepRetry is how soon Run tries a failed step again.
	stepRetry = time.Second
)

// Run drives the Simulator without a controller-runtime manager until ctx
// ends; it then returns nil. It watches the WorkflowExecutions of
// Options.Namespace through the Simulator's client, which must implement
// client.WithWatch (else ErrNoWatch), and steps an execution on every event
// about it and when its completion time comes. A failed step is logged and
// tried again. A watch that ends is opened again; Run returns an error only
// when maxWatchFailures watches in a row could not be opened (or the list
// that follows each failed).
//
// Every watch is opened before the namespace is listed, so no change made
// between the two is missed; a change seen twice is harmless because a step
// only writes the transition that is due.
func (s *Simulator) Run(ctx context.Context) error {
	wc, ok := s.client.(client.WithWatch)
	if !ok {
		return ErrNoWatch
	}
	log := logr.FromContextOrDiscard(ctx).WithValues("namespace", s.opts.Namespace)
	ctx = logr.NewContext(ctx, log)
	due := map[types.NamespacedName]time.Time{}
	for failures := 0; ; {
		err := s.session(ctx, wc, due)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			failures++
			if failures >= maxWatchFailures {
				return fmt.Errorf("executor: %d watches in a row failed, the last: %w", failures, err)
			}
			log.Error(err, "watch failed; trying again", "after", rewatchDelay)
		} else {
			failures = 0
			log.V(1).Info("watch ended; opening another", "after", rewatchDelay)
		}
		t := s.opts.Clock.NewTimer(rewatchDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// session opens one watch and serves it until it ends (nil) or ctx ends;
// the error is from opening the watch or the list that follows.
func (s *Simulator) session(ctx context.Context, wc client.WithWatch, due map[types.NamespacedName]time.Time) error {
	w, err := wc.Watch(ctx, &v1alpha1.WorkflowExecutionList{}, client.InNamespace(s.opts.Namespace))
	if err != nil {
		return fmt.Errorf("watch workflowexecutions: %w", err)
	}
	defer w.Stop()
	return s.serve(ctx, w, due)
}

// serve lists the namespace, then steps executions on w's events and at
// their due times until w ends or ctx ends (nil) or the list fails.
func (s *Simulator) serve(ctx context.Context, w watch.Interface, due map[types.NamespacedName]time.Time) error {
	var list v1alpha1.WorkflowExecutionList
	if err := s.client.List(ctx, &list, client.InNamespace(s.opts.Namespace)); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("list workflowexecutions: %w", err)
	}
	for i := range list.Items {
		s.stepAndSchedule(ctx, client.ObjectKeyFromObject(&list.Items[i]), due)
	}
	for ctx.Err() == nil {
		// Step whatever is due before waiting, so a completion time that
		// passed while stepping others is never waited for.
		now := s.opts.Clock.Now()
		var next time.Time
		for key, at := range due {
			if !at.After(now) {
				s.stepAndSchedule(ctx, key, due)
				at = due[key]
			}
			if _, ok := due[key]; ok && (next.IsZero() || at.Before(next)) {
				next = at
			}
		}
		var (
			timer clock.Timer
			fired <-chan time.Time
		)
		if !next.IsZero() {
			timer = s.opts.Clock.NewTimer(next.Sub(now))
			fired = timer.C()
		}
		ev, stop := s.wait(ctx, w, fired)
		if timer != nil {
			timer.Stop()
		}
		if stop {
			return nil
		}
		if ev == nil { // the timer fired
			continue
		}
		if ev.Type == watch.Error {
			logr.FromContextOrDiscard(ctx).Info("watch error; opening another", "status", fmt.Sprint(ev.Object))
			return nil
		}
		obj, err := meta.Accessor(ev.Object)
		if err != nil {
			continue
		}
		s.stepAndSchedule(ctx, types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()}, due)
	}
	return nil
}

// wait returns the next event of w, or nil when fired fires first; stop
// reports that ctx or w ended.
func (s *Simulator) wait(ctx context.Context, w watch.Interface, fired <-chan time.Time) (ev *watch.Event, stop bool) {
	select {
	case <-ctx.Done():
		return nil, true
	case <-fired:
		return nil, false
	case e, ok := <-w.ResultChan():
		if !ok {
			return nil, true
		}
		return &e, false
	}
}

// stepAndSchedule steps one execution and records when it is due next. A
// failed step is logged and tried again after stepRetry, as a controller
// would requeue it.
func (s *Simulator) stepAndSchedule(ctx context.Context, key types.NamespacedName, due map[types.NamespacedName]time.Time) {
	after, err := s.step(ctx, key)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		logr.FromContextOrDiscard(ctx).Error(err, "step failed; trying again", "workflowExecution", key.Name, "after", stepRetry)
		after = stepRetry
	}
	if after > 0 {
		due[key] = s.opts.Clock.Now().Add(after)
	} else {
		delete(due, key)
	}
}
