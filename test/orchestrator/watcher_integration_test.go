//go:build integration

package orchestrator_test

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/overlap"
)

// change is one phase change of one execution as the watcher saw it.
type change struct {
	at       time.Time // when the watcher received it
	name     string
	target   string // TargetRef.LockKey
	request  string
	sequence int64
	phase    v1alpha1.WorkflowPhase // "" for a deletion
}

// watcher replays the WorkflowExecution events of one namespace in the
// order the API server committed them, and checks after each one that no
// target has more than one non-terminal execution. One watch stream of one
// resource is delivered in resourceVersion order, so the states it rebuilds
// are states the API server actually passed through.
type watcher struct {
	t      *testing.T
	stream *overlap.Stream

	mu         sync.Mutex
	phases     map[string]v1alpha1.WorkflowPhase // execution -> last phase seen
	active     map[string]map[string]bool        // target -> its non-terminal executions
	changes    []change
	violations []string
	maxActive  int
}

// startWatcher lists the namespace's executions and follows their changes
// (overlap.Follow): no change is skipped, and one the watch could not
// resume from is a violation. It stops at the end of the test.
func startWatcher(t *testing.T, namespace string) *watcher {
	t.Helper()
	w := &watcher{
		t:      t,
		phases: map[string]v1alpha1.WorkflowPhase{},
		active: map[string]map[string]bool{},
	}
	apply := func(typ watch.EventType, obj client.Object) {
		if wfe, ok := obj.(*v1alpha1.WorkflowExecution); ok {
			w.apply(typ, wfe)
		}
	}
	stream, err := overlap.Follow(t.Context(), cli, namespace, "executions",
		func() client.ObjectList { return &v1alpha1.WorkflowExecutionList{} },
		overlap.Sink{
			Listed:  func(obj client.Object) { apply(watch.Added, obj) },
			Changed: apply,
			Gap:     w.violation,
		})
	if err != nil {
		t.Fatal(err)
	}
	w.stream = stream
	t.Cleanup(w.close)
	return w
}

func (w *watcher) close() { w.stream.Close() }

func (w *watcher) violation(msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.violations = append(w.violations, msg)
}

func (w *watcher) apply(typ watch.EventType, wfe *v1alpha1.WorkflowExecution) {
	now := time.Now()
	target := wfe.Spec.Target.LockKey()
	phase := wfe.EffectivePhase()
	if typ == watch.Deleted {
		phase = ""
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	prev, seen := w.phases[wfe.Name]
	if seen && prev == phase {
		return
	}
	w.phases[wfe.Name] = phase
	w.changes = append(w.changes, change{
		at: now, name: wfe.Name, target: target, request: wfe.Spec.RemediationRequestRef.Name,
		sequence: wfe.Spec.Sequence, phase: phase,
	})
	if w.active[target] == nil {
		w.active[target] = map[string]bool{}
	}
	if phase != "" && !phase.IsTerminal() {
		w.active[target][wfe.Name] = true
	} else {
		delete(w.active[target], wfe.Name)
	}
	if n := len(w.active[target]); n > w.maxActive {
		w.maxActive = n
	}
	if n := len(w.active[target]); n > 1 {
		names := make([]string, 0, n)
		for name := range w.active[target] {
			names = append(names, name)
		}
		slices.Sort(names)
		w.violations = append(w.violations, fmt.Sprintf("%s: %d non-terminal executions at once after %s became %q: %s",
			target, n, wfe.Name, phase, strings.Join(names, ", ")))
	}
}

// terminal returns how many executions the watcher has seen end.
func (w *watcher) terminal() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, p := range w.phases {
		if p.IsTerminal() {
			n++
		}
	}
	return n
}

// createdAfter returns when the watcher first saw an execution of target
// that did not exist at after.
func (w *watcher) createdAfter(target string, after time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[string]bool{}
	for _, c := range w.changes {
		first := !seen[c.name]
		seen[c.name] = true
		if first && c.target == target && c.at.After(after) {
			return c.at, true
		}
	}
	return time.Time{}, false
}

// check stops the watcher and fails the test on any violation it saw.
func (w *watcher) check(t *testing.T) {
	t.Helper()
	w.close()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, v := range w.violations {
		t.Error(v)
	}
	if w.maxActive != 1 {
		// Zero would mean the watcher saw no execution run: it checked nothing.
		t.Errorf("the watcher saw at most %d non-terminal executions of a target at once, want exactly 1", w.maxActive)
	}
	t.Logf("watcher: %d phase changes of %d executions, no more than %d non-terminal per target at any moment",
		len(w.changes), len(w.phases), w.maxActive)
}

// logHandoffs logs, per hand-off on a target, the time from the watcher
// seeing an execution Completed to it seeing the target's next execution
// created. Logged only: the invariants do not depend on it.
func (w *watcher) logHandoffs(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	type life struct {
		created, ended time.Time
		sequence       int64
	}
	byTarget := map[string]map[string]*life{}
	for _, c := range w.changes {
		if byTarget[c.target] == nil {
			byTarget[c.target] = map[string]*life{}
		}
		l := byTarget[c.target][c.name]
		if l == nil {
			l = &life{created: c.at, sequence: c.sequence}
			byTarget[c.target][c.name] = l
		}
		if c.phase == v1alpha1.WorkflowCompleted {
			l.ended = c.at
		}
	}
	var gaps []time.Duration
	for _, lives := range byTarget {
		ordered := make([]*life, 0, len(lives))
		for _, l := range lives {
			ordered = append(ordered, l)
		}
		sort.Slice(ordered, func(i, j int) bool { return ordered[i].sequence < ordered[j].sequence })
		for i := 1; i < len(ordered); i++ {
			if prev := ordered[i-1]; !prev.ended.IsZero() {
				gaps = append(gaps, ordered[i].created.Sub(prev.ended))
			}
		}
	}
	if len(gaps) == 0 {
		t.Log("hand-off: none observed")
		return
	}
	slices.Sort(gaps)
	pct := func(p float64) time.Duration { return gaps[int(p*float64(len(gaps)-1))].Round(100 * time.Microsecond) }
	t.Logf("hand-off (execution Completed -> next execution created, as the watcher saw them): n=%d p50=%v p95=%v max=%v",
		len(gaps), pct(0.50), pct(0.95), gaps[len(gaps)-1].Round(100*time.Microsecond))
}
