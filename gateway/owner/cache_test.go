package owner_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/owner"
)

var (
	pod1   = ref("v1", "Pod", ns, "web-abc-1")
	pod2   = ref("v1", "Pod", ns, "web-abc-2")
	deploy = ref("apps/v1", "Deployment", ns, "web")
)

func mustResolve(t *testing.T, e *env, in, want v1alpha1.TargetRef, wantOK bool) {
	t.Helper()
	if got, ok := e.resolve(t, in); got != want || ok != wantOK {
		t.Fatalf("Resolve(%v) = %v, %v; want %v, %v", in, got, ok, want, wantOK)
	}
}

func wantGets(t *testing.T, e *env, n int) {
	t.Helper()
	if gets := e.gets(); len(gets) != n {
		t.Fatalf("requests = %q (%d); want %d", gets, len(gets), n)
	}
}

// TestCacheTTL: within TTL a resolve sends no request, even when the owner
// has gone meanwhile; from TTL on, every object is read again, and the
// owner found gone is answered from the pod's remembered resolution.
func TestCacheTTL(t *testing.T) {
	e := newEnv(t, nil, deploymentChain()...)
	mustResolve(t, e, pod1, deploy, true)
	wantGets(t, e, 3)

	// The Deployment goes; the cache does not know yet.
	gvr := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	if err := e.client.Tracker().Delete(gvr, ns, "web"); err != nil {
		t.Fatalf("delete deployment: %v", err)
	}
	e.clock.Step(owner.DefaultTTL - time.Nanosecond)
	mustResolve(t, e, pod1, deploy, true)
	wantGets(t, e, 3)
	if n := e.metric(t, "lookups_total", "result", "hit"); n != 3 {
		t.Errorf("lookups_total{result=hit} = %v; want 3", n)
	}

	e.clock.Step(time.Nanosecond)
	mustResolve(t, e, pod1, deploy, true)
	wantGets(t, e, 6)
	if n := e.metric(t, "resolves_total", "outcome", "remembered"); n != 1 {
		t.Errorf("resolves_total{outcome=remembered} = %v; want 1", n)
	}
}

// TestCacheNegativeTTL: a failed lookup is remembered for NegativeTTL
// (default TTL/3), not TTL, and then retried.
func TestCacheNegativeTTL(t *testing.T) {
	// A name that implies no candidate owner: one request per resolve.
	pod1 := ref("v1", "Pod", ns, "lonely")
	e := newEnv(t, nil)
	mustResolve(t, e, pod1, pod1, false)
	wantGets(t, e, 1)

	if err := e.client.Tracker().Add(object("v1", "Pod", ns, "lonely", "uid-pod1")); err != nil {
		t.Fatalf("add pod: %v", err)
	}
	e.clock.Step(owner.DefaultTTL/3 - time.Nanosecond)
	mustResolve(t, e, pod1, pod1, false)
	wantGets(t, e, 1)
	if n := e.metric(t, "fallbacks_total", "reason", "not_found"); n != 2 {
		t.Errorf("fallbacks_total{reason=not_found} = %v; want 2 (the remembered failure still counts)", n)
	}

	e.clock.Step(time.Nanosecond)
	mustResolve(t, e, pod1, pod1, false)
	wantGets(t, e, 2)
	if n := e.metric(t, "resolves_total", "outcome", "self"); n != 1 {
		t.Errorf("resolves_total{outcome=self} = %v; want 1 (the pod was read this time)", n)
	}
}

// TestCacheNegativeTTLOption: an explicit NegativeTTL replaces the default.
func TestCacheNegativeTTLOption(t *testing.T) {
	pod1 := ref("v1", "Pod", ns, "lonely")
	e := newEnv(t, func(o *owner.Options) { o.TTL = time.Minute; o.NegativeTTL = time.Second })
	mustResolve(t, e, pod1, pod1, false)
	e.clock.Step(time.Second - time.Nanosecond)
	mustResolve(t, e, pod1, pod1, false)
	wantGets(t, e, 1)
	e.clock.Step(time.Nanosecond)
	mustResolve(t, e, pod1, pod1, false)
	wantGets(t, e, 2)
}

// TestCacheSharesOwners: the objects of a chain are remembered one by one,
// so a second Pod of the same ReplicaSet costs one request.
func TestCacheSharesOwners(t *testing.T) {
	e := newEnv(t, nil, deploymentChain()...)
	mustResolve(t, e, pod1, deploy, true)
	mustResolve(t, e, pod2, deploy, true)
	want := []string{"pods shop/web-abc-1", "replicasets shop/web-abc", "deployments shop/web", "pods shop/web-abc-2"}
	if gets := e.gets(); !slices.Equal(gets, want) {
		t.Errorf("requests = %q; want %q", gets, want)
	}
	mustResolve(t, e, ref("apps/v1", "ReplicaSet", ns, "web-abc"), deploy, true)
	wantGets(t, e, 4)
}

