package overlap

import (
	"context"
	"time"

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

// Start follows the namespace's objects of one resource through the API
// server (see Follow) and replays them; what names its objects in messages
// (such as "executions"). Changes the API server's watch cannot resume
// from are lost and recorded as a gap; StartEtcd has none of those. The
// watch runs until Close, whatever happens to ctx; ctx bounds only the
// initial list.
func Start(ctx context.Context, cli client.WithWatch, namespace, what string, newList func() client.ObjectList, classify Classifier) (*Watch, error) {
	return start(ctx, cli, namespace, what, newList, classify, clock.RealClock{})
}

func start(ctx context.Context, cli client.WithWatch, namespace, what string, newList func() client.ObjectList, classify Classifier, clk clock.PassiveClock) (*Watch, error) {
	replay, err := NewReplay(what, classify, clk)
	if err != nil {
		return nil, err
	}
	s, err := Follow(ctx, cli, namespace, what, newList, Sink{Listed: replay.ApplyListed, Changed: replay.Apply, Gap: replay.Gap})
	if err != nil {
		return nil, err
	}
	return &Watch{replay: replay, stop: s.stop, done: s.done}, nil
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
