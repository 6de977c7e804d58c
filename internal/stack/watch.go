package stack

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
)

// classifyFunc puts an object in its exclusion group and says whether it is
// active; ok is false for an object of another type.
type classifyFunc func(client.Object) (group string, active, ok bool)

// classifyExecution: at most one non-terminal WorkflowExecution per target.
func classifyExecution(obj client.Object) (string, bool, bool) {
	wfe, ok := obj.(*v1alpha1.WorkflowExecution)
	if !ok {
		return "", false, false
	}
	return wfe.Spec.Target.LockKey(), !wfe.IsTerminal(), true
}

// classifyRequest: at most one non-terminal RemediationRequest per
// fingerprint. Several requests of one fingerprint one after the other are
// correct: the gateway starts the next one only after the previous one has
// finished, and the demo's short executions can finish during a storm.
func classifyRequest(obj client.Object) (string, bool, bool) {
	rr, ok := obj.(*v1alpha1.RemediationRequest)
	if !ok {
		return "", false, false
	}
	return rr.Spec.Fingerprint, !rr.IsTerminal(), true
}

// activeWatch replays the changes of one resource in one namespace in the
// order the API server committed them and keeps, per exclusion group, the
// largest number of objects active at once. One watch stream of one
// resource is delivered in resourceVersion order, so every state it
// rebuilds is a state the API server actually passed through; a count
// taken from polled lists could miss a short overlap.
type activeWatch struct {
	// what names the objects in messages, such as "executions".
	what     string
	classify classifyFunc
	stop     context.CancelFunc
	done     chan struct{}

	mu sync.Mutex
	// seen is, per object name, whether it was active at its last change
	// (false once deleted: a deleted object keeps nothing busy).
	seen map[string]bool
	// active holds, per group, its active objects.
	active map[string]map[string]bool
	// maxActive is, per group, the most objects active at once.
	maxActive map[string]int
	// violations describe each moment a group had more than one active
	// object.
	violations []string
	// gaps say when the watch ended early or lost changes: what happened
	// after went unchecked.
	gaps []string
}

func newActiveWatch(what string, classify classifyFunc) *activeWatch {
	return &activeWatch{
		what:      what,
		classify:  classify,
		done:      make(chan struct{}),
		seen:      map[string]bool{},
		active:    map[string]map[string]bool{},
		maxActive: map[string]int{},
	}
}

// lister adapts the controller-runtime client to what client-go's
// RetryWatcher calls; RetryWatcher passes the resourceVersion to resume
// from in opts.
type lister struct {
	cli       client.WithWatch
	namespace string
	newList   func() client.ObjectList
}

func (l lister) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return l.cli.Watch(ctx, l.newList(), client.InNamespace(l.namespace), &client.ListOptions{Raw: &opts})
}

// startActiveWatch lists the namespace's objects and watches from that
// list's resourceVersion; after a broken connection the RetryWatcher
// resumes from the last resourceVersion it delivered, so no change is
// skipped. Only changes it cannot resume from (an expired resourceVersion)
// are lost, and those are recorded as a gap. The watch runs until close,
// whatever happens to ctx.
func startActiveWatch(ctx context.Context, cli client.WithWatch, namespace, what string, newList func() client.ObjectList, classify classifyFunc) (*activeWatch, error) {
	l := lister{cli: cli, namespace: namespace, newList: newList}
	list := newList()
	if err := cli.List(ctx, list, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	rw, err := watchtools.NewRetryWatcherWithContext(wctx, list.GetResourceVersion(), l)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch %s: %w", what, err)
	}
	w := newActiveWatch(what, classify)
	w.stop = cancel
	for _, item := range items {
		if obj, ok := item.(client.Object); ok {
			w.apply(watch.Added, obj)
		}
	}
	go func() {
		defer close(w.done)
		defer rw.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case ev, ok := <-rw.ResultChan():
				if !ok {
					w.gap(fmt.Sprintf("the watch of %s ended early: later changes were not checked", what))
					return
				}
				switch ev.Type {
				case watch.Added, watch.Modified, watch.Deleted:
					if obj, ok := ev.Object.(client.Object); ok {
						w.apply(ev.Type, obj)
					}
				case watch.Error:
					// RetryWatcher forwards only errors it cannot resume
					// from.
					w.gap(fmt.Sprintf("the watch of %s failed and missed changes: %v", what, ev.Object))
					return
				}
			}
		}
	}()
	return w, nil
}

// close stops the watch and waits for its goroutine. Safe to call more than
// once.
func (w *activeWatch) close() {
	if w.stop != nil {
		w.stop()
		<-w.done
	}
}

func (w *activeWatch) gap(msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gaps = append(w.gaps, msg)
}

// apply records one change.
func (w *activeWatch) apply(typ watch.EventType, obj client.Object) {
	group, active, ok := w.classify(obj)
	if !ok {
		return
	}
	if typ == watch.Deleted {
		active = false
	}
	name := obj.GetName()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen[name] = active
	if w.active[group] == nil {
		w.active[group] = map[string]bool{}
	}
	if active {
		w.active[group][name] = true
	} else {
		delete(w.active[group], name)
	}
	n := len(w.active[group])
	w.maxActive[group] = max(w.maxActive[group], n)
	if n > 1 {
		names := make([]string, 0, n)
		for name := range w.active[group] {
			names = append(names, name)
		}
		slices.Sort(names)
		w.violations = append(w.violations, fmt.Sprintf("%s: %d %s active at once after a change of %s: %s",
			group, n, w.what, name, strings.Join(names, ", ")))
	}
}

// caughtUp reports whether the watch has seen each of objs as active or
// not as the object itself says.
func (w *activeWatch) caughtUp(objs []client.Object) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, obj := range objs {
		_, active, ok := w.classify(obj)
		if !ok {
			continue
		}
		if seen, found := w.seen[obj.GetName()]; !found || seen != active {
			return false
		}
	}
	return true
}

// watchResult is what an activeWatch saw.
type watchResult struct {
	// MaxActive is, per group asked for, the most objects active at once.
	MaxActive map[string]int
	// Violations and Gaps are those seen anywhere in the namespace: two
	// active objects in one group are a violation whichever group it is.
	Violations []string
	Gaps       []string
}

// result reports on the groups asked for.
func (w *activeWatch) result(groups []string) watchResult {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := watchResult{MaxActive: make(map[string]int, len(groups)), Violations: slices.Clone(w.violations), Gaps: slices.Clone(w.gaps)}
	for _, g := range groups {
		r.MaxActive[g] = w.maxActive[g]
	}
	return r
}
