package lease

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/fake"
)

func TestNewValidatesOptions(t *testing.T) {
	ok := Options{Namespace: "ns", Identity: "pod"}
	cs := fake.NewClientset().CoordinationV1()
	tests := []struct {
		name   string
		mod    func(*Options)
		substr string
	}{
		{"no namespace", func(o *Options) { o.Namespace = "" }, "namespace is required"},
		{"no identity", func(o *Options) { o.Identity = "" }, "identity is required"},
		{"bad prefix", func(o *Options) { o.Prefix = "GW_lock" }, "prefix"},
		{"long prefix", func(o *Options) { o.Prefix = strings.Repeat("a", 31) }, "longer than 30"},
		{"duration too short for renew+margin", func(o *Options) {
			o.LeaseDuration, o.RenewInterval, o.SafetyMargin = 10*time.Second, 8*time.Second, 2*time.Second
		}, "must be greater than renew interval"},
		{"sub-second duration", func(o *Options) { o.LeaseDuration = 500 * time.Millisecond }, "at least 1s"},
		{"negative lock delay", func(o *Options) { o.LockDelay = -time.Second }, "lock delay"},
		{"reserved label", func(o *Options) { o.Labels = map[string]string{LabelPrefix: "x"} }, "reserved"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.mod(&o)
			_, err := New(cs, o)
			if err == nil || !strings.Contains(err.Error(), tc.substr) {
				t.Fatalf("err = %v, want %q", err, tc.substr)
			}
		})
	}
	l, err := New(cs, ok)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	o := l.opts
	if o.Prefix != "lock" || o.LeaseDuration != 30*time.Second || o.RenewInterval != 10*time.Second ||
		o.SafetyMargin != 3*time.Second || o.RequestTimeout != 5*time.Second || o.ReleaseTimeout != 5*time.Second ||
		o.MaxLocalHandoffs != 8 || o.Backoff == nil || o.Clock == nil || o.MetricsNamespace != "leasehold" {
		t.Fatalf("defaults: %+v", o)
	}
	if _, err := New(nil, ok); err == nil {
		t.Fatal("nil client accepted")
	}
}

func TestLeaseName(t *testing.T) {
	long := strings.Repeat("x", 1000)
	for _, prefix := range []string{"lock", "gw-lock", strings.Repeat("p", 30)} {
		for _, key := range []string{"a", "Node/worker-1", long, "ünïcode key/with spaces"} {
			n := LeaseName(prefix, key)
			if msgs := validation.IsDNS1123Label(n); len(msgs) > 0 {
				t.Errorf("LeaseName(%q, %q) = %q: %v", prefix, key, n, msgs)
			}
			if len(n)-len(prefix)-1 < 32 {
				t.Errorf("%q keeps fewer than 128 bits of hash", n)
			}
			if n != LeaseName(prefix, key) {
				t.Error("not deterministic")
			}
		}
	}
	if LeaseName("p", long+"1") == LeaseName("p", long+"2") {
		t.Fatal("keys differing only past a truncation point collide")
	}
}

func TestToken(t *testing.T) {
	a, err := ParseToken("999")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ParseToken("1000")
	if c, err := a.Compare(b); err != nil || c != -1 {
		t.Fatalf("999 vs 1000 = %d, %v", c, err)
	}
	if c, _ := b.Compare(b); c != 0 {
		t.Fatal("equal")
	}
	if _, err := ParseToken("01"); err == nil {
		t.Fatal("malformed token accepted")
	}
	if _, err := (Token{}).Compare(a); err == nil || !(Token{}).IsZero() {
		t.Fatal("zero token compared")
	}
	if b.String() != "1000" {
		t.Fatal(b.String())
	}
}

func TestSweep(t *testing.T) {
	e := newEnv(t)
	l := e.locker("pod-a")
	ctx := context.Background()
	if _, err := l.Sweep(ctx, time.Second); err == nil {
		t.Fatal("idle shorter than the lease duration accepted")
	}
	mine, err := l.TryAcquire(ctx, "mine")
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Release(ctx)
	e.foreign("crashed", "pod-dead/1")
	e.foreign("alive", "pod-b/1")
	other := e.foreign("other-prefix", "pod-c/1")
	other.Labels[LabelPrefix] = "ro-lock"
	e.srv.Put(other)

	if n, err := l.Sweep(ctx, time.Minute); err != nil || n != 0 {
		t.Fatalf("first sweep deleted %d, %v: it must only observe", n, err)
	}
	// Advance 50s in renewal steps so the held lock stays held.
	for i := 1; i <= 5; i++ {
		e.waitersAtLeast(2)
		e.clk.Step(10 * time.Second)
		want := t0.Add(time.Duration(i)*10*time.Second + 27*time.Second)
		eventually(t, "renewal", func() bool { return mine.SafeDeadline().Equal(want) })
	}
	e.waitersAtLeast(2)
	e.clk.Step(10*time.Second - time.Nanosecond)
	e.foreign("alive", "pod-b/1") // renewed
	if n, _ := l.Sweep(ctx, time.Minute); n != 0 {
		t.Fatalf("deleted %d before idle", n)
	}
	e.clk.Step(time.Nanosecond)
	n, err := l.Sweep(ctx, time.Minute)
	if err != nil || n != 1 {
		t.Fatalf("sweep deleted %d, %v; want 1", n, err)
	}
	if e.stored("crashed") != nil || e.stored("alive") == nil || e.stored("mine") == nil || e.srv.Get(testNS, other.Name) == nil {
		t.Fatal("wrong Leases swept")
	}
	if mine.Err() != nil {
		t.Fatal(mine.Err())
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewPedanticRegistry()
	l := e.locker("pod-a", func(o *Options) { o.Registerer = reg; o.MetricsNamespace = "gateway" })
	// A second Locker on the same registry shares the collectors.
	l2 := e.locker("pod-b", func(o *Options) { o.Registerer = reg; o.MetricsNamespace = "gateway" })
	ctx := context.Background()
	lk, err := l.TryAcquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l2.TryAcquire(ctx, "k"); !errors.Is(err, ErrHeld) {
		t.Fatal(err)
	}
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	m := l.metrics
	for name, got := range map[string]float64{
		"attempts try":      value(t, m.attempts.WithLabelValues("try")),
		"acquired create":   value(t, m.acquisitions.WithLabelValues("create")),
		"contention remote": value(t, m.contention.WithLabelValues("remote")),
		"releases deleted":  value(t, m.releases.WithLabelValues("deleted")),
		"held":              value(t, m.held),
	} {
		want := map[string]float64{"attempts try": 2, "acquired create": 1, "contention remote": 1, "releases deleted": 1, "held": 0}[name]
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "gateway_lock_") {
			t.Errorf("metric %s outside gateway_lock_*", mf.GetName())
		}
		for _, mm := range mf.GetMetric() {
			for _, lp := range mm.GetLabel() {
				switch lp.GetName() {
				case "method", "path", "where", "operation", "outcome", "reason":
				default:
					t.Errorf("unbounded label %s on %s", lp.GetName(), mf.GetName())
				}
			}
		}
	}
}

// value reads a counter or gauge (testutil would need a module this
// go.sum lacks).
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		t.Fatal(err)
	}
	switch {
	case pb.Counter != nil:
		return pb.Counter.GetValue()
	case pb.Gauge != nil:
		return pb.Gauge.GetValue()
	}
	t.Fatalf("not a counter or gauge: %v", &pb)
	return 0
}
