//go:build integration

package orchestrator_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/controlplane"
	"github.com/leasehold/leasehold/internal/kubeclient"
	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/orchestrator"
)

const ns = "leasehold-system"

var (
	cp     *controlplane.ControlPlane
	scheme *runtime.Scheme
	// admin plays everything that is not an orchestrator replica: the
	// gateway creating requests, the executor, the observer.
	admin      client.WithWatch
	adminCalls = newCallCounter()
	// logger is what the replicas log to: stderr with LEASEHOLD_TEST_V set
	// to a verbosity (0, 1, ...), else nothing.
	logger = logr.Discard()
)

func TestMain(m *testing.M) {
	if v, err := strconv.Atoi(os.Getenv("LEASEHOLD_TEST_V")); err == nil {
		logger = funcr.New(func(prefix, args string) {
			fmt.Fprintln(os.Stderr, time.Now().Format("15:04:05.000"), prefix, args)
		}, funcr.Options{Verbosity: v})
	}
	ctrllog.SetLogger(logger)
	code := controlplane.Run(m, controlplane.Options{Namespaces: []string{ns}}, func(c *controlplane.ControlPlane) error {
		cp = c
		scheme = runtime.NewScheme()
		if err := clientgoscheme.AddToScheme(scheme); err != nil {
			return err
		}
		if err := v1alpha1.AddToScheme(scheme); err != nil {
			return err
		}
		cfg, err := kubeclient.Configure(c.Config, kubeclient.Options{UserAgent: "orchestrator-test/admin"})
		if err != nil {
			return err
		}
		cfg.Wrap(adminCalls.wrap)
		admin, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme})
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

// names makes controller names unique in the process: controller-runtime
// refuses a name used before, even by a manager that has stopped.
var names atomic.Int64

// replica is one orchestrator: its own manager, clients, connections,
// Locker, registry and request counter, as a separate process would have.
type replica struct {
	identity string
	reg      *prometheus.Registry
	calls    *callCounter
	locker   *lease.Locker
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

type replicaConfig struct {
	// leaseDuration of this replica's Locker; default 5s.
	leaseDuration time.Duration
	// pause, if set, can black-hole this replica's Lease requests, as a
	// frozen process would stop renewing.
	pause *pauser
	// options adjusts the orchestrator Options.
	options func(*orchestrator.Options)
}

// startReplica starts a replica and stops it when the test ends.
func startReplica(t *testing.T, identity string, rc replicaConfig) *replica {
	t.Helper()
	r := &replica{identity: identity, reg: prometheus.NewRegistry(), calls: newCallCounter(), done: make(chan error, 1)}
	cfg, err := kubeclient.Configure(cp.Config, kubeclient.Options{UserAgent: "orchestrator-test/" + identity})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Wrap(r.calls.wrap)
	leaseCfg := rest.CopyConfig(cfg)
	if rc.pause != nil {
		leaseCfg.Wrap(rc.pause.wrap)
	}
	cs, err := kubernetes.NewForConfig(leaseCfg)
	if err != nil {
		t.Fatal(err)
	}
	if rc.leaseDuration == 0 {
		rc.leaseDuration = 5 * time.Second
	}
	r.locker, err = lease.New(cs.CoordinationV1(), lease.Options{
		Namespace:        ns,
		Identity:         identity,
		Prefix:           "ro-lock",
		MetricsNamespace: "orchestrator",
		LeaseDuration:    rc.leaseDuration,
		Registerer:       r.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 logger.WithName(identity),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := orchestrator.Options{
		Namespace:      ns,
		Identity:       identity,
		Locker:         r.locker,
		Registerer:     r.reg,
		ControllerName: fmt.Sprintf("rr-%s-%d", identity, names.Add(1)),
		Retention:      -1,
	}
	if rc.options != nil {
		rc.options(&opts)
	}
	if err := orchestrator.Setup(mgr, opts); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- mgr.Start(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop stops the manager, then closes the Locker. Idempotent.
func (r *replica) stop(t *testing.T) {
	r.stopOnce.Do(func() {
		r.cancel()
		if err := <-r.done; err != nil {
			t.Errorf("replica %s: %v", r.identity, err)
		}
		if err := r.locker.Close(); err != nil {
			t.Errorf("replica %s: close locker: %v", r.identity, err)
		}
	})
}

// metric sums the samples of a metric whose labels include the given
// name/value pairs: counters and gauges by value, histograms by count.
func (r *replica) metric(t *testing.T, name string, labelPairs ...string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labelPairs); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labelPairs[i] && lp.GetValue() == labelPairs[i+1] {
						found = true
					}
				}
				if !found {
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

// outcomes sums orchestrator_reconcile_total by controller/outcome over
// replicas, for the log.
func outcomes(t *testing.T, replicas []*replica) string {
	t.Helper()
	sum := map[string]float64{}
	for _, r := range replicas {
		mfs, err := r.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "orchestrator_reconcile_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				var k []string
				for _, lp := range m.GetLabel() {
					k = append(k, lp.GetValue())
				}
				sum[strings.Join(k, "/")] += m.GetCounter().GetValue()
			}
		}
	}
	keys := make([]string, 0, len(sum))
	for k := range sum {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%.0f ", k, sum[k])
	}
	return strings.TrimSpace(b.String())
}

// pauser black-holes requests while paused: they fail at once, as if the
// process had stopped sending them.
type pauser struct{ paused atomic.Bool }

var errPaused = errors.New("pauser: process paused")

func (p *pauser) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		if p.paused.Load() {
			return nil, errPaused
		}
		return rt.RoundTrip(req)
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// callCounter counts the HTTP requests a client sends, by verb and
// resource, once their response headers have arrived (a watch: once open).
type callCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func newCallCounter() *callCounter { return &callCounter{n: map[string]int{}} }

func (c *callCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		c.mu.Lock()
		c.n[describeRequest(req)]++
		c.mu.Unlock()
		return resp, err
	})
}

// describeRequest is "<verb> <resource>[/<subresource>]".
func describeRequest(req *http.Request) string {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	resource := path.Base(req.URL.Path)
	// .../namespaces/<ns>/<resource>[/<name>[/<subresource>]]
	for i := range parts {
		if parts[i] == "namespaces" && i+2 < len(parts) {
			rest := parts[i+2:]
			resource = rest[0]
			if len(rest) == 3 {
				resource += "/" + rest[2]
			}
			named := len(rest) >= 2
			return verbOf(req, named) + " " + resource
		}
	}
	return verbOf(req, false) + " " + resource
}

func verbOf(req *http.Request, named bool) string {
	switch req.Method {
	case http.MethodGet:
		if w := req.URL.Query().Get("watch"); w == "true" || w == "1" {
			return "watch"
		}
		if named {
			return "get"
		}
		return "list"
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	}
	return strings.ToLower(req.Method)
}

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

func (cs calls) total() int {
	n := 0
	for _, v := range cs {
		n += v
	}
	return n
}

func (cs calls) add(o calls) calls {
	out := calls{}
	for k, v := range cs {
		out[k] += v
	}
	for k, v := range o {
		out[k] += v
	}
	return out
}

func (cs calls) String() string {
	keys := make([]string, 0, len(cs))
	for k := range cs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, cs[k])
	}
	return strings.TrimSpace(b.String())
}

