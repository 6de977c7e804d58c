package runner

import (
	"time"

	"github.com/leasehold/leasehold/internal/storm"
)

// Strategy is how a gateway deduplicates: the bench gateway's --strategy.
type Strategy string

const (
	// Leasehold is the product's gateway: status-based deduplication with
	// deterministic names, coalescing and per-request locks.
	Leasehold Strategy = "leasehold"
	// Baseline is the original design's algorithm, rewritten from its
	// published description for comparison only.
	Baseline Strategy = "baseline"
	// Floor creates one RemediationRequest per signal without any check:
	// the most creates this API server serves, not a deduplicator.
	Floor Strategy = "floor"
)

// Report is one run of the benchmark. Its JSON field names are what the
// markdown is rendered from; a reader can redo every number from it.
type Report struct {
	// StartedAt is when the run began; DurationSeconds how long it took.
	StartedAt       time.Time `json:"startedAt"`
	DurationSeconds float64   `json:"durationSeconds"`
	// Machine is what the run ran on.
	Machine Machine `json:"machine"`
	// Command is the exact command line, for whoever wants to repeat it.
	Command string `json:"command"`
	// Quick marks a smoke run with small sizes: its numbers are no
	// benchmark.
	Quick bool `json:"quick"`
	// Scenarios in the order they ran.
	Scenarios []ScenarioResult `json:"scenarios"`
	// Goals are the goals, evaluated against Scenarios.
	Goals []GoalResult `json:"goals"`
}

