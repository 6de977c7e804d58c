//go:build integration

package lease_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/leasehold/leasehold/lease"
)

// Run with:
//
//	LEASEHOLD_ASSETS_DIR=$(hack/controlplane.sh) go test -tags integration -run '^$' -bench Integration -benchtime 200x ./lease/
//
// Latencies are reported as percentiles over the iterations (ns/op is their
// mean plus the benchmark's own bookkeeping). calls/op counts HTTP requests
// that reached the API server, renewals included; renewals/op shows how
// many of them were renewals (none at these lease durations).

// reportLatencies adds p50/p95/p99 of ds, in milliseconds, to the benchmark.
func reportLatencies(b *testing.B, what string, ds []time.Duration) {
	for _, p := range []float64{50, 95, 99} {
		b.ReportMetric(float64(percentile(ds, p))/float64(time.Millisecond), fmt.Sprintf("p%.0f-%s-ms", p, what))
	}
}

// BenchmarkIntegrationAcquireRelease acquires a fresh, free key and releases
// it: one Create and one Delete.
func BenchmarkIntegrationAcquireRelease(b *testing.B) {
	r := newReplica(b, "bench-ar", lease.Options{Prefix: "bench-ar"})
	ctx := context.Background()
	acquire := make([]time.Duration, 0, b.N)
	release := make([]time.Duration, 0, b.N)
	run := time.Now().UnixNano() // fresh keys on every run of the benchmark function
	before := r.calls.snapshot()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		key := fmt.Sprintf("key-%d-%d", run, i)
		start := time.Now()
		lk, err := r.locker.Acquire(ctx, key)
		if err != nil {
			b.Fatalf("Acquire: %v", err)
		}
		acquired := time.Now()
		if err := lk.Release(ctx); err != nil {
			b.Fatalf("Release: %v", err)
		}
		acquire = append(acquire, acquired.Sub(start))
		release = append(release, time.Since(acquired))
	}
	b.StopTimer()
	d := r.calls.since(before)
	reportLatencies(b, "acquire", acquire)
	b.ReportMetric(float64(percentile(release, 50))/float64(time.Millisecond), "p50-release-ms")
	b.ReportMetric(float64(d.total())/float64(b.N), "calls/op")
	b.ReportMetric(r.metric(b, "renewals_total")/float64(b.N), "renewals/op")
}

// BenchmarkIntegrationLocalHandoff passes one key between goroutines of one
// Locker: each iteration, a goroutine queues behind the holder and the
// holder releases, which hands the Lease over with one Update. The latency
// runs from the Release call to the waiter's Acquire returning. The
// fairness bound is lifted so that every release is a hand-off (with the
// default of 8, every ninth would be a Delete and a Create).
func BenchmarkIntegrationLocalHandoff(b *testing.B) {
	r := newReplica(b, "bench-local", lease.Options{Prefix: "bench-local", MaxLocalHandoffs: math.MaxInt})
	ctx := context.Background()
	const key = "handoff"
	held, err := r.locker.Acquire(ctx, key)
	if err != nil {
		b.Fatalf("Acquire: %v", err)
	}
	type result struct {
		lk  *lease.Lock
		err error
	}
	latencies := make([]time.Duration, 0, b.N)
	var calls int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		local := r.metric(b, "contention_total", "where", "local")
		got := make(chan result, 1)
		go func() {
			lk, err := r.locker.Acquire(ctx, key)
			got <- result{lk, err}
		}()
		// Counted under the Locker's lock before the waiter joins the
		// queue, so once it moves the next Release hands off.
		waitFor(b, 10*time.Second, "the waiter to queue", func() bool {
			return r.metric(b, "contention_total", "where", "local") > local
		})
		before := r.calls.snapshot()
		b.StartTimer()
		start := time.Now()
		if err := held.Release(ctx); err != nil {
			b.Fatalf("Release: %v", err)
		}
		res := <-got
		latencies = append(latencies, time.Since(start))
		if res.err != nil {
			b.Fatalf("Acquire: %v", res.err)
		}
		calls += r.calls.since(before).total()
		held = res.lk
	}
	b.StopTimer()
	if err := held.Release(ctx); err != nil {
		b.Fatalf("Release: %v", err)
	}
	if n := r.metric(b, "local_handoffs_total"); n != float64(b.N) {
		b.Fatalf("%v hand-offs for %d iterations", n, b.N)
	}
	reportLatencies(b, "handoff", latencies)
	b.ReportMetric(float64(calls)/float64(b.N), "calls/op")
	b.ReportMetric(r.metric(b, "renewals_total")/float64(b.N), "renewals/op")
}

// BenchmarkIntegrationCrossLockerHandoff passes one key between two Lockers
// with separate clientsets and connections, as between two processes: each
// iteration the waiter is already asleep on a watch of the holder's Lease
// when the holder releases. The latency runs from the Release call to the
// waiter's Acquire returning (the Delete, the watch event, the Create).
func BenchmarkIntegrationCrossLockerHandoff(b *testing.B) {
	opts := lease.Options{Prefix: "bench-cross"}
	x := newReplica(b, "bench-cross-a", opts)
	y := newReplica(b, "bench-cross-b", opts)
	ctx := context.Background()
	const key = "handoff"
	held, err := x.locker.Acquire(ctx, key)
	if err != nil {
		b.Fatalf("Acquire: %v", err)
	}
	type result struct {
		lk  *lease.Lock
		err error
	}
	waiter := y
	latencies := make([]time.Duration, 0, b.N)
	var releaseCalls, waitCalls int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		holder := x
		if waiter == x {
			holder = y
		}
		waiterBefore := waiter.calls.snapshot()
		watches := waiterBefore["watch"]
		got := make(chan result, 1)
		go func() {
			lk, err := waiter.locker.Acquire(ctx, key)
			got <- result{lk, err}
		}()
		waitFor(b, 10*time.Second, "the waiter's watch", func() bool { return waiter.calls.get("watch") > watches })
		holderBefore := holder.calls.snapshot()
		b.StartTimer()
		start := time.Now()
		if err := held.Release(ctx); err != nil {
			b.Fatalf("Release: %v", err)
		}
		res := <-got
		latencies = append(latencies, time.Since(start))
		if res.err != nil {
			b.Fatalf("Acquire: %v", res.err)
		}
		b.StopTimer()
		releaseCalls += holder.calls.since(holderBefore).total()
		waitCalls += waiter.calls.since(waiterBefore).total()
		held = res.lk
		waiter = holder
		b.StartTimer()
	}
	b.StopTimer()
	if err := held.Release(ctx); err != nil {
		b.Fatalf("Release: %v", err)
	}
	for _, r := range []*replica{x, y} {
		if n := r.metric(b, "takeovers_total"); n != 0 {
			b.Fatalf("%s took over %v times: a waiter was not woken by the release", r.identity, n)
		}
	}
	reportLatencies(b, "handoff", latencies)
	b.ReportMetric(float64(releaseCalls)/float64(b.N), "release-calls/op")
	b.ReportMetric(float64(waitCalls)/float64(b.N), "waiter-calls/op")
	b.ReportMetric((x.metric(b, "renewals_total")+y.metric(b, "renewals_total"))/float64(b.N), "renewals/op")
}
