//go:build integration

package dedup_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/dedup"
	"github.com/leasehold/leasehold/gateway/signal"
	"github.com/leasehold/leasehold/internal/controlplane"
	"github.com/leasehold/leasehold/lease"
)

var (
	cp     *controlplane.ControlPlane
	scheme = runtime.NewScheme()
)

func TestMain(m *testing.M) {
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	os.Exit(controlplane.Run(m, controlplane.Options{}, func(c *controlplane.ControlPlane) error {
		cp = c
		return nil
	}))
}

// replica is one gateway's deduplication stack: its own API clients,
// Locker (identity) and Recorder, as in a separate process.
type replica struct {
	rec    *dedup.Recorder
	locker *lease.Locker
	calls  *callCounter
}

// callCounter counts API requests by method, lease and RR traffic alike.
type callCounter struct {
	next  http.RoundTripper
	total atomic.Int64
}

func (c *callCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	c.total.Add(1)
	return c.next.RoundTrip(req)
}

// newNamespace creates a namespace of its own for one test, so that the
// tests' requests and Leases never meet.
func newNamespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("dedup-%d", time.Now().UnixNano()%1e9)
	if err := cp.CreateNamespace(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	return name
}

func newReplica(t *testing.T, ns, identity string, mode dedup.LockMode) *replica {
	t.Helper()
	calls := &callCounter{}
	cfg := rest.CopyConfig(cp.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		calls.next = rt
		return calls
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	locker, err := lease.New(cs.CoordinationV1(), lease.Options{Namespace: ns, Identity: identity, Prefix: "gw-lock"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { locker.Close() })
	rec, err := dedup.New(c, locker, dedup.Options{Namespace: ns, Identity: identity, Lock: mode})
	if err != nil {
		t.Fatal(err)
	}
	return &replica{rec: rec, locker: locker, calls: calls}
}

func incidentFor(i int) dedup.Incident {
	target := v1alpha1.TargetRef{Cluster: "local", APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: fmt.Sprintf("svc-%d", i)}
	return dedup.Incident{
		Fingerprint:  dedup.Fingerprint(target),
		Target:       target,
		SignalTarget: target,
		Signal:       signal.Signal{Source: v1alpha1.SourceAlertmanager, Name: "HighErrorRate", Target: target},
		ReceivedAt:   time.Now(),
	}
}

// storm records signals concurrently, signal i for incident i%incidents on
// replica i%len(replicas), and returns the outcomes per incident.
func storm(t *testing.T, replicas []*replica, signals, incidents int) (created, duplicate []int) {
	t.Helper()
	created, duplicate = make([]int, incidents), make([]int, incidents)
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	start := make(chan struct{})
	for i := range signals {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := replicas[i%len(replicas)].rec.Record(ctx, incidentFor(i%incidents))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Errorf("signal %d: %v", i, err)
			case res.Outcome == dedup.Created:
				created[i%incidents]++
			default:
				duplicate[i%incidents]++
			}
		}()
	}
	close(start)
	wg.Wait()
	return created, duplicate
}

// checkRequests asserts exactly one request per incident with the exact
// count.
func checkRequests(t *testing.T, ns string, incidents int, want int64) {
	t.Helper()
	c, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	var list v1alpha1.RemediationRequestList
	if err := c.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	per := map[string][]v1alpha1.RemediationRequest{}
	for _, rr := range list.Items {
		per[rr.Spec.Fingerprint] = append(per[rr.Spec.Fingerprint], rr)
	}
	if len(per) != incidents || len(list.Items) != incidents {
		t.Fatalf("%d requests over %d fingerprints, want %d and %d", len(list.Items), len(per), incidents, incidents)
	}
	for i := range incidents {
		rrs := per[incidentFor(i).Fingerprint]
		if len(rrs) != 1 {
			t.Errorf("incident %d: %d requests", i, len(rrs))
			continue
		}
		if got := rrs[0].EffectiveDeduplication().OccurrenceCount; got != want {
			t.Errorf("incident %d: occurrenceCount %d, want %d", i, got, want)
		}
	}
}

func TestStormOfIdenticalSignalsOverThreeReplicas(t *testing.T) {
	for _, mode := range []dedup.LockMode{dedup.LockNone, dedup.LockUpdates, dedup.LockAll} {
		t.Run(string(mode), func(t *testing.T) {
			ns := newNamespace(t)
			replicas := []*replica{
				newReplica(t, ns, "gw-0", mode), newReplica(t, ns, "gw-1", mode), newReplica(t, ns, "gw-2", mode),
			}
			const signals = 100
			created, duplicate := storm(t, replicas, signals, 1)
			if created[0] != 1 || duplicate[0] != signals-1 {
				t.Fatalf("created %d duplicate %d, want 1 and %d", created[0], duplicate[0], signals-1)
			}
			checkRequests(t, ns, 1, signals)
			var calls int64
			for i, r := range replicas {
				t.Logf("replica %d: %d API calls", i, r.calls.total.Load())
				calls += r.calls.total.Load()
			}
			t.Logf("%s: %d API calls for %d signals (%.2f per signal)", mode, calls, signals, float64(calls)/signals)
			// Without coalescing every signal would cost at least a read
			// and a write; coalesced, a replica spends a handful of calls
			// per batch and the storm fits in a few batches.
			if calls >= signals {
				t.Errorf("%d API calls for %d signals: identical signals were not coalesced", calls, signals)
			}
		})
	}
}

