package overlap

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Sink receives what Follow reads. Its functions are called from one
// goroutine at a time, in order: Listed for each object of the initial
// list (before Follow returns), then Changed for every change, and Gap at
// most once, last.
type Sink struct {
	// Listed gets each object of the initial list.
	Listed func(client.Object)
	// Changed gets every Added, Modified and Deleted event, in the order
	// the API server committed them.
	Changed func(watch.EventType, client.Object)
	// Gap says that changes were lost and nothing more will come: the
	// stream ended on its own, or failed in a way it cannot resume from.
	Gap func(msg string)
}

// Stream is a running Follow.
type Stream struct {
	stop context.CancelFunc
	done chan struct{}
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

// Follow lists the namespace's objects of one resource and watches from
// that list's resourceVersion, handing both to sink; newList returns an
// empty list of the resource, and what names its objects in messages (such
// as "executions"). One watch stream of one resource is delivered in
// resourceVersion order, so replaying it passes through every state the
// API server held, however short. After a broken connection the
// RetryWatcher resumes from the last resourceVersion it delivered, so no
// change is skipped; only changes it cannot resume from (an expired
// resourceVersion, as after an API server restart, whose new watch cache
// starts at a later resourceVersion) are lost, and those are a Gap. The
// watch runs until Close, whatever happens to ctx; ctx bounds only the
// initial list. Start is Follow feeding a Replay; Follow is exported for
// callers that keep their own record of the changes.
func Follow(ctx context.Context, cli client.WithWatch, namespace, what string, newList func() client.ObjectList, sink Sink) (*Stream, error) {
	list := newList()
	if err := cli.List(ctx, list, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	rw, err := watchtools.NewRetryWatcherWithContext(wctx, list.GetResourceVersion(), lister{cli: cli, namespace: namespace, newList: newList})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch %s: %w", what, err)
	}
	for _, item := range items {
		if obj, ok := item.(client.Object); ok {
			sink.Listed(obj)
		}
	}
	s := &Stream{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
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
						sink.Gap(fmt.Sprintf("the watch of %s ended early: later changes were not seen", what))
					}
					return
				}
				switch ev.Type {
				case watch.Added, watch.Modified, watch.Deleted:
					if obj, ok := ev.Object.(client.Object); ok {
						sink.Changed(ev.Type, obj)
					}
				case watch.Error:
					// RetryWatcher forwards only errors it cannot resume
					// from.
					sink.Gap(fmt.Sprintf("the watch of %s failed and missed changes: %v", what, ev.Object))
					return
				}
			}
		}
	}()
	return s, nil
}

// Close stops the watch and waits for its goroutine. Safe to call more
// than once.
func (s *Stream) Close() {
	s.stop()
	<-s.done
}