// apiServerRequests sums apiserver_request_total over all series, from the
// API server's own /metrics: every request any client sent.
func apiServerRequests(t *testing.T) float64 {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("apiserver /metrics: %v", err)
	}
	var sum float64
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("parse %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// ctxTimeout is a context that ends after d or with the test.
func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds or d passes. It waits for a state the
// system reaches; it never stands in for a timing assertion.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	if err := poll(context.Background(), d, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// poll is waitFor for goroutines other than the test's: it returns an
// error instead of failing the test.
func poll(ctx context.Context, d time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// clusters makes each test's targets its own: executions are never
// deleted, so a target reused by a later run (-count) would start at a
// higher sequence.
var clusters atomic.Int64

// newCluster returns a cluster name no other test of this process uses.
func newCluster() string { return fmt.Sprintf("cluster-%d-%d", os.Getpid(), clusters.Add(1)) }

// target returns the Node target name in cluster.
func target(cluster, name string) v1alpha1.TargetRef {
	return v1alpha1.TargetRef{Cluster: cluster, APIVersion: "v1", Kind: "Node", Name: name}
}

// newRequest is a request as the gateway creates it: labelled, with
// receivedAt as given. The status subresource drops any status on create.
func newRequest(name string, t v1alpha1.TargetRef, receivedAt time.Time) *v1alpha1.RemediationRequest {
	fp := fmt.Sprintf("%064x", []byte(name))
	fp = fp[len(fp)-64:]
	return &v1alpha1.RemediationRequest{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: ns,
			Labels: map[string]string{
				v1alpha1.LabelTarget:      v1alpha1.TargetLabelValue(t),
				v1alpha1.LabelFingerprint: v1alpha1.FingerprintLabelValue(fp),
			},
		},
		Spec: v1alpha1.RemediationRequestSpec{
			Fingerprint:  fp,
			SignalName:   "NodeNotReady",
			Severity:     "critical",
			Source:       v1alpha1.SourceAlertmanager,
			Target:       t,
			SignalTarget: t,
			ReceivedAt:   metav1.NewMicroTime(receivedAt),
		},
	}
}

// createRequest creates rr and deletes it at the end of the test (the
// finalizer is removed first if a replica left it).
func createRequest(t *testing.T, rr *v1alpha1.RemediationRequest) {
	t.Helper()
	if err := admin.Create(ctxTimeout(t, 10*time.Second), rr); err != nil {
		t.Fatalf("create request %s: %v", rr.Name, err)
	}
	key := client.ObjectKeyFromObject(rr)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var cur v1alpha1.RemediationRequest
		if err := admin.Get(ctx, key, &cur); err != nil {
			return
		}
		if len(cur.Finalizers) > 0 {
			_ = admin.Patch(ctx, &cur, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))
		}
		_ = admin.Delete(ctx, &cur)
	})
}

