//go:build integration

package orchestrator_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/orchestrator"
)

// The finalizer patch carries no resourceVersion. This checks, on the real
// API server, the conditions that make that safe: a request whose deletion
// started refuses a new finalizer (the API server's own rule, for custom
// resources too); a request re-created under the same name, or whose
// finalizers changed since the read, refuses the patch (its test
// operations); and a status update since the read (the gateway counting a
// signal) does not.
func TestIntegrationFinalizerPatch(t *testing.T) {
	const hold = "test.leasehold.dev/hold"
	ctx := ctxTimeout(t, time.Minute)
	tgt := target(newCluster(), "worker-1")
	patch := func(rr *v1alpha1.RemediationRequest) error {
		t.Helper()
		p, err := orchestrator.FinalizerPatch(rr, v1alpha1.FinalizerCancelExecution)
		if err != nil {
			t.Fatal(err)
		}
		return admin.Patch(ctx, rr, p)
	}
	get := func(name string) *v1alpha1.RemediationRequest {
		t.Helper()
		rr, err := getRequest(ctx, name)
		if err != nil {
			t.Fatalf("get %s: %v", name, err)
		}
		return rr
	}
	create := func(name string, finalizers ...string) *v1alpha1.RemediationRequest {
		t.Helper()
		rr := newRequest(name, tgt, time.Now())
		rr.Finalizers = finalizers
		createRequest(t, rr)
		return get(name)
	}

	t.Run("being deleted", func(t *testing.T) {
		before := create("fin-deleting", hold)
		if err := admin.Delete(ctx, before.DeepCopy()); err != nil {
			t.Fatal(err)
		}
		after := get("fin-deleting")
		if after.DeletionTimestamp.IsZero() {
			t.Fatal("no deletionTimestamp: the scenario needs a request being deleted")
		}
		// Read after the deletion started, and read before it: the
		// latter's test operations all pass (same UID, same finalizers).
		for what, rr := range map[string]*v1alpha1.RemediationRequest{"after": after, "before": before} {
			err := patch(rr.DeepCopy())
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "no new finalizers") {
				t.Fatalf("patch of a copy read %s the deletion: %v, want Invalid (no new finalizers)", what, err)
			}
		}
		if got := get("fin-deleting").Finalizers; !slices.Equal(got, []string{hold}) {
			t.Fatalf("finalizers %v, want only %s", got, hold)
		}
	})

	t.Run("status updated since the read", func(t *testing.T) {
		read := create("fin-status")
		cur := read.DeepCopy()
		cur.Status.Deduplication = &v1alpha1.DeduplicationStatus{OccurrenceCount: 7, FirstSeenAt: cur.Spec.ReceivedAt, LastSeenAt: cur.Spec.ReceivedAt}
		if err := admin.Status().Update(ctx, cur); err != nil {
			t.Fatal(err)
		}
		if cur.ResourceVersion == read.ResourceVersion {
			t.Fatal("the status update did not change the resourceVersion")
		}
		if err := patch(read); err != nil {
			t.Fatalf("patch after a status update: %v", err)
		}
		got := get("fin-status")
		if !slices.Equal(got.Finalizers, []string{v1alpha1.FinalizerCancelExecution}) || got.EffectiveDeduplication().OccurrenceCount != 7 {
			t.Fatalf("finalizers %v, count %d; want ours and 7", got.Finalizers, got.EffectiveDeduplication().OccurrenceCount)
		}
	})

	t.Run("appends to others", func(t *testing.T) {
		if err := patch(create("fin-append", hold)); err != nil {
			t.Fatal(err)
		}
		if got := get("fin-append").Finalizers; !slices.Equal(got, []string{hold, v1alpha1.FinalizerCancelExecution}) {
			t.Fatalf("finalizers %v", got)
		}
	})

	t.Run("all finalizers removed before the read", func(t *testing.T) {
		rr := create("fin-emptied", hold)
		if err := admin.Patch(ctx, rr, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))); err != nil {
			t.Fatal(err)
		}
		if err := patch(get("fin-emptied")); err != nil {
			t.Fatalf("patch of a request whose finalizers were removed: %v", err)
		}
		if got := get("fin-emptied").Finalizers; !slices.Equal(got, []string{v1alpha1.FinalizerCancelExecution}) {
			t.Fatalf("finalizers %v", got)
		}
	})

	t.Run("finalizers changed since the read", func(t *testing.T) {
		read := create("fin-changed")
		cur := read.DeepCopy()
		cur.Finalizers = []string{hold}
		if err := admin.Update(ctx, cur); err != nil {
			t.Fatal(err)
		}
		if err := patch(read); !apierrors.IsInvalid(err) {
			t.Fatalf("patch after a finalizer change: %v, want Invalid (test failed)", err)
		}
		if got := get("fin-changed").Finalizers; !slices.Equal(got, []string{hold}) {
			t.Fatalf("finalizers %v, want only %s", got, hold)
		}
	})

	t.Run("re-created under the same name", func(t *testing.T) {
		read := create("fin-recreated")
		if err := admin.Delete(ctx, read.DeepCopy()); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the request is gone", func() (bool, error) {
			_, err := getRequest(ctx, "fin-recreated")
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return false, err
		})
		again := newRequest("fin-recreated", tgt, time.Now())
		if err := admin.Create(ctx, again); err != nil {
			t.Fatal(err)
		}
		if err := patch(read); !apierrors.IsInvalid(err) {
			t.Fatalf("patch of the predecessor's copy: %v, want Invalid (test failed)", err)
		}
		if got := get("fin-recreated"); len(got.Finalizers) != 0 {
			t.Fatalf("the new request got finalizers %v", got.Finalizers)
		}
	})
}
