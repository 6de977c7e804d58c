package overlap

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Watch feeds a Replay from one source, on a goroutine of its own, until
// Close: an API server watch (Start) or a watch on etcd itself
// (StartEtcd). Its reading methods are those of the Replay.
type Watch struct {
	replay *Replay
	stop   context.CancelFunc
	done   chan struct{}
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
// changes it cannot resume from (an expired resourceVersion, as after an
// API server restart, whose new watch cache starts at a later
// resourceVersion) are lost, and those are recorded as a gap; StartEtcd
// has none of those. The watch runs until Close, whatever happens to ctx;
// ctx bounds only the initial list.
func Start(ctx context.Context, cli client.WithWatch, namespace, what string, newList func() client.ObjectList, classify Classifier) (*Watch, error) {
	return start(ctx, cli, namespace, what, newList, classify, clock.RealClock{})
}

func start(ctx context.Context, cli client.WithWatch, namespace, what string, newList func() client.ObjectList, classify Classifier, clk clock.PassiveClock) (*Watch, error) {
	replay, err := NewReplay(what, classify, clk)
	if err != nil {
		return nil, err
	}
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
	for _, item := range items {
		if obj, ok := item.(client.Object); ok {
			replay.ApplyListed(obj)
		}
	}
	w := &Watch{replay: replay, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer rw.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case ev, ok := <-rw.ResultChan():
				if !ok {
					// Close stops the RetryWatcher too; only a stream that
					// ended on its own is a gap.
					if wctx.Err() == nil {
						replay.Gap(fmt.Sprintf("the watch of %s ended early: later changes were not checked", what))
					}
					return
				}
				switch ev.Type {
				case watch.Added, watch.Modified, watch.Deleted:
					if obj, ok := ev.Object.(client.Object); ok {
						replay.Apply(ev.Type, obj)
					}
				case watch.Error:
					// RetryWatcher forwards only errors it cannot resume
					// from.
					replay.Gap(fmt.Sprintf("the watch of %s failed and missed changes: %v", what, ev.Object))
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

// CaughtUp reports whether the watch has seen each of objs as active or
// not as the object itself says; see Replay.CaughtUp.
func (w *Watch) CaughtUp(objs []client.Object) bool { return w.replay.CaughtUp(objs) }

// Result is what the watch saw up to the call; see Replay.Result.
func (w *Watch) Result(groups []string) Result { return w.replay.Result(groups) }

// AddedAfter returns the objects the watch first delivered as Added
// strictly after t; see Replay.AddedAfter.
func (w *Watch) AddedAfter(t time.Time) []Added { return w.replay.AddedAfter(t) }
