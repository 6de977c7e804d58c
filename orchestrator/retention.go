package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// retention deletes terminal requests and executions older than
// Options.Retention, except the latest execution of each target and the
// latest request of each fingerprint. Each of those carries the generation
// the next name derives from: the orchestrator names a target's next
// execution after its highest sequence, the gateway a fingerprint's next
// request after its highest generation label. Deleting the latest would let
// that maximum go backwards, and two writers that read before and after the
// delete would then pick different names and both succeed: two executions
// active on one target, or two open requests for one incident.
//
// The latest is computed per kind from one paged list: its pages are served
// from one snapshot, and anything created after it has a higher number, so
// deleting what is below the maximum of the snapshot never lowers the
// maximum.
//
// Every replica may run it: each delete carries UID and resourceVersion
// preconditions, so a pass working from an old list deletes nothing that
// changed since, and two passes deleting the same object cost one
// Conflict or NotFound.
type retention struct {
	api     client.Reader
	client  client.Writer
	opts    Options
	metrics *metrics
}

var _ manager.Runnable = (*retention)(nil)

// Start runs a pass at once and then every RetentionInterval until ctx
// ends. A failed pass is logged and counted; the next one retries.
func (r *retention) Start(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx).WithName("retention").WithValues("replica", r.opts.Identity)
	for {
		n, err := r.sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.metrics.retentionFailures.Inc()
			log.Error(err, "retention pass failed", "deleted", n)
		case n > 0:
			log.Info("retention pass", "deleted", n)
		}
		t := r.opts.Clock.NewTimer(r.opts.RetentionInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// sweep is one pass. It returns how many objects it deleted.
func (r *retention) sweep(ctx context.Context) (int, error) {
	cutoff := r.opts.now().Add(-r.opts.Retention)
	deleted := 0

	wfes, err := listExecutions(ctx, r.api, r.opts.Namespace)
	if err != nil {
		return 0, err
	}
	latest := map[string]int64{}
	for _, w := range wfes {
		k := w.Spec.Target.LockKey()
		latest[k] = max(latest[k], w.Spec.Sequence)
	}
	var errs []error
	for i := range wfes {
		w := &wfes[i]
		// Sequences only grow, so an execution below the highest sequence
		// seen is not its target's latest, whatever was created since.
		if !w.IsTerminal() || w.Spec.Sequence >= latest[w.Spec.Target.LockKey()] {
			continue
		}
		at := w.CreationTimestamp.Time
		if w.Status.CompletedAt != nil {
			at = w.Status.CompletedAt.Time
		}
		if !at.Before(cutoff) {
			continue
		}
		ok, err := r.delete(ctx, w)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			deleted++
			r.metrics.retentionDeleted.WithLabelValues("WorkflowExecution").Inc()
		}
	}

	rrs, err := listRequests(ctx, r.api, r.opts.Namespace)
	if err != nil {
		return deleted, errors.Join(append(errs, err)...)
	}
	top := map[string]int64{} // by spec.fingerprint, as the gateway compares
	for i := range rrs {
		fp := rrs[i].Spec.Fingerprint
		top[fp] = max(top[fp], requestGeneration(&rrs[i]))
	}
	for i := range rrs {
		rr := &rrs[i]
		if !rr.IsTerminal() || !rr.DeletionTimestamp.IsZero() {
			continue
		}
		// A request without a generation (made by hand) counts as 0 for
		// the gateway, so it never decides a name and may go.
		if g := requestGeneration(rr); g > 0 && g >= top[rr.Spec.Fingerprint] {
			continue
		}
		at := rr.CreationTimestamp.Time
		if c := meta.FindStatusCondition(rr.Status.Conditions, ConditionFinished); c != nil && c.Status == metav1.ConditionTrue {
			at = c.LastTransitionTime.Time
		}
		if !at.Before(cutoff) {
			continue
		}
		ok, err := r.delete(ctx, rr)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			deleted++
			r.metrics.retentionDeleted.WithLabelValues("RemediationRequest").Inc()
		}
	}
	return deleted, errors.Join(errs...)
}

// requestGeneration reads a request's generation label the way the gateway
// does: missing, malformed or negative counts as 0.
func requestGeneration(rr *v1alpha1.RemediationRequest) int64 {
	n, err := strconv.ParseInt(rr.Labels[v1alpha1.LabelGeneration], 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// delete removes obj if it is still the version that was listed.
func (r *retention) delete(ctx context.Context, obj client.Object) (bool, error) {
	uid, rv := obj.GetUID(), obj.GetResourceVersion()
	err := r.client.Delete(ctx, obj, client.Preconditions{UID: &uid, ResourceVersion: &rv})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		// Gone already, or changed since the list: the next pass decides.
		return false, nil
	}
	return false, fmt.Errorf("delete %s: %w", obj.GetName(), err)
}

// listExecutions lists every execution of the namespace from the API
// server, in pages.
func listExecutions(ctx context.Context, api client.Reader, namespace string) ([]v1alpha1.WorkflowExecution, error) {
	var out []v1alpha1.WorkflowExecution
	err := listPages(ctx, api, namespace, &v1alpha1.WorkflowExecutionList{}, func(l client.ObjectList) {
		out = append(out, l.(*v1alpha1.WorkflowExecutionList).Items...)
	})
	return out, err
}

// listRequests lists every request of the namespace from the API server,
// in pages.
func listRequests(ctx context.Context, api client.Reader, namespace string) ([]v1alpha1.RemediationRequest, error) {
	var out []v1alpha1.RemediationRequest
	err := listPages(ctx, api, namespace, &v1alpha1.RemediationRequestList{}, func(l client.ObjectList) {
		out = append(out, l.(*v1alpha1.RemediationRequestList).Items...)
	})
	return out, err
}

func listPages(ctx context.Context, api client.Reader, namespace string, list client.ObjectList, collect func(client.ObjectList)) error {
	const pageSize = 500
	cont := ""
	for {
		if err := api.List(ctx, list, client.InNamespace(namespace), client.Limit(pageSize), client.Continue(cont)); err != nil {
			return fmt.Errorf("list %T: %w", list, err)
		}
		collect(list)
		if cont = list.GetContinue(); cont == "" {
			return nil
		}
	}
}
