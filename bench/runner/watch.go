package runner

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// change is one state of one object as a watch delivered it, stamped with
// the local time of delivery.
type change struct {
	at      time.Time
	deleted bool
	obj     client.Object
}

// recorder keeps every change of one resource in one namespace, in the
// order the API server committed them: one watch stream of one resource is
// delivered in resourceVersion order, so replaying it passes through every
// state the API server held, however short.
type recorder struct {
	what  string
	clock clock.Clock
	stop  context.CancelFunc
	done  chan struct{}

	mu      sync.Mutex
	changes []change
	gaps    []string
	// notify is signalled (without blocking) after each change.
	notify chan struct{}
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

// startRecorder lists the namespace's objects and watches from that list's
// resourceVersion until close; after a broken connection the RetryWatcher
// resumes from the last resourceVersion delivered, so only changes it
// cannot resume from are lost, and those are recorded as a gap.
func startRecorder(ctx context.Context, cli client.WithWatch, clk clock.Clock, namespace, what string, newList func() client.ObjectList) (*recorder, error) {
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
	rec := &recorder{what: what, clock: clk, stop: cancel, done: make(chan struct{}), notify: make(chan struct{}, 1)}
	now := clk.Now()
	for _, item := range items {
		if obj, ok := item.(client.Object); ok {
			rec.changes = append(rec.changes, change{at: now, obj: obj})
		}
	}
	go func() {
		defer close(rec.done)
		defer rw.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case ev, ok := <-rw.ResultChan():
				if !ok {
					rec.gap(fmt.Sprintf("the watch of %s ended early: later changes were not seen", what))
					return
				}
				switch ev.Type {
				case watch.Added, watch.Modified, watch.Deleted:
					if obj, ok := ev.Object.(client.Object); ok {
						rec.add(change{at: clk.Now(), deleted: ev.Type == watch.Deleted, obj: obj})
					}
				case watch.Error:
					// RetryWatcher forwards only errors it cannot resume
					// from.
					rec.gap(fmt.Sprintf("the watch of %s failed and missed changes: %v", what, ev.Object))
					return
				}
			}
		}
	}()
	return rec, nil
}

func (rec *recorder) add(c change) {
	rec.mu.Lock()
	rec.changes = append(rec.changes, c)
	rec.mu.Unlock()
	select {
	case rec.notify <- struct{}{}:
	default:
	}
}

func (rec *recorder) gap(msg string) {
	rec.mu.Lock()
	rec.gaps = append(rec.gaps, msg)
	rec.mu.Unlock()
	select {
	case rec.notify <- struct{}{}:
	default:
	}
}

// snapshot returns the changes and gaps so far.
func (rec *recorder) snapshot() ([]change, []string) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]change(nil), rec.changes...), append([]string(nil), rec.gaps...)
}

// close stops the watch and waits for its goroutine. Safe to call more
// than once.
func (rec *recorder) close() {
	rec.stop()
	<-rec.done
}
