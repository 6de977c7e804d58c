package runner

import (
	"strings"
	"testing"
)

const benchOutput = `controlplane: started in 3.2s at https://127.0.0.1:41234
goos: linux
goarch: amd64
pkg: github.com/leasehold/leasehold/lease
cpu: Fixture CPU
BenchmarkIntegrationAcquireRelease-2       	     200	   6543210 ns/op	         2.000 calls/op	         3.100 p50-acquire-ms	         5.200 p95-acquire-ms	         7.300 p99-acquire-ms	         2.900 p50-release-ms	         0 renewals/op
BenchmarkIntegrationLocalHandoff-2         	     200	   2345678 ns/op	         1.000 calls/op	         2.200 p50-handoff-ms	         3.300 p95-handoff-ms	         4.400 p99-handoff-ms	         0 renewals/op
BenchmarkIntegrationCrossLockerHandoff-2   	     200	   9876543 ns/op	         6.5 p50-handoff-ms	         9.1 p95-handoff-ms	        12.0 p99-handoff-ms	         1.000 release-calls/op	         2.000 waiter-calls/op	         0 renewals/op
Benchmark with a log line that is not a result
PASS
ok  	github.com/leasehold/leasehold/lease	12.345s
`

func TestParseBenchOutput(t *testing.T) {
	lines, err := parseBenchOutput(strings.NewReader(benchOutput))
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 3 {
		t.Fatalf("%d result lines, want 3: %+v", len(lines), lines)
	}
	if lines[0].name != "BenchmarkIntegrationAcquireRelease" || lines[0].iterations != 200 || lines[0].metrics["ns/op"] != 6543210 {
		t.Errorf("first line %+v", lines[0])
	}
	locks := lockResults(lines)
	want := []LockBench{
		{Name: "uncontended acquire+release", Iterations: 200, P50Ms: 3.1, P95Ms: 5.2, P99Ms: 7.3, CallsPerOp: 2},
		{Name: "local hand-off", Iterations: 200, P50Ms: 2.2, P95Ms: 3.3, P99Ms: 4.4, CallsPerOp: 1},
		// The holder's and the waiter's calls together.
		{Name: "cross-process hand-off", Iterations: 200, P50Ms: 6.5, P95Ms: 9.1, P99Ms: 12, CallsPerOp: 3},
	}
	if len(locks) != len(want) {
		t.Fatalf("%d results, want %d", len(locks), len(want))
	}
	for i, w := range want {
		g := locks[i]
		if g.Strategy != Leasehold || g.Name != w.Name || g.Iterations != w.Iterations || g.P50Ms != w.P50Ms ||
			g.P95Ms != w.P95Ms || g.P99Ms != w.P99Ms || g.CallsPerOp != w.CallsPerOp {
			t.Errorf("result %d = %+v, want %+v", i, g, w)
		}
	}
	if locks[0].Metrics["p50-release-ms"] != 2.9 {
		t.Errorf("release p50 not kept: %v", locks[0].Metrics)
	}
}

func TestTrimProcs(t *testing.T) {
	for in, want := range map[string]string{"BenchmarkX-16": "BenchmarkX", "BenchmarkX": "BenchmarkX", "BenchmarkX-y": "BenchmarkX-y"} {
		if got := trimProcs(in); got != want {
			t.Errorf("trimProcs(%q) = %q, want %q", in, got, want)
		}
	}
}