// Machine describes the host.
type Machine struct {
	// Cores is runtime.NumCPU.
	Cores int `json:"cores"`
	// MemoryBytes is MemTotal of /proc/meminfo; 0 where unknown.
	MemoryBytes uint64 `json:"memoryBytes"`
	// CPUModel is the first "model name" of /proc/cpuinfo, if any.
	CPUModel  string `json:"cpuModel,omitempty"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	GoVersion string `json:"goVersion"`
}

// ScenarioResult is one scenario: its parameters, what each strategy did,
// and how leasehold compares.
type ScenarioResult struct {
	// ID is "S1" ... "S5"; Title says what it is in a few words.
	ID    string `json:"id"`
	Title string `json:"title"`
	// Params are the sizes actually used.
	Params Params `json:"params"`
	// Strategies are the storm strategies (S1 to S3), in the order
	// leasehold, baseline, floor; a strategy not run is absent.
	Strategies []StrategyResult `json:"strategies,omitempty"`
	// Ratios compare leasehold with the others (S1 to S3).
	Ratios []Ratio `json:"ratios,omitempty"`
	// Orchestration is S4's result.
	Orchestration *OrchestrationResult `json:"orchestration,omitempty"`
	// Locks are S5's micro-benchmarks.
	Locks []LockBench `json:"locks,omitempty"`
	// Notes say what a reader must know to read the numbers.
	Notes []string `json:"notes,omitempty"`
	// Error says why the scenario could not be run to its end; whatever it
	// measured before is kept.
	Error string `json:"error,omitempty"`
	// DurationSeconds is the wall time of the scenario, start-up included.
	DurationSeconds float64 `json:"durationSeconds"`
}

// Params are a scenario's sizes; fields that do not apply are zero.
type Params struct {
	Signals      int `json:"signals,omitempty"`
	Fingerprints int `json:"fingerprints,omitempty"`
	Concurrency  int `json:"concurrency,omitempty"`
	Replicas     int `json:"replicas,omitempty"`
	Reps         int `json:"reps,omitempty"`
	// RRs, Targets and ExecutionMs size S4.
	RRs         int     `json:"rrs,omitempty"`
	Targets     int     `json:"targets,omitempty"`
	ExecutionMs float64 `json:"executionMs,omitempty"`
	// Iterations sizes S5.
	Iterations int `json:"iterations,omitempty"`
}

// StrategyResult is one strategy's repetitions of a storm scenario and
// their summary.
type StrategyResult struct {
	Strategy Strategy    `json:"strategy"`
	Summary  Summary     `json:"summary"`
	Reps     []RepResult `json:"reps"`
}

// RepResult is one storm against one strategy's gateways.
type RepResult struct {
	Rep int `json:"rep"`
	// RunID names the storm's targets (storm.Config.RunID).
	RunID        string `json:"runID"`
	Signals      int    `json:"signals"`
	Acknowledged int    `json:"acknowledged"`
	Failed       int    `json:"failed"`
	// Retries are re-sends after a 503, 429 or a lost connection.
	Retries int `json:"retries"`
	// Outcomes counts final answers by HTTP status, as storm reports them.
	Outcomes        map[string]int       `json:"outcomes"`
	DurationSeconds float64              `json:"durationSeconds"`
	Throughput      float64              `json:"throughputPerSecond"`
	Latency         storm.LatencySummary `json:"latency"`
	// Verified says whether the RemediationRequests could be listed;
	// Duplicates, RRsFound and CountsExact mean nothing otherwise.
	Verified    bool `json:"verified"`
	Duplicates  int  `json:"duplicates"`
	RRsFound    int  `json:"rrsFound"`
	Incidents   int  `json:"incidents"`
	CountsExact bool `json:"countsExact"`
	// APIMeasured says whether the API server's request counters could be
	// read; APITotal and APIByResourceVerb mean nothing otherwise.
	APIMeasured       bool                    `json:"apiMeasured"`
	APITotal          float64                 `json:"apiTotal"`
	APIPerSignal      float64                 `json:"apiPerSignal"`
	APIByResourceVerb []storm.APIRequestCount `json:"apiByResourceVerb,omitempty"`
	// Error is why verification or accounting failed, or the storm's error.
	Error string `json:"error,omitempty"`

	// latenciesMs are the latencies of the signals with a final answer; the
	// summary pools them.
	latenciesMs []float64
}

// Summary pools a strategy's repetitions.
type Summary struct {
	Reps         int `json:"reps"`
	Signals      int `json:"signals"`
	Acknowledged int `json:"acknowledged"`
	Failed       int `json:"failed"`
	Retries      int `json:"retries"`
	// Duplicates is the sum over repetitions; RepsWithDuplicates how many
	// had any; MaxDuplicates the worst one.
	Duplicates         int `json:"duplicates"`
	RepsWithDuplicates int `json:"repsWithDuplicates"`
	MaxDuplicates      int `json:"maxDuplicates"`
	// RepsCountsExact counts repetitions whose every incident's occurrence
	// count equalled its signals; RepsVerified those that could be checked.
	RepsCountsExact int  `json:"repsCountsExact"`
	RepsVerified    int  `json:"repsVerified"`
	CountsExact     bool `json:"countsExact"`
	// APIPerSignal is the requests of every measured repetition divided by
	// their signals; APIByResourceVerb splits it. RepsAPIMeasured is how
	// many repetitions it covers.
	APIPerSignal      float64        `json:"apiPerSignal"`
	APIByResourceVerb []ResourceRate `json:"apiByResourceVerb,omitempty"`
	RepsAPIMeasured   int            `json:"repsAPIMeasured"`
	// Latency is over the pooled signals of all repetitions; WorstRepP99Ms
	// is the highest p99 of a single repetition.
	Latency       Latency `json:"latency"`
	WorstRepP99Ms float64 `json:"worstRepP99Ms"`
	// Throughput is the answered signals of all repetitions divided by the
	// sum of their durations.
	Throughput float64 `json:"throughputPerSecond"`
	// LatenciesMs are the pooled latencies, sorted, for plots.
	LatenciesMs []float64 `json:"latenciesMs,omitempty"`
}

// Latency is a distribution in milliseconds (nearest-rank percentiles).
type Latency struct {
	Count int     `json:"count"`
	P50Ms float64 `json:"p50Ms"`
	P95Ms float64 `json:"p95Ms"`
	P99Ms float64 `json:"p99Ms"`
	MaxMs float64 `json:"maxMs"`
}

// ResourceRate is the requests of one resource and verb per signal.
type ResourceRate struct {
	Resource  string  `json:"resource"`
	Verb      string  `json:"verb"`
	PerSignal float64 `json:"perSignal"`
}

// Ratio is leasehold's figure divided by another strategy's. A nil field
// had nothing to divide (a figure not measured, or zero below the line).
type Ratio struct {
	// Name is "leasehold/baseline" or "leasehold/floor".
	Name  string   `json:"name"`
	Other Strategy `json:"other"`
	// APIPerSignal below 1 is fewer requests; Throughput above 1 is more
	// signals per second; the latencies below 1 are faster.
	APIPerSignal *float64 `json:"apiPerSignal,omitempty"`
	Throughput   *float64 `json:"throughput,omitempty"`
	P50          *float64 `json:"p50,omitempty"`
	P95          *float64 `json:"p95,omitempty"`
	P99          *float64 `json:"p99,omitempty"`
}

// OrchestrationResult is S4: RemediationRequests run to completion by
// orchestrator replicas and the simulated executor.
type OrchestrationResult struct {
	Strategy Strategy `json:"strategy"`
	// RRs were created; Completed and Failed are those that ended so, and
	// Unfinished those still in progress when the wait ended.
	RRs        int `json:"rrs"`
	Completed  int `json:"completed"`
	Failed     int `json:"failed"`
	Unfinished int `json:"unfinished"`
	// MaxActivePerTarget is the most non-terminal WorkflowExecutions one
	// target had at once, over every state the watch saw; Duplicates is,
	// summed over targets, how far above 1 it went; Violations describe
	// each such moment.
	MaxActivePerTarget int      `json:"maxActivePerTarget"`
	Duplicates         int      `json:"duplicates"`
	Violations         []string `json:"violations,omitempty"`
	// Executions is the number of WorkflowExecutions created.
	Executions int `json:"executions"`
	// Handoff is from one execution's terminal phase to the creation of the
	// next execution of the same target, both as the watch delivered them.
	Handoff Latency `json:"handoff"`
	// Latency is per request, from its create to its terminal phase.
	Latency Latency `json:"latency"`
	// Throughput is finished requests per second, from the first create
	// to the last terminal phase.
	Throughput      float64 `json:"throughputPerSecond"`
	DurationSeconds float64 `json:"durationSeconds"`
	// APIPerRR and APIByResourceVerb are the API server's requests during
	// the run, minus the idle rate, per request created. They include the
	// benchmark's own creates and watches.
	APIMeasured       bool                    `json:"apiMeasured"`
	APIPerRR          float64                 `json:"apiPerRR"`
	APIByResourceVerb []storm.APIRequestCount `json:"apiByResourceVerb,omitempty"`
	// Gaps say when a watch lost changes: what happened then is unchecked.
	Gaps []string `json:"gaps,omitempty"`
}

// LockBench is one lock micro-benchmark.
type LockBench struct {
	Strategy Strategy `json:"strategy"`
	// Name is "uncontended", "local-handoff" or "cross-process-handoff".
	Name       string `json:"name"`
	Iterations int    `json:"iterations"`
	// P50Ms, P95Ms and P99Ms are per operation.
	P50Ms float64 `json:"p50Ms"`
	P95Ms float64 `json:"p95Ms"`
	P99Ms float64 `json:"p99Ms"`
	// CallsPerOp is API requests per operation.
	CallsPerOp float64 `json:"callsPerOp"`
	// Metrics are every figure the benchmark reported, by unit.
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// Note qualifies the figures.
	Note string `json:"note,omitempty"`
}

// GoalStatus is the verdict on one goal.
type GoalStatus string

const (
	GoalMet         GoalStatus = "met"
	GoalNotMet      GoalStatus = "NOT met"
	GoalNotMeasured GoalStatus = "not measured"
)

// GoalResult is one goal of the issue with its verdict and the number
// behind it.
type GoalResult struct {
	Scenario string     `json:"scenario"`
	Goal     string     `json:"goal"`
	Status   GoalStatus `json:"status"`
	// Measured is the number(s) the verdict rests on, in words.
	Measured string `json:"measured"`
}