// gate holds the first get of one resource until it is opened or the
// request's context ends, and says when that get has arrived. It sits
// between the Cache and the fake client, which cannot see contexts.
type gate struct {
	resource         string
	entered, release chan struct{}
	mu               sync.Mutex
	armed            bool
	closeOnce        sync.Once
}

// newGate puts a gate on resource in front of e's client and gives e a new
// Cache behind it (same options and registry).
func newGate(t *testing.T, e *env, resource string) *gate {
	t.Helper()
	g := &gate{resource: resource, entered: make(chan struct{}), release: make(chan struct{}), armed: true}
	// A failing test must not leave the request, and so its goroutine,
	// blocked.
	t.Cleanup(g.open)
	c, err := owner.New(&gatedClient{Interface: e.client, g: g}, e.opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.cache = c
	return g
}

func (g *gate) open() { g.closeOnce.Do(func() { close(g.release) }) }

func (g *gate) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no request arrived")
	}
}

// pass blocks the first request until the gate opens or ctx ends.
func (g *gate) pass(ctx context.Context) error {
	g.mu.Lock()
	first := g.armed
	g.armed = false
	g.mu.Unlock()
	if !first {
		return nil
	}
	close(g.entered)
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type gatedClient struct {
	metadata.Interface
	g *gate
}

func (c *gatedClient) Resource(gvr schema.GroupVersionResource) metadata.Getter {
	r := c.Interface.Resource(gvr)
	if gvr.Resource != c.g.resource {
		return r
	}
	return &gatedGetter{Getter: r, target: r, g: c.g}
}

type gatedGetter struct {
	metadata.Getter
	target metadata.ResourceInterface
	g      *gate
}

func (gg *gatedGetter) Namespace(ns string) metadata.ResourceInterface {
	return &gatedGetter{Getter: gg.Getter, target: gg.Getter.Namespace(ns), g: gg.g}
}

func (gg *gatedGetter) Get(ctx context.Context, name string, opts metav1.GetOptions, sub ...string) (*metav1.PartialObjectMetadata, error) {
	if err := gg.g.pass(ctx); err != nil {
		return nil, err
	}
	return gg.target.Get(ctx, name, opts, sub...)
}

// TestConcurrentResolvesShareRequests: many resolves of one object at once
// send one request per object of the chain, and all get the answer.
func TestConcurrentResolvesShareRequests(t *testing.T) {
	e := newEnv(t, nil, deploymentChain()...)
	g := newGate(t, e, "pods")
	const n = 16
	type result struct {
		to v1alpha1.TargetRef
		ok bool
	}
	results := make(chan result, n)
	for range n {
		go func() {
			to, ok := e.resolve(t, pod1)
			results <- result{to, ok}
		}()
	}
	g.waitEntered(t)
	// Everyone else must be waiting on that one request before it ends;
	// a Cache without sharing would send requests of their own instead,
	// and this would time out.
	waitFor(t, "the other callers to join the request", func() bool {
		return e.metric(t, "lookups_total", "result", "shared") == n-1
	})
	g.open()
	for range n {
		if r := <-results; r.to != deploy || !r.ok {
			t.Errorf("Resolve = %v, %v; want %v, true", r.to, r.ok, deploy)
		}
	}
	wantGets(t, e, 3)
	if miss, errs := e.metric(t, "lookups_total", "result", "miss"), e.metric(t, "lookups_total", "result", "error"); miss != 3 || errs != 0 {
		t.Errorf("lookups_total miss=%v error=%v; want 3 and 0", miss, errs)
	}
}

// TestCallerGivingUpDoesNotCancelTheRequest: a caller whose context ends
// while it waits gets an error at once, not a guess; the request goes on
// for whoever else waits, and its answer is cached.
func TestCallerGivingUpDoesNotCancelTheRequest(t *testing.T) {
	e := newEnv(t, nil, deploymentChain()...)
	g := newGate(t, e, "pods")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	impatient := make(chan error, 1)
	go func() {
		_, _, err := e.cache.Resolve(ctx, pod1, nil)
		impatient <- err
	}()
	g.waitEntered(t)
	patient := make(chan v1alpha1.TargetRef, 1)
	go func() {
		to, _ := e.resolve(t, pod1)
		patient <- to
	}()
	waitFor(t, "the second caller to join the request", func() bool {
		return e.metric(t, "lookups_total", "result", "shared") == 1
	})

	cancel()
	if err := <-impatient; !errors.Is(err, owner.ErrUnresolved) || !errors.Is(err, context.Canceled) {
		t.Errorf("impatient caller got error %v; want ErrUnresolved and context.Canceled", err)
	}
	if n := e.metric(t, "errors_total", "reason", "canceled"); n != 1 {
		t.Errorf("errors_total{reason=canceled} = %v; want 1", n)
	}
	g.open()
	if to := <-patient; to != deploy {
		t.Errorf("patient caller got %v; want %v", to, deploy)
	}
	mustResolve(t, e, pod1, deploy, true)
	want := []string{"pods shop/web-abc-1", "replicasets shop/web-abc", "deployments shop/web"}
	if gets := e.gets(); !slices.Equal(gets, want) {
		t.Errorf("requests = %q; want %q", gets, want)
	}
}

// TestMaxEntries: the cache holds at most MaxEntries objects and evicts the
// least recently used, not the oldest.
func TestMaxEntries(t *testing.T) {
	a, b, c := ref("v1", "Pod", ns, "a"), ref("v1", "Pod", ns, "b"), ref("v1", "Pod", ns, "c")
	e := newEnv(t, func(o *owner.Options) { o.MaxEntries = 2 },
		object("v1", "Pod", ns, "a", "uid-a"), object("v1", "Pod", ns, "b", "uid-b"), object("v1", "Pod", ns, "c", "uid-c"))
	for _, p := range []v1alpha1.TargetRef{a, b, c} { // c evicts a
		mustResolve(t, e, p, p, false)
	}
	wantGets(t, e, 3)
	mustResolve(t, e, b, b, false) // b is now the most recently used
	mustResolve(t, e, c, c, false)
	mustResolve(t, e, b, b, false)
	wantGets(t, e, 3)
	mustResolve(t, e, a, a, false) // evicts c, the least recently used
	wantGets(t, e, 4)
	mustResolve(t, e, b, b, false)
	wantGets(t, e, 4)
	mustResolve(t, e, c, c, false)
	wantGets(t, e, 5)
	want := []string{"pods shop/a", "pods shop/b", "pods shop/c", "pods shop/a", "pods shop/c"}
	if gets := e.gets(); !slices.Equal(gets, want) {
		t.Errorf("requests = %q; want %q", gets, want)
	}
	if n := e.metric(t, "cache_evictions_total", "", ""); n != 3 {
		t.Errorf("cache_evictions_total = %v; want 3", n)
	}
}

// hangingClient is an API server that accepts every get and never answers:
// only the request's context ends it.
type hangingClient struct {
	metadata.Getter // nil: only Get is called

	mu          sync.Mutex
	gets        int
	hadDeadline bool
}

func (h *hangingClient) Resource(schema.GroupVersionResource) metadata.Getter { return h }
func (h *hangingClient) Namespace(string) metadata.ResourceInterface          { return h }
func (h *hangingClient) Get(ctx context.Context, _ string, _ metav1.GetOptions, _ ...string) (*metav1.PartialObjectMetadata, error) {
	_, ok := ctx.Deadline()
	h.mu.Lock()
	h.gets++
	h.hadDeadline = ok
	h.mu.Unlock()
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestRequestTimeout: a request that hangs ends at RequestTimeout (the
// caller's own context has no deadline) and Resolve fails with a timeout,
// not a fallback; the failure is remembered for ErrorTTL, and then the
// object is asked for again.
func TestRequestTimeout(t *testing.T) {
	hc := &hangingClient{}
	reg := prometheus.NewRegistry()
	e := &env{reg: reg}
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c, err := owner.New(hc, owner.Options{Cluster: cluster, RequestTimeout: 10 * time.Millisecond, Clock: clk, Registerer: reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	resolve := func() {
		t.Helper()
		got, ok, err := c.Resolve(context.Background(), pod1, nil)
		var le *owner.LookupError
		if !errors.Is(err, owner.ErrUnresolved) || !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &le) {
			t.Fatalf("Resolve error = %v; want a *LookupError wrapping ErrUnresolved and context.DeadlineExceeded", err)
		}
		if le.Reason != "timeout" || le.Kind != "Pod" || le.Namespace != ns || le.Name != pod1.Name {
			t.Errorf("LookupError = %+v; want reason timeout about Pod %s/%s", le, ns, pod1.Name)
		}
		if got != pod1 || ok {
			t.Errorf("Resolve = %v, %v; want the object itself and false along with the error", got, ok)
		}
	}
	gets := func() int {
		hc.mu.Lock()
		defer hc.mu.Unlock()
		return hc.gets
	}
	resolve()
	resolve()
	if n := gets(); n != 1 {
		t.Errorf("gets = %d; want 1 (the failure is remembered)", n)
	}
	clk.Step(owner.DefaultErrorTTL)
	resolve()
	if n := gets(); n != 2 {
		t.Errorf("gets = %d after ErrorTTL; want 2", n)
	}
	hc.mu.Lock()
	if !hc.hadDeadline {
		t.Error("the request had no deadline")
	}
	hc.mu.Unlock()
	if n := e.metric(t, "errors_total", "reason", "timeout"); n != 3 {
		t.Errorf("errors_total{reason=timeout} = %v; want 3", n)
	}
	if n := e.metric(t, "resolves_total", "outcome", "fallback"); n != 0 {
		t.Errorf("resolves_total{outcome=fallback} = %v; want 0", n)
	}
}

func TestNewValidates(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		name string
		opts owner.Options
		want string
	}{
		{"no cluster", owner.Options{}, "cluster is required"},
		{"negative TTL", owner.Options{Cluster: cluster, TTL: -time.Second, NegativeTTL: time.Second}, "TTL -1s"},
		{"negative negative TTL", owner.Options{Cluster: cluster, NegativeTTL: -time.Second}, "negative TTL -1s"},
		{"TTL too short for a default negative TTL", owner.Options{Cluster: cluster, TTL: 2}, "negative TTL 0s"},
		{"negative max entries", owner.Options{Cluster: cluster, MaxEntries: -1}, "max entries -1"},
		{"negative error TTL", owner.Options{Cluster: cluster, ErrorTTL: -time.Second}, "error TTL -1s"},
		{"negative resolution TTL", owner.Options{Cluster: cluster, ResolutionTTL: -time.Second}, "resolution TTL -1s"},
		{"negative request timeout", owner.Options{Cluster: cluster, RequestTimeout: -time.Second}, "request timeout -1s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := owner.New(e.client, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New error = %v; want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := owner.New(nil, owner.Options{Cluster: cluster}); err == nil {
		t.Error("New(nil client) succeeded")
	}
}

// TestSharedRegistry: Caches with the same MetricsNamespace share their
// collectors on one registry; a conflicting collector is an error.
func TestSharedRegistry(t *testing.T) {
	e := newEnv(t, nil, deploymentChain()...)
	other, err := owner.New(e.client, owner.Options{Cluster: cluster, Registerer: e.reg})
	if err != nil {
		t.Fatalf("second New on the same registry: %v", err)
	}
	mustResolve(t, e, pod1, deploy, true)
	if got, ok, err := other.Resolve(context.Background(), pod2, nil); got != deploy || !ok || err != nil {
		t.Fatalf("Resolve = %v, %v, %v", got, ok, err)
	}
	if n := e.metric(t, "resolves_total", "outcome", "owner"); n != 2 {
		t.Errorf("resolves_total{outcome=owner} = %v; want 2 (both Caches)", n)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "leasehold_owner_lookups_total", Help: "in the way"}))
	if _, err := owner.New(e.client, owner.Options{Cluster: cluster, Registerer: reg}); err == nil {
		t.Error("New with a conflicting collector succeeded")
	}
}

func TestStaticFuncAndIdentity(t *testing.T) {
	s := owner.Static{pod1: deploy}
	ctx := context.Background()
	if got, ok, err := s.Resolve(ctx, pod1, nil); got != deploy || !ok || err != nil {
		t.Errorf("Static.Resolve(mapped) = %v, %v, %v", got, ok, err)
	}
	if got, ok, err := s.Resolve(ctx, pod2, nil); got != pod2 || ok || err != nil {
		t.Errorf("Static.Resolve(unmapped) = %v, %v, %v", got, ok, err)
	}
	if got, ok, err := (owner.Identity{}).Resolve(ctx, pod1, nil); got != pod1 || ok || err != nil {
		t.Errorf("Identity.Resolve = %v, %v, %v", got, ok, err)
	}
	f := owner.Func(func(_ context.Context, obj v1alpha1.TargetRef, labels map[string]string) (v1alpha1.TargetRef, bool, error) {
		return obj, false, fmt.Errorf("%w: %s", owner.ErrUnresolved, labels["why"])
	})
	if _, _, err := f.Resolve(ctx, pod1, map[string]string{"why": "test"}); !errors.Is(err, owner.ErrUnresolved) || err.Error() != "owner unresolved: test" {
		t.Errorf("Func.Resolve error = %v", err)
	}
}