func getRequest(ctx context.Context, name string) (*v1alpha1.RemediationRequest, error) {
	var rr v1alpha1.RemediationRequest
	err := admin.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &rr)
	return &rr, err
}

// requestsOf lists the requests of target t from the API server.
func requestsOf(ctx context.Context, t v1alpha1.TargetRef) ([]v1alpha1.RemediationRequest, error) {
	var l v1alpha1.RemediationRequestList
	err := admin.List(ctx, &l, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelTarget: v1alpha1.TargetLabelValue(t)})
	return l.Items, err
}

// executionsOf lists the executions of target t from the API server.
func executionsOf(ctx context.Context, t v1alpha1.TargetRef) ([]v1alpha1.WorkflowExecution, error) {
	var l v1alpha1.WorkflowExecutionList
	err := admin.List(ctx, &l, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelTarget: v1alpha1.TargetLabelValue(t)})
	return l.Items, err
}

// setExecutionPhase sets an execution's phase as the executor would.
func setExecutionPhase(ctx context.Context, name string, phase v1alpha1.WorkflowPhase) error {
	w := &v1alpha1.WorkflowExecution{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	stamp := "startedAt"
	if phase.IsTerminal() {
		stamp = "completedAt"
	}
	patch := fmt.Sprintf(`{"status":{"phase":%q,"reason":%q,%q:%q}}`, phase, phase, stamp, time.Now().UTC().Format(time.RFC3339))
	return admin.Status().Patch(ctx, w, client.RawPatch(types.MergePatchType, []byte(patch)))
}

// wfeEvent is one change of an execution as the watcher saw it.
type wfeEvent struct {
	at      time.Time // when the watcher received it (monotonic)
	typ     watch.EventType
	name    string
	target  string // target label
	seq     int64
	request string
	phase   v1alpha1.WorkflowPhase
}

// watcher records every change of every execution in the namespace, in
// the API server's order, and checks on each one that no target has more
// than one non-terminal execution. Executions that appear non-terminal are
// also passed to onActive (in a goroutine of the watcher's own, in order).
type watcher struct {
	t        *testing.T
	mu       sync.Mutex
	phases   map[string]map[string]v1alpha1.WorkflowPhase // target label -> name -> phase
	events   []wfeEvent
	bad      []string
	maxSeen  map[string]int
	active   chan v1alpha1.WorkflowExecution
	stopped  chan struct{}
	cancel   context.CancelFunc
	onActive func(v1alpha1.WorkflowExecution)
}

// startWatcher starts watching from the current state, which it reads
// first (existing executions count for the invariant too).
func startWatcher(t *testing.T, onActive func(v1alpha1.WorkflowExecution)) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{
		t: t, phases: map[string]map[string]v1alpha1.WorkflowPhase{}, maxSeen: map[string]int{},
		active: make(chan v1alpha1.WorkflowExecution, 1000), stopped: make(chan struct{}), cancel: cancel, onActive: onActive,
	}
	var list v1alpha1.WorkflowExecutionList
	if err := admin.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		w.record(watch.Added, &list.Items[i], false)
	}
	wi, err := admin.Watch(ctx, &v1alpha1.WorkflowExecutionList{}, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
	if err != nil {
		t.Fatal(err)
	}
	var execDone sync.WaitGroup
	execDone.Add(1)
	go func() {
		defer execDone.Done()
		for wfe := range w.active {
			if w.onActive != nil {
				w.onActive(wfe)
			}
		}
	}()
	go func() {
		defer close(w.stopped)
		defer func() { close(w.active); execDone.Wait() }()
		defer wi.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-wi.ResultChan():
				if !ok {
					if ctx.Err() == nil {
						w.fail("the watch closed before the test ended")
					}
					return
				}
				switch ev.Type {
				case watch.Added, watch.Modified, watch.Deleted:
					w.record(ev.Type, ev.Object.(*v1alpha1.WorkflowExecution), true)
				case watch.Error:
					w.fail(fmt.Sprintf("watch error: %v", ev.Object))
				}
			}
		}
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *watcher) fail(msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.bad = append(w.bad, msg)
}

