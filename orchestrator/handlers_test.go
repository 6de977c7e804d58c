package orchestrator

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// recordingQueue records Add; the handlers use nothing else.
type recordingQueue struct {
	workqueue.TypedRateLimitingInterface[reconcile.Request]
	added []reconcile.Request
}

func newQueue() *recordingQueue { return &recordingQueue{} }

func (q *recordingQueue) Add(r reconcile.Request) { q.added = append(q.added, r) }

func (q *recordingQueue) has(name string) bool {
	for _, r := range q.added {
		if r.Name == name {
			return true
		}
	}
	return false
}

func (q *recordingQueue) items() []string {
	var out []string
	for _, r := range q.added {
		out = append(out, r.Name)
	}
	return out
}

func updateEvent(old, new client.Object) event.UpdateEvent {
	return event.UpdateEvent{ObjectOld: old, ObjectNew: new}
}

// Execution events wake the execution's own request always, and the
// target's other non-terminal requests when the execution ends.
func TestExecutionEventsWakeRequests(t *testing.T) {
	worker2 := worker1
	worker2.Name = "worker-2"
	a := request("rr-a", worker1, 0)
	w := execution(a, 1, v1alpha1.WorkflowRunning)
	b := request("rr-b", worker1, time.Second)
	b.Status.Phase = v1alpha1.PhaseBlocked
	done := request("rr-done", worker1, -time.Hour)
	done.Status.Phase = v1alpha1.PhaseCompleted
	elsewhere := request("rr-elsewhere", worker2, 0)
	e := newEnv(t, []client.Object{executing(a, w), b, done, elsewhere, w})
	h := e.rr.executionHandler()
	ctx := context.Background()

	q := newQueue()
	h.Create(ctx, event.CreateEvent{Object: w}, q)
	if got := q.items(); len(got) != 1 || got[0] != "rr-a" {
		t.Fatalf("create woke %v, want only rr-a", got)
	}

	q = newQueue()
	running := w.DeepCopy()
	running.Status.Phase = v1alpha1.WorkflowPending
	h.Update(ctx, updateEvent(running, w), q)
	if got := q.items(); len(got) != 1 || got[0] != "rr-a" {
		t.Fatalf("a non-terminal update woke %v, want only rr-a", got)
	}

	q = newQueue()
	finished := w.DeepCopy()
	finished.Status.Phase = v1alpha1.WorkflowCompleted
	h.Update(ctx, updateEvent(w, finished), q)
	if !q.has("rr-a") || !q.has("rr-b") || q.has("rr-done") || q.has("rr-elsewhere") {
		t.Fatalf("the end of the execution woke %v, want rr-a and rr-b", q.items())
	}

	q = newQueue()
	h.Delete(ctx, event.DeleteEvent{Object: w}, q)
	if !q.has("rr-b") {
		t.Fatalf("the deletion of an active execution woke %v, want rr-b among them", q.items())
	}

	q = newQueue()
	e.rr.requestDeleted(ctx, event.DeleteEvent{Object: a}, q)
	if !q.has("rr-b") || q.has("rr-elsewhere") {
		t.Fatalf("a deleted request woke %v", q.items())
	}
}

// Status-only updates of a request (ours, the gateway's) do not reconcile
// it; the start of its deletion does.
func TestRequestChangedPredicate(t *testing.T) {
	a := request("rr-a", worker1, 0)
	counted := a.DeepCopy()
	counted.Status.Deduplication = &v1alpha1.DeduplicationStatus{OccurrenceCount: 2}
	counted.ResourceVersion = "2"
	if requestChanged.Update(updateEvent(a, counted)) {
		t.Fatal("a status update passed")
	}
	deleting := a.DeepCopy()
	now := metav1.NewTime(t0)
	deleting.DeletionTimestamp = &now
	if !requestChanged.Update(updateEvent(a, deleting)) {
		t.Fatal("the start of deletion was filtered")
	}
	if !requestChanged.Create(event.CreateEvent{Object: a}) {
		t.Fatal("a creation was filtered")
	}
}
