package runner

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/leasehold/leasehold/internal/controlplane"
)

// lockBenchmarks maps the lease package's benchmarks to S5's names.
var lockBenchmarks = []struct {
	bench, name, latency string
}{
	{"BenchmarkIntegrationAcquireRelease", "uncontended acquire+release", "acquire"},
	{"BenchmarkIntegrationLocalHandoff", "local hand-off", "handoff"},
	{"BenchmarkIntegrationCrossLockerHandoff", "cross-process hand-off", "handoff"},
}

// locksScenario runs S5: the lease package's lock micro-benchmarks, in a
// `go test -bench` subprocess that starts its own control plane.
func (r *run) locksScenario(ctx context.Context, sc scenario) ScenarioResult {
	res := ScenarioResult{ID: sc.id, Title: sc.title, Params: sc.params}
	assets, err := controlplane.Assets(ctx)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	args := []string{"test", "-tags", "integration", "-run", "^$", "-bench", "Integration",
		"-benchtime", fmt.Sprintf("%dx", sc.params.Iterations), "-count", "1", "./lease/"}
	r.progress("%s: go %s", sc.id, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = r.opts.RepoDir
	cmd.Env = append(os.Environ(), "LEASEHOLD_ASSETS_DIR="+assets)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	benches, err := parseBenchOutput(&out)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Locks = lockResults(benches)
	if runErr != nil {
		res.Error = fmt.Sprintf("go test: %v\n%s", runErr, tail(out.String(), 2048))
	} else if len(res.Locks) < len(lockBenchmarks) {
		res.Error = fmt.Sprintf("%d of %d benchmarks reported\n%s", len(res.Locks), len(lockBenchmarks), tail(out.String(), 2048))
	}
	res.Notes = append(res.Notes,
		"leasehold only: the original design's lock has no local queue (its holder is the pod, so two requests of one replica both \"hold\" it) and no watch for a waiter, so its hand-offs are not the same operation; its costs show in S1 to S3.",
		"uncontended: the percentiles are of the acquire (one Create); the release (one Delete) is in the metrics as p50-release-ms.")
	return res
}

// benchLine is one result line of `go test -bench`.
type benchLine struct {
	name       string
	iterations int
	// metrics by unit: "ns/op", "calls/op", "p50-handoff-ms", ...
	metrics map[string]float64
}

// parseBenchOutput reads the result lines of `go test -bench` output,
// ignoring everything else (test logs, PASS, ok).
func parseBenchOutput(r io.Reader) ([]benchLine, error) {
	var out []benchLine
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") || len(fields)%2 != 0 {
			continue
		}
		n, err := strconv.Atoi(fields[1])
		if err != nil {
			continue
		}
		b := benchLine{name: trimProcs(fields[0]), iterations: n, metrics: map[string]float64{}}
		ok := true
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				ok = false
				break
			}
			b.metrics[fields[i+1]] = v
		}
		if ok {
			out = append(out, b)
		}
	}
	return out, sc.Err()
}

// trimProcs removes the "-<GOMAXPROCS>" suffix go test adds to names.
func trimProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name
	}
	if _, err := strconv.Atoi(name[i+1:]); err != nil {
		return name
	}
	return name[:i]
}

// lockResults turns the benchmarks' lines into S5's results, in
// lockBenchmarks order.
func lockResults(lines []benchLine) []LockBench {
	var out []LockBench
	for _, lb := range lockBenchmarks {
		for _, l := range lines {
			if l.name != lb.bench {
				continue
			}
			m := l.metrics
			calls := m["calls/op"]
			if _, ok := m["calls/op"]; !ok {
				// Cross-process: the holder's release and the waiter's
				// calls are reported apart.
				calls = m["release-calls/op"] + m["waiter-calls/op"]
			}
			out = append(out, LockBench{
				Strategy:   Leasehold,
				Name:       lb.name,
				Iterations: l.iterations,
				P50Ms:      m["p50-"+lb.latency+"-ms"],
				P95Ms:      m["p95-"+lb.latency+"-ms"],
				P99Ms:      m["p99-"+lb.latency+"-ms"],
				CallsPerOp: calls,
				Metrics:    m,
			})
		}
	}
	return out
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
