//go:build integration

package lease_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/leasehold/leasehold/internal/controlplane"
	"github.com/leasehold/leasehold/lease"
)

const ns = "leasehold-system"

var (
	cp *controlplane.ControlPlane
	// admin plays everything that is not a Locker: a crashed holder, an
	// intruder, an inspector.
	admin kubernetes.Interface
)

// TestMain starts one control plane for the package (the unit tests run
// too under the integration tag) and then checks, like the unit TestMain,
// that no goroutine is left. It needs no exceptions: every replica closes
// its own connections, and the connections of the admin client and of the
// harness end when the control plane stops, before the check.
func TestMain(m *testing.M) {
	code := controlplane.Run(m, controlplane.Options{Namespaces: []string{ns}}, func(c *controlplane.ControlPlane) error {
		cp = c
		var err error
		admin, err = kubernetes.NewForConfig(c.Config)
		return err
	})
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left after all tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// ctxTimeout is a test context with a deadline that ends with the test.
func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// replica is one Locker with its own clientset, connections, request
// counter and metrics registry: what a separate process would have.
type replica struct {
	identity string
	locker   *lease.Locker
	reg      *prometheus.Registry
	calls    *callCounter
	conns    *connTracker

	closeOnce sync.Once
}

// newReplica makes a replica and closes it at the end of the test. opts
// gets the namespace, identity and registry filled in.
func newReplica(t testing.TB, identity string, opts lease.Options) *replica {
	t.Helper()
	r := &replica{identity: identity, reg: prometheus.NewRegistry(), calls: newCallCounter(), conns: &connTracker{}}
	cfg := rest.CopyConfig(cp.Config)
	cfg.Wrap(r.calls.wrap)
	// A dialer of its own keeps this clientset out of client-go's shared
	// transport cache: separate connections, like a separate process, and
	// connections the test can close so that leak checks need no
	// exceptions for them.
	cfg.Dial = r.conns.dial
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	opts.Namespace = ns
	opts.Identity = identity
	opts.Registerer = r.reg
	if r.locker, err = lease.New(cs.CoordinationV1(), opts); err != nil {
		t.Fatalf("lease.New(%s): %v", identity, err)
	}
	t.Cleanup(func() {
		if err := r.close(); err != nil {
			t.Errorf("close %s: %v", identity, err)
		}
	})
	return r
}

// close closes the Locker, then the replica's connections. Idempotent.
func (r *replica) close() error {
	var err error
	r.closeOnce.Do(func() {
		err = r.locker.Close()
		r.conns.closeAll()
	})
	return err
}

// metric sums the samples of <leasehold>_lock_<name> whose labels include
// the given name/value pairs: counter and gauge values, histogram counts.
// A vector has no series until first used, which reads as zero.
func (r *replica) metric(t testing.TB, name string, labelPairs ...string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	full := "leasehold_lock_" + name
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != full {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labelPairs); i += 2 {
				match := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labelPairs[i] && lp.GetValue() == labelPairs[i+1] {
						match = true
					}
				}
				if !match {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// waitFor polls cond every few milliseconds until it holds or d passes.
// It waits for a state another goroutine reaches (a waiter queued, a watch
// open); it never stands in for a timing assertion.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// callCounter counts the HTTP requests a clientset sends, by Kubernetes
// verb, once their response headers have arrived (for a watch: once it is
// open). Counting on the wire, not on the client interface, shows the real
// cost, including anything client-go might add.
type callCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func newCallCounter() *callCounter { return &callCounter{n: make(map[string]int)} }

func (c *callCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		c.mu.Lock()
		c.n[verbOf(req)]++
		c.mu.Unlock()
		return resp, err
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func verbOf(req *http.Request) string {
	collection := path.Base(req.URL.Path) == "leases"
	switch req.Method {
	case http.MethodGet:
		switch {
		case req.URL.Query().Get("watch") == "true" || req.URL.Query().Get("watch") == "1":
			return "watch"
		case collection:
			return "list"
		}
		return "get"
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		if collection {
			return "deletecollection"
		}
		return "delete"
	}
	return strings.ToLower(req.Method)
}

// calls is a snapshot of the counts.
type calls map[string]int

func (c *callCounter) snapshot() calls {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := make(calls, len(c.n))
	for k, v := range c.n {
		s[k] = v
	}
	return s
}

func (c *callCounter) get(verb string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[verb]
}

// since returns the requests sent after the snapshot before.
func (c *callCounter) since(before calls) calls {
	now := c.snapshot()
	d := make(calls)
	for k, v := range now {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

func (cs calls) total() int {
	n := 0
	for _, v := range cs {
		n += v
	}
	return n
}

func (cs calls) String() string {
	keys := make([]string, 0, len(cs))
	for k := range cs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, cs[k]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// connTracker dials TCP connections and remembers them so they can be
// closed when the replica goes away.
type connTracker struct {
	mu    sync.Mutex
	conns []net.Conn
	d     net.Dialer
}

func (c *connTracker) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.conns = append(c.conns, conn)
	c.mu.Unlock()
	return conn, nil
}

func (c *connTracker) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		_ = conn.Close()
	}
	c.conns = nil
}

// handMadeLease is a Lease labelled exactly as a Locker with this prefix
// writes it, for a holder that is not a live Locker (a crashed one).
func handMadeLease(prefix, key, holder string, durationSeconds int32) *coordinationv1.Lease {
	now := metav1.NewMicroTime(time.Now())
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name:        lease.LeaseName(prefix, key),
			Namespace:   ns,
			Labels:      map[string]string{lease.LabelManagedBy: lease.ManagedByValue, lease.LabelPrefix: prefix},
			Annotations: map[string]string{lease.AnnotationKey: key},
		},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(holder),
			LeaseDurationSeconds: ptr.To(durationSeconds),
			AcquireTime:          &now,
			RenewTime:            now.DeepCopy(),
			LeaseTransitions:     ptr.To[int32](0),
		},
	}
}

// getLease reads a Lease through the admin client; nil if it does not exist.
func getLease(t testing.TB, name string) *coordinationv1.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := admin.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		t.Fatalf("get lease %s: %v", name, err)
	}
	return l
}

