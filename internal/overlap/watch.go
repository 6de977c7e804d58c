package overlap

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Watch replays the changes of one resource in one namespace in the order
// the API server committed them and keeps, per exclusion group, the
// largest number of objects active at once. One watch stream of one
// resource is delivered in resourceVersion order, so every state it
// rebuilds is a state the API server actually passed through; a count
// taken from polled lists could miss a short overlap.
type Watch struct {
	// what names the objects in messages, such as "executions".
	what     string
	classify Classifier
	// clock stamps Added.At; clock.RealClock{} unless a test sets another.
	clock clock.PassiveClock
	stop  context.CancelFunc
	done  chan struct{}

	mu sync.Mutex
	// seen is, per object name, whether it was active at its last change
	// (false once deleted: a deleted object keeps nothing busy).
	seen map[string]bool
	// active holds, per group, its active objects.
	active map[string]map[string]bool
	// maxActive is, per group, the most objects active at once.
	maxActive map[string]int
	// maxActiveAny is the largest value in maxActive.
	maxActiveAny int
	// added is, per object name, when the watch first delivered it as
	// Added; objects of the initial list are not in it.
	added map[string]Added
	// violations describe each moment a group had more than one active
	// object.
	violations []string
	// gaps say when the watch ended early or lost changes: what happened
	// after went unchecked.
	gaps []string
}

// Added is an object the watch delivered as Added after the initial list.
type Added struct {
	Name  string
	Group string
	// At is when this process received the change, on the Watch's clock.
	At time.Time
}

func newWatch(what string, classify Classifier, clk clock.PassiveClock) *Watch {
	return &Watch{
		what:      what,
		classify:  classify,
		clock:     clk,
		done:      make(chan struct{}),
		seen:      map[string]bool{},
		active:    map[string]map[string]bool{},
		maxActive: map[string]int{},
		added:     map[string]Added{},
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

// Start lists the namespace's objects of one resource and watches from
// that list's resourceVersion; newList returns an empty list of the
// resource, and what names its objects in messages (such as
// "executions"). After a broken connection the RetryWatcher resumes from
// the last resourceVersion it delivered, so no change is skipped. Only
// changes it cannot resume from (an expired resourceVersion) are lost, and
// those are recorded as a gap. The watch runs until Close, whatever
// happens to ctx; ctx bounds only the initial list.
func Start(ctx context.Context, cli client.WithWatch, namespace, what string, newList func() client.ObjectList, classify Classifier) (*Watch, error) {
	return start(ctx, cli, namespace, what, newList, classify, clock.RealClock{})
}

func start(ctx context.Context, cli client.WithWatch, namespace, what string, newList func() client.ObjectList, classify Classifier, clk clock.PassiveClock) (*Watch, error) {
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
	w := newWatch(what, classify, clk)
	w.stop = cancel
	w.applyList(items)
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

// Close stops the watch and waits for its goroutine. Safe to call more than
// once.
func (w *Watch) Close() {
	if w.stop != nil {
		w.stop()
		<-w.done
	}
}

func (w *Watch) gap(msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gaps = append(w.gaps, msg)
}

// applyList records the objects of the initial list: they count as
// active like any other, but were not Added by the watch.
func (w *Watch) applyList(items []runtime.Object) {
	for _, item := range items {
		if obj, ok := item.(client.Object); ok {
			w.record(watch.Added, obj, false)
		}
	}
}

// apply records one change the watch delivered.
func (w *Watch) apply(typ watch.EventType, obj client.Object) {
	w.record(typ, obj, true)
}

// record records one change; fromWatch is false for the initial list.
func (w *Watch) record(typ watch.EventType, obj client.Object, fromWatch bool) {
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
	if fromWatch && typ == watch.Added {
		if _, found := w.added[name]; !found {
			w.added[name] = Added{Name: name, Group: group, At: w.clock.Now()}
		}
	}
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
	w.maxActiveAny = max(w.maxActiveAny, n)
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

// CaughtUp reports whether the watch has seen each of objs as active or
// not as the object itself says. Objects the Classifier does not know are
// skipped.
func (w *Watch) CaughtUp(objs []client.Object) bool {
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

// Result is what a Watch saw up to the call of Result.
type Result struct {
	// MaxActive is, per group asked for, the most objects active at once;
	// 0 for a group never seen.
	MaxActive map[string]int
	// Violations and Gaps are those seen anywhere in the namespace: two
	// active objects in one group are a violation whichever group it is.
	Violations []string
	Gaps       []string
	// MaxActiveAny is the largest number active at once in any group of
	// the namespace, asked for or not.
	MaxActiveAny int
}

// Result reports on the groups asked for; groups may be nil, for a caller
// that needs only the namespace-wide fields.
func (w *Watch) Result(groups []string) Result {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := Result{
		MaxActive:    make(map[string]int, len(groups)),
		Violations:   slices.Clone(w.violations),
		Gaps:         slices.Clone(w.gaps),
		MaxActiveAny: w.maxActiveAny,
	}
	for _, g := range groups {
		r.MaxActive[g] = w.maxActive[g]
	}
	return r
}

// AddedAfter returns the objects the watch first delivered as Added
// strictly after t, in the order of their At (then by name). Objects of the
// initial list are never included; an object Added again under a name
// already seen Added keeps its first time.
func (w *Watch) AddedAfter(t time.Time) []Added {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Added
	for _, a := range w.added {
		if a.At.After(t) {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b Added) int {
		return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.Name, b.Name))
	})
	return out
}