func (w *watcher) record(typ watch.EventType, obj *v1alpha1.WorkflowExecution, live bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	label := obj.Labels[v1alpha1.LabelTarget]
	ph := w.phases[label]
	if ph == nil {
		ph = map[string]v1alpha1.WorkflowPhase{}
		w.phases[label] = ph
	}
	prev, existed := ph[obj.Name]
	if typ == watch.Deleted {
		delete(ph, obj.Name)
	} else {
		ph[obj.Name] = obj.EffectivePhase()
	}
	active := 0
	var names []string
	for n, p := range ph {
		if !p.IsTerminal() {
			active++
			names = append(names, n)
		}
	}
	w.maxSeen[label] = max(w.maxSeen[label], active)
	if active > 1 {
		sort.Strings(names)
		w.bad = append(w.bad, fmt.Sprintf("%d non-terminal executions on target %s at once after %s %s: %v", active, label, typ, obj.Name, names))
	}
	w.events = append(w.events, wfeEvent{at: time.Now(), typ: typ, name: obj.Name, target: label, seq: obj.Spec.Sequence,
		request: obj.Spec.RemediationRequestRef.Name, phase: obj.EffectivePhase()})
	if live && typ != watch.Deleted && !obj.IsTerminal() && (!existed || prev.IsTerminal()) {
		w.active <- *obj.DeepCopy()
	}
}

// stop ends the watch and reports violations. Idempotent.
func (w *watcher) stop() {
	w.cancel()
	<-w.stopped
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, b := range w.bad {
		w.t.Errorf("watcher: %s", b)
	}
	w.bad = nil
}

// eventsOf returns the recorded events for target label.
func (w *watcher) eventsOf(label string) []wfeEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []wfeEvent
	for _, e := range w.events {
		if e.target == label {
			out = append(out, e)
		}
	}
	return out
}

// maxActive is the largest number of non-terminal executions seen at once
// on target label.
func (w *watcher) maxActive(label string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxSeen[label]
}

// handoffs returns, for each execution of the target after the first, the
// time from the previous execution's terminal update to its creation, as
// the watcher saw them.
func handoffs(evs []wfeEvent) []time.Duration {
	var out []time.Duration
	var finished time.Time
	for _, e := range evs {
		switch {
		case e.typ == watch.Modified && e.phase.IsTerminal() && finished.IsZero():
			finished = e.at
		case e.typ == watch.Added && !finished.IsZero():
			out = append(out, e.at.Sub(finished))
			finished = time.Time{}
		}
	}
	return out
}

// percentile returns the p-th percentile (0..100) of ds by nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	idx := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(idx, len(s)-1))]
}

// blockedBy reports whether rr is Blocked, reason ResourceBusy, naming
// execution name, with the condition saying so.
func blockedBy(rr *v1alpha1.RemediationRequest, name string) bool {
	c := meta.FindStatusCondition(rr.Status.Conditions, orchestrator.ConditionBlocked)
	return rr.Status.Phase == v1alpha1.PhaseBlocked && rr.Status.BlockReason == v1alpha1.BlockReasonResourceBusy &&
		rr.Status.BlockedBy == name && c != nil && c.Status == metav1.ConditionTrue && c.Reason == orchestrator.ReasonResourceBusy
}
