package collector

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRegisterSharesIdenticalCollectors(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "things_total", Help: "Things."}
	a, b := prometheus.NewCounter(opts), prometheus.NewCounter(opts)
	var err error
	Register(reg, &a, &err)
	Register(reg, &b, &err)
	if err != nil {
		t.Fatal(err)
	}
	b.Inc()
	if got := testutil.ToFloat64(a); got != 1 {
		t.Fatalf("the second instance counts into its own series: first reads %v", got)
	}
}

func TestRegisterRejectsAnotherKindUnderTheSameName(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x", Help: "X."})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x", Help: "X."})
	var err error
	Register(reg, &c, &err)
	Register(reg, &g, &err)
	if err == nil {
		t.Fatal("a gauge took the name of a counter")
	}
	// Once failed, nothing more is registered.
	h := prometheus.NewCounter(prometheus.CounterOpts{Name: "y", Help: "Y."})
	Register(reg, &h, &err)
	if n, _ := testutil.GatherAndCount(reg, "y"); n != 0 {
		t.Fatal("registered after an error")
	}
}
