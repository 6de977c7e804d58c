package floor

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/dedup"
	"github.com/leasehold/leasehold/gateway/signal"
)

const testNS = "gw"

// newClient returns a fake client that counts every call and fails Creates
// with fail, when set.
func newClient(t *testing.T, calls *atomic.Int32, fail error) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	count := func() { calls.Add(1) }
	return fake.NewClientBuilder().WithScheme(scheme).
		WithStatusSubresource(&v1alpha1.RemediationRequest{}).
		WithInterceptorFuncs(interceptor.Funcs{
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				count()
				return c.Get(ctx, key, obj, opts...)
			},
			List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
				count()
				return c.List(ctx, list, opts...)
			},
			Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				count()
				if fail != nil {
					return fail
				}
				return c.Create(ctx, obj, opts...)
			},
			Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
				count()
				return c.Update(ctx, obj, opts...)
			},
			SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
				count()
				return c.SubResource(sub).Update(ctx, obj, opts...)
			},
		}).Build()
}

func incident() dedup.Incident {
	target := v1alpha1.TargetRef{Cluster: "local", APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "checkout"}
	return dedup.Incident{
		Fingerprint:  dedup.Fingerprint(target),
		Target:       target,
		SignalTarget: target,
		Signal:       signal.Signal{Source: v1alpha1.SourceAlertmanager, Name: "HighLatency", Severity: "critical", Target: target},
		ReceivedAt:   time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC),
	}
}

// Every call is one Create and a new request, even for one incident: the
// floor does no deduplication.
func TestRecordCreatesOneRequestPerCall(t *testing.T) {
	var calls atomic.Int32
	c := newClient(t, &calls, nil)
	d, err := New(c, Options{Namespace: testNS})
	if err != nil {
		t.Fatal(err)
	}
	in := incident()
	names := map[string]bool{}
	for range 3 {
		res, err := d.Record(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if res.Outcome != dedup.Created || res.OccurrenceCount != 1 || names[res.Name] {
			t.Fatalf("result = %+v, want created with count 1 and a new name", res)
		}
		names[res.Name] = true
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d API calls for 3 signals, want 3", n)
	}
	var list v1alpha1.RemediationRequestList
	if err := c.List(context.Background(), &list, client.InNamespace(testNS),
		client.MatchingLabels{v1alpha1.LabelFingerprint: v1alpha1.FingerprintLabelValue(in.Fingerprint)}); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 3 {
		t.Fatalf("%d requests found by the fingerprint label, want 3", len(list.Items))
	}
	for _, rr := range list.Items {
		if !names[rr.Name] || rr.Spec.Fingerprint != in.Fingerprint || rr.Labels[v1alpha1.LabelTarget] != v1alpha1.TargetLabelValue(in.Target) {
			t.Fatalf("request %s = %+v, want one answered, with the incident's fingerprint and target label", rr.Name, rr)
		}
	}
}

func TestRecordAPIErrorIsUnavailable(t *testing.T) {
	var calls atomic.Int32
	d, err := New(newClient(t, &calls, apierrors.NewServiceUnavailable("overloaded")), Options{Namespace: testNS})
	if err != nil {
		t.Fatal(err)
	}
	in := incident()
	_, err = d.Record(context.Background(), in)
	if !errors.Is(err, dedup.ErrUnavailable) || !strings.Contains(err.Error(), in.Fingerprint) {
		t.Fatalf("err = %v, want ErrUnavailable naming the fingerprint", err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d API calls, want 1: no retry", n)
	}
}

func TestNewValidates(t *testing.T) {
	var calls atomic.Int32
	c := newClient(t, &calls, nil)
	if _, err := New(c, Options{}); err == nil {
		t.Fatal("New accepted an empty namespace")
	}
	if _, err := New(c, Options{Namespace: "Not_A_Label"}); err == nil {
		t.Fatal("New accepted an invalid namespace")
	}
	if _, err := New(nil, Options{Namespace: testNS}); err == nil {
		t.Fatal("New accepted a nil client")
	}
}
