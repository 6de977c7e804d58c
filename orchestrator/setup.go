package orchestrator

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// EventReporter is the reportingController of the Events the orchestrator
// records (events.k8s.io/v1); the replica's Identity is in each note.
const EventReporter = "leasehold-orchestrator"

// Setup registers the orchestrator with mgr: the request controller (named
// ControllerName, watching requests and executions), the execution timeout
// controller (ControllerName + "-timeout") and, unless Retention is
// negative, the retention runnable. mgr's scheme must hold api/v1alpha1.
// Its cache should be limited to opts.Namespace (other namespaces are
// ignored anyway). mgr runs with or without leader election: the work is
// not leader-elected, and retention, which runs on the leader only when
// there is one, is safe on every replica when there is none.
func Setup(mgr ctrl.Manager, opts Options) error {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return err
	}
	for _, obj := range []client.Object{&v1alpha1.RemediationRequest{}, &v1alpha1.WorkflowExecution{}} {
		if _, err := apiutil.GVKForObject(obj, mgr.GetScheme()); err != nil {
			return fmt.Errorf("orchestrator: the manager's scheme lacks %T: %w", obj, err)
		}
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return err
	}
	rec := mgr.GetEventRecorder(EventReporter)
	rr := &requestReconciler{client: mgr.GetClient(), api: mgr.GetAPIReader(), events: rec, opts: opts, metrics: m}
	inNamespace := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetNamespace() == opts.Namespace })

	err = ctrl.NewControllerManagedBy(mgr).
		Named(opts.ControllerName).
		For(&v1alpha1.RemediationRequest{}, builder.WithPredicates(inNamespace, requestChanged)).
		Watches(&v1alpha1.RemediationRequest{}, handler.Funcs{DeleteFunc: rr.requestDeleted}, builder.WithPredicates(inNamespace)).
		Watches(&v1alpha1.WorkflowExecution{}, rr.executionHandler(), builder.WithPredicates(inNamespace)).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(rr)
	if err != nil {
		return fmt.Errorf("orchestrator: request controller: %w", err)
	}

	tr := &timeoutReconciler{client: mgr.GetClient(), api: mgr.GetAPIReader(), events: rec, opts: opts, metrics: m}
	err = ctrl.NewControllerManagedBy(mgr).
		Named(opts.ControllerName+"-timeout").
		For(&v1alpha1.WorkflowExecution{}, builder.WithPredicates(inNamespace)).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(tr)
	if err != nil {
		return fmt.Errorf("orchestrator: timeout controller: %w", err)
	}

	if opts.Retention >= 0 {
		if err := mgr.Add(&retention{api: mgr.GetAPIReader(), client: mgr.GetClient(), opts: opts, metrics: m}); err != nil {
			return fmt.Errorf("orchestrator: retention: %w", err)
		}
	}
	return nil
}

// requestChanged passes the request updates a reconcile must see: a new
// generation (never, while spec is immutable) and the start of deletion.
// Status writes, ours and the gateway's, and metadata we write ourselves
// need no reconcile: whatever follows from them is driven by execution
// events, requeues, or the reconcile that wrote them.
var requestChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() ||
			e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero()
	},
}

// requestDeleted wakes the other requests of a deleted request's target:
// if it was the earliest, the next one may start now.
func (r *requestReconciler) requestDeleted(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	rr, ok := e.Object.(*v1alpha1.RemediationRequest)
	if !ok {
		return
	}
	for _, req := range r.waitingOn(ctx, rr.Namespace, rr.Spec.Target) {
		q.Add(req)
	}
}

// executionHandler maps execution events to requests: every event to the
// execution's own request (it may need to become Executing or terminal),
// and an execution's end (terminal phase or deletion) also to the target's
// waiting requests, one of which starts next.
func (r *requestReconciler) executionHandler() handler.EventHandler {
	enqueue := func(ctx context.Context, obj client.Object, ended bool, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		w, ok := obj.(*v1alpha1.WorkflowExecution)
		if !ok {
			return
		}
		q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: w.Namespace, Name: w.Spec.RemediationRequestRef.Name}})
		if ended || w.IsTerminal() {
			for _, req := range r.waitingOn(ctx, w.Namespace, w.Spec.Target) {
				q.Add(req)
			}
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, e.Object, false, q)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, e.ObjectNew, false, q)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, e.Object, true, q)
		},
		GenericFunc: func(ctx context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, e.Object, false, q)
		},
	}
}

// waitingOn lists, from the cache, the non-terminal requests of target t.
// The cache may miss a request created a moment ago; that request's own
// creation event reconciles it.
func (r *requestReconciler) waitingOn(ctx context.Context, namespace string, t v1alpha1.TargetRef) []reconcile.Request {
	var list v1alpha1.RemediationRequestList
	err := r.client.List(ctx, &list, client.InNamespace(namespace),
		client.MatchingLabels{v1alpha1.LabelTarget: v1alpha1.TargetLabelValue(t)})
	if err != nil {
		// Only the cache can fail here; the periodic resync of Blocked
		// requests covers the missed wake-up.
		logr.FromContextOrDiscard(ctx).Error(err, "list waiting requests from the cache", "target", t.String())
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		if !list.Items[i].IsTerminal() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return reqs
}