func TestManySignalsOverTwentyFingerprints(t *testing.T) {
	ns := newNamespace(t)
	replicas := []*replica{
		newReplica(t, ns, "gw-0", dedup.LockNone), newReplica(t, ns, "gw-1", dedup.LockNone), newReplica(t, ns, "gw-2", dedup.LockNone),
	}
	const signals, incidents = 1000, 20
	created, duplicate := storm(t, replicas, signals, incidents)
	for i := range incidents {
		if created[i] != 1 || duplicate[i] != signals/incidents-1 {
			t.Errorf("incident %d: created %d duplicate %d", i, created[i], duplicate[i])
		}
	}
	checkRequests(t, ns, incidents, signals/incidents)
}

// loseAnswers passes requests to the API server and, for the first n
// writes that match, throws the answer away and reports a reset
// connection: the write was applied, the client cannot know.
type loseAnswers struct {
	next  http.RoundTripper
	match func(*http.Request) bool
	left  atomic.Int32
}

func (l *loseAnswers) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.next.RoundTrip(req)
	if err != nil || !l.match(req) || l.left.Add(-1) < 0 {
		return resp, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nil, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
}

// Writes applied by a real API server whose answers are lost are read
// back and found, through the CRD's schema (which must keep the write ids),
// so every signal is counted exactly once and acknowledged.
func TestLostAnswersAreCountedOnce(t *testing.T) {
	ns := newNamespace(t)
	for i, tc := range []struct {
		name  string
		match func(*http.Request) bool
	}{
		{"create", func(r *http.Request) bool {
			return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/remediationrequests")
		}},
		{"update", func(r *http.Request) bool {
			return r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/status")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lose := &loseAnswers{match: tc.match}
			lose.left.Store(1)
			cfg := rest.CopyConfig(cp.Config)
			cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
				lose.next = rt
				return lose
			}
			c, err := client.New(cfg, client.Options{Scheme: scheme})
			if err != nil {
				t.Fatal(err)
			}
			cs, err := kubernetes.NewForConfig(cp.Config)
			if err != nil {
				t.Fatal(err)
			}
			locker, err := lease.New(cs.CoordinationV1(), lease.Options{Namespace: ns, Identity: "gw-" + tc.name, Prefix: "gw-lock"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { locker.Close() })
			rec, err := dedup.New(c, locker, dedup.Options{Namespace: ns, Identity: "gw-" + tc.name, Logger: funcr.New(func(p, a string) { t.Log(p, a) }, funcr.Options{Verbosity: 2})})
			if err != nil {
				t.Fatal(err)
			}
			in := incidentFor(i) // one incident per subtest
			const signals = 3
			var last dedup.Result
			for i := range signals {
				res, err := rec.Record(context.Background(), in)
				if err != nil {
					t.Fatalf("signal %d: %v", i, err)
				}
				if want := int64(i + 1); res.OccurrenceCount != want || (i == 0) != (res.Outcome == dedup.Created) {
					t.Fatalf("signal %d: %+v, want count %d", i, res, want)
				}
				last = res
			}
			if lose.left.Load() >= 1 {
				t.Fatal("no answer was lost")
			}
			var rr v1alpha1.RemediationRequest
			if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: last.Name}, &rr); err != nil {
				t.Fatal(err)
			}
			d := rr.EffectiveDeduplication()
			if d.OccurrenceCount != signals {
				t.Fatalf("occurrenceCount = %d, want %d", d.OccurrenceCount, signals)
			}
			if len(d.RecentWrites) != signals-1 || !strings.HasPrefix(rr.Annotations[v1alpha1.AnnotationWriteID], "gw-"+tc.name+"/") ||
				slices.ContainsFunc(d.RecentWrites, func(id string) bool { return !strings.HasPrefix(id, "gw-"+tc.name+"/") }) {
				t.Fatalf("write ids: annotation %q, recent %v", rr.Annotations[v1alpha1.AnnotationWriteID], d.RecentWrites)
			}
		})
	}
}

// The API server refuses a ring longer than MaxRecentWrites.
func TestRecentWritesAreBounded(t *testing.T) {
	ns := newNamespace(t)
	c, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	in := incidentFor(0)
	rr := &v1alpha1.RemediationRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: dedup.Name("rr", in.Fingerprint, 1)},
		Spec:       dedup.RequestSpec(in),
	}
	rr.Spec.ReceivedAt = metav1.NewMicroTime(time.Now())
	if err := c.Create(context.Background(), rr); err != nil {
		t.Fatal(err)
	}
	d := rr.EffectiveDeduplication()
	for i := range v1alpha1.MaxRecentWrites + 1 {
		d.RecentWrites = append(d.RecentWrites, fmt.Sprintf("gw-0/00000000-%d", i))
	}
	rr.Status.Deduplication = &d
	err = c.Status().Update(context.Background(), rr)
	if !apierrors.IsInvalid(err) {
		t.Fatalf("update with %d recent writes: %v, want Invalid", len(d.RecentWrites), err)
	}
	var se *apierrors.StatusError
	if !errors.As(err, &se) || !strings.Contains(se.Error(), "recentWrites") {
		t.Errorf("error %v does not name recentWrites", err)
	}
}
