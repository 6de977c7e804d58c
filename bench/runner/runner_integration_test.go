//go:build integration

package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestIntegrationQuickRun runs every scenario at quick sizes, each against
// its own fresh control plane (so the package needs no shared one), writes
// the outputs and checks the JSON a reader gets: every field the page is
// made from is there, and leasehold showed no duplicate anywhere.
func TestIntegrationQuickRun(t *testing.T) {
	// envtest logs through controller-runtime's global logger, which
	// otherwise complains with a stack trace that nobody set it.
	ctrllog.SetLogger(logr.Discard())
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Options{Quick: true, WorkDir: t.TempDir(), Progress: testWriter{t}, Command: "go test (quick)"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := Outputs{JSONDir: dir, Markdown: filepath.Join(dir, "benchmarks.md"), SVG: filepath.Join(dir, "benchmarks-latency.svg")}
	path, err := WriteOutputs(rep, out)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}

	for _, p := range []string{"startedAt", "durationSeconds", "command", "quick", "machine.cores", "machine.memoryBytes", "scenarios", "goals"} {
		need(t, doc, p)
	}
	scenarios := need(t, doc, "scenarios").([]any)
	if len(scenarios) != len(ScenarioIDs) {
		t.Fatalf("%d scenarios in the JSON, want %d", len(scenarios), len(ScenarioIDs))
	}
	for i, s := range scenarios {
		sc := s.(map[string]any)
		id := need(t, sc, "id").(string)
		if id != ScenarioIDs[i] {
			t.Errorf("scenario %d is %s, want %s", i, id, ScenarioIDs[i])
		}
		if e, ok := sc["error"]; ok {
			t.Errorf("%s: error %v", id, e)
		}
		switch id {
		case "S1", "S2", "S3":
			checkStorm(t, id, sc)
		case "S4":
			checkOrchestration(t, sc)
		case "S5":
			checkLocks(t, sc)
		}
	}
	for i, g := range need(t, doc, "goals").([]any) {
		for _, f := range []string{"scenario", "goal", "status", "measured"} {
			need(t, g.(map[string]any), f)
		}
		if st := g.(map[string]any)["status"]; st == string(GoalNotMeasured) {
			t.Errorf("goal %d not measured: %v", i, g)
		}
	}
	for _, p := range []string{out.Markdown, out.SVG} {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Errorf("%s not written: %v", p, err)
		}
	}
}

func checkStorm(t *testing.T, id string, sc map[string]any) {
	t.Helper()
	strategies := need(t, sc, "strategies").([]any)
	if len(strategies) != 3 {
		t.Fatalf("%s: %d strategies, want 3", id, len(strategies))
	}
	for _, s := range strategies {
		st := s.(map[string]any)
		name := need(t, st, "strategy").(string)
		sum := need(t, st, "summary").(map[string]any)
		for _, f := range []string{"reps", "signals", "failed", "duplicates", "repsWithDuplicates", "countsExact", "repsCountsExact",
			"apiPerSignal", "apiByResourceVerb", "repsAPIMeasured", "latency.p50Ms", "latency.p95Ms", "latency.p99Ms",
			"throughputPerSecond", "latenciesMs"} {
			need(t, sum, f)
		}
		where := id + " " + name
		if sum["repsAPIMeasured"].(float64) != sum["reps"].(float64) || sum["apiPerSignal"].(float64) <= 0 {
			t.Errorf("%s: API requests not measured in every repetition: %v of %v, %v per signal", where, sum["repsAPIMeasured"], sum["reps"], sum["apiPerSignal"])
		}
		if sum["throughputPerSecond"].(float64) <= 0 || need(t, sum, "latency.p99Ms").(float64) <= 0 {
			t.Errorf("%s: no throughput or latency", where)
		}
		for _, r := range need(t, st, "reps").([]any) {
			rr := r.(map[string]any)
			for _, f := range []string{"runID", "signals", "acknowledged", "outcomes", "durationSeconds", "throughputPerSecond",
				"latency.p99Ms", "verified", "duplicates", "countsExact", "apiMeasured", "apiPerSignal", "apiByResourceVerb"} {
				need(t, rr, f)
			}
			if rr["verified"] != true {
				t.Errorf("%s rep %v not verified: %v", where, rr["rep"], rr["error"])
			}
		}
		if name == string(Leasehold) {
			if sum["duplicates"].(float64) != 0 || sum["countsExact"] != true || sum["failed"].(float64) != 0 {
				t.Errorf("%s: duplicates %v, counts exact %v, failed %v; want 0, true, 0", where, sum["duplicates"], sum["countsExact"], sum["failed"])
			}
		}
	}
	ratios := need(t, sc, "ratios").([]any)
	if len(ratios) != 2 {
		t.Fatalf("%s: %d ratios, want 2", id, len(ratios))
	}
	for _, r := range ratios {
		for _, f := range []string{"name", "apiPerSignal", "throughput", "p50", "p95", "p99"} {
			need(t, r.(map[string]any), f)
		}
	}
}

func checkOrchestration(t *testing.T, sc map[string]any) {
	t.Helper()
	o := need(t, sc, "orchestration").(map[string]any)
	for _, f := range []string{"rrs", "completed", "maxActivePerTarget", "duplicates", "executions", "handoff.p50Ms", "handoff.p95Ms",
		"latency.p99Ms", "throughputPerSecond", "apiMeasured", "apiPerRR", "apiByResourceVerb"} {
		need(t, o, f)
	}
	if o["completed"] != o["rrs"] || o["executions"] != o["rrs"] {
		t.Errorf("S4: %v of %v requests completed with %v executions", o["completed"], o["rrs"], o["executions"])
	}
	if o["maxActivePerTarget"].(float64) != 1 || o["duplicates"].(float64) != 0 {
		t.Errorf("S4: at most %v active per target, %v duplicates; want 1 and 0: %v", o["maxActivePerTarget"], o["duplicates"], o["violations"])
	}
	if need(t, o, "handoff.count").(float64) == 0 {
		t.Error("S4: no hand-off measured")
	}
}

func checkLocks(t *testing.T, sc map[string]any) {
	t.Helper()
	locks := need(t, sc, "locks").([]any)
	if len(locks) != len(lockBenchmarks) {
		t.Fatalf("S5: %d lock benchmarks, want %d", len(locks), len(lockBenchmarks))
	}
	for _, l := range locks {
		lb := l.(map[string]any)
		for _, f := range []string{"strategy", "name", "iterations", "p50Ms", "p95Ms", "p99Ms", "callsPerOp"} {
			need(t, lb, f)
		}
		if lb["p50Ms"].(float64) <= 0 || lb["callsPerOp"].(float64) <= 0 {
			t.Errorf("S5 %v: p50 %v ms, %v calls/op", lb["name"], lb["p50Ms"], lb["callsPerOp"])
		}
	}
}

// need returns the value at a dotted path of decoded JSON, failing the test
// if a key is missing.
func need(t *testing.T, m map[string]any, path string) any {
	t.Helper()
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%s: %v is not an object", path, cur)
		}
		if cur, ok = obj[k]; !ok {
			t.Fatalf("the JSON lacks %s (in %s)", path, fmt.Sprint(keys(obj)))
		}
	}
	return cur
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
