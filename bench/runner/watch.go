package runner

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/internal/overlap"
)

// change is one state of one object as a watch delivered it, stamped with
// the local time of delivery.
type change struct {
	at      time.Time
	deleted bool
	obj     client.Object
}

// recorder keeps every change of one resource in one namespace, in the
// order the API server committed them (see overlap.Follow), so that
// replaying them passes through every state the API server held.
type recorder struct {
	stream *overlap.Stream

	mu      sync.Mutex
	changes []change
	gaps    []string
	// notify is signalled (without blocking) after each change.
	notify chan struct{}
}

// startRecorder lists the namespace's objects and watches from that list's
// resourceVersion until close; changes the watch cannot resume from are
// recorded as a gap. The listed objects are stamped with the time the list
// was read.
func startRecorder(ctx context.Context, cli client.WithWatch, clk clock.Clock, namespace, what string, newList func() client.ObjectList) (*recorder, error) {
	rec := &recorder{notify: make(chan struct{}, 1)}
	var listedAt time.Time
	stream, err := overlap.Follow(ctx, cli, namespace, what, newList, overlap.Sink{
		Listed: func(obj client.Object) {
			if listedAt.IsZero() {
				listedAt = clk.Now()
			}
			rec.changes = append(rec.changes, change{at: listedAt, obj: obj})
		},
		Changed: func(typ watch.EventType, obj client.Object) {
			rec.add(change{at: clk.Now(), deleted: typ == watch.Deleted, obj: obj})
		},
		Gap: rec.gap,
	})
	if err != nil {
		return nil, err
	}
	rec.stream = stream
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
	rec.stream.Close()
}
