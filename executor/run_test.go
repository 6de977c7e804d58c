package executor_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/executor"
)

// waitFor polls cond until it holds or a generous deadline passes. Run is
// asynchronous; the fake clock, not this deadline, decides every timing.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 10*time.Second, what, cond)
}

func waitWithin(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func (f *fixture) phase(name string) v1alpha1.WorkflowPhase {
	var wfe v1alpha1.WorkflowExecution
	if err := f.cli.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &wfe); err != nil {
		return ""
	}
	return wfe.Status.Phase
}

// TestRun drives one execution that existed before Run started (found by
// the list) and one created while it runs (found by the watch), and ends
// both when the fake clock reaches their completion time, not before.
func TestRun(t *testing.T) {
	const d = 2 * time.Second
	f := newFixture(t, fixtureOptions{
		opts: executor.Options{Duration: d},
		objs: []client.Object{newWFE("before", "")},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.sim.Run(ctx) }()

	waitFor(t, "the existing execution to run", func() bool { return f.phase("before") == v1alpha1.WorkflowRunning })
	if err := f.cli.Create(ctx, newWFE("after", v1alpha1.WorkflowPending)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new execution to run", func() bool { return f.phase("after") == v1alpha1.WorkflowRunning })
	waitFor(t, "Run to wait for the completion time", f.clock.HasWaiters)

	f.clock.Step(d - time.Millisecond)
	// Run wakes only at the completion time, so there is no event to wait
	// for here; the fake client is read directly after the timer is back.
	waitFor(t, "Run to wait again", f.clock.HasWaiters)
	for _, name := range []string{"before", "after"} {
		if p := f.phase(name); p != v1alpha1.WorkflowRunning {
			t.Fatalf("%s: phase %q 1ms before its completion time, want Running", name, p)
		}
	}

	f.clock.Step(time.Millisecond)
	for _, name := range []string{"before", "after"} {
		waitFor(t, name+" to complete", func() bool { return f.phase(name) == v1alpha1.WorkflowCompleted })
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after cancellation, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancellation")
	}
}

func TestRunNeedsAWatch(t *testing.T) {
	cli := fake.NewClientBuilder().WithScheme(scheme).Build()
	// Hide the Watch method.
	sim, err := executor.New(struct{ client.Client }{cli}, executor.Options{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Run(context.Background()); !errors.Is(err, executor.ErrNoWatch) {
		t.Fatalf("Run = %v, want ErrNoWatch", err)
	}
}

// watchControl wraps a client so that a test can end the watches it
// opened, as an API server does, or make opening one fail.
type watchControl struct {
	client.WithWatch

	mu      sync.Mutex
	fail    error
	opened  int
	watches []watch.Interface
}

func (c *watchControl) Watch(ctx context.Context, list client.ObjectList, opts ...client.ListOption) (watch.Interface, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return nil, c.fail
	}
	w, err := c.WithWatch.Watch(ctx, list, opts...)
	if err == nil {
		c.opened++
		c.watches = append(c.watches, w)
	}
	return w, err
}

func (c *watchControl) endAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.watches {
		w.Stop()
	}
	c.watches = nil
}

func (c *watchControl) openedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opened
}

// TestRunReopensAnEndedWatch: the server ends the watch; Run opens another
// after rewatchDelay (1s on the fake clock) and an execution created in
// between is found by the new watch's list.
func TestRunReopensAnEndedWatch(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	wc := &watchControl{WithWatch: f.cli}
	sim, err := executor.New(wc, executor.Options{Namespace: ns, Clock: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- sim.Run(ctx) }()

	waitFor(t, "the first watch", func() bool { return wc.openedCount() == 1 })
	wc.endAll()
	waitFor(t, "Run to wait before watching again", f.clock.HasWaiters)
	if err := f.cli.Create(ctx, newWFE("between", "")); err != nil {
		t.Fatal(err)
	}
	if n := wc.openedCount(); n != 1 {
		t.Fatalf("%d watches opened before the delay passed, want 1", n)
	}
	f.clock.Step(time.Second)
	waitFor(t, "the second watch", func() bool { return wc.openedCount() == 2 })
	waitFor(t, "the execution created between watches to run", func() bool { return f.phase("between") == v1alpha1.WorkflowRunning })

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v after cancellation, want nil", err)
	}
}

// TestRunGivesUpWhenWatchesKeepFailing: Run retries opening a watch once a
// second and returns the error after 30 failures in a row.
func TestRunGivesUpWhenWatchesKeepFailing(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	boom := apierrors.NewServiceUnavailable("apiserver restarting")
	wc := &watchControl{WithWatch: f.cli, fail: boom}
	sim, err := executor.New(wc, executor.Options{Namespace: ns, Clock: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sim.Run(context.Background()) }()

	for i := 1; i < 30; i++ {
		waitFor(t, fmt.Sprintf("Run to wait after failure %d", i), f.clock.HasWaiters)
		select {
		case err := <-done:
			t.Fatalf("Run returned %v after %d failures, want it to keep trying until 30", err, i)
		default:
		}
		f.clock.Step(time.Second)
	}
	select {
	case err := <-done:
		if !apierrors.IsServiceUnavailable(err) {
			t.Fatalf("Run = %v, want the last watch error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run still running after 30 failed watches")
	}
}