// mustCompare compares two tokens, failing the test on malformed ones.
func mustCompare(t testing.TB, a, b lease.Token) int {
	t.Helper()
	c, err := a.Compare(b)
	if err != nil {
		t.Fatalf("compare %s and %s: %v", a, b, err)
	}
	return c
}

// percentile returns the p-th percentile (0..100) of ds by nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	idx := int(math.Ceil(p/100*float64(len(s)))) - 1
	idx = max(0, min(idx, len(s)-1))
	return s[idx]
}

// leaseSummary is the part of a Lease the assertions look at, printable.
func leaseSummary(l *coordinationv1.Lease) string {
	if l == nil {
		return "<absent>"
	}
	deref := func(p *int32) any {
		if p == nil {
			return "<nil>"
		}
		return *p
	}
	holder := "<nil>"
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	return fmt.Sprintf("{name=%s rv=%s uid=%s holder=%s duration=%v transitions=%v acquireTime=%v renewTime=%v}",
		l.Name, l.ResourceVersion, l.UID, holder, deref(l.Spec.LeaseDurationSeconds), deref(l.Spec.LeaseTransitions),
		l.Spec.AcquireTime, l.Spec.RenewTime)
}

// createLease creates l through the admin client and deletes it (whatever
// it has become) when the test ends, so that repeated runs (-count) start
// clean.
func createLease(t testing.TB, l *coordinationv1.Lease) *coordinationv1.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	created, err := admin.CoordinationV1().Leases(ns).Create(ctx, l, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create lease %s: %v", l.Name, err)
	}
	deleteAtEnd(t, l.Name)
	return created
}

// deleteAtEnd removes the Lease when the test ends, if it is still there.
func deleteAtEnd(t testing.TB, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := admin.CoordinationV1().Leases(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("cleanup: delete lease %s: %v", name, err)
		}
	})
}

// intrude rewrites the holder of a Lease the way another process that
// took it over would: an Update on the current resourceVersion, retried
// if the holder's renewal wins the race.
func intrude(t testing.TB, name, holder string) *coordinationv1.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leases := admin.CoordinationV1().Leases(ns)
	for try := 0; try < 10; try++ {
		cur, err := leases.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("intrude: get %s: %v", name, err)
		}
		cur.Spec.HolderIdentity = ptr.To(holder)
		cur.Spec.LeaseTransitions = ptr.To(ptr.Deref(cur.Spec.LeaseTransitions, 0) + 1)
		updated, err := leases.Update(ctx, cur, metav1.UpdateOptions{})
		if err == nil {
			deleteAtEnd(t, name)
			return updated
		}
		if !apierrors.IsConflict(err) {
			t.Fatalf("intrude: update %s: %v", name, err)
		}
	}
	t.Fatalf("intrude: %s kept changing", name)
	return nil
}
