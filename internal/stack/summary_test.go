package stack

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/overlap"
	"github.com/leasehold/leasehold/internal/storm"
)

// allSentinels are the errors Check can return; each failure case must
// produce exactly the ones it expects and none of the others.
var allSentinels = []error{
	storm.ErrUnacknowledged, storm.ErrNotVerified, storm.ErrDuplicates, storm.ErrCountsNotExact,
	ErrNotTerminal, ErrConcurrentExecutions, ErrDuplicateExecutions, ErrMissingExecutions,
	ErrWatchIncomplete, ErrProcessExited,
}

// fakeStorm is a storm report with one incident per entry of sent, whose
// signals all got 201 or 202 with latencies 1ms, 2ms, ... in signal order.
func fakeStorm(runID string, sent ...int) *storm.Report {
	r := &storm.Report{RunID: runID, Verification: &storm.Verification{}}
	for i, n := range sent {
		r.Incidents = append(r.Incidents, storm.Incident{
			Index: i, Target: storm.TargetName(runID, i), Fingerprint: fingerprint(runID, i), Sent: n, Acknowledged: n, Counted: n,
		})
		for range n {
			r.Results = append(r.Results, storm.SignalResult{Index: r.Signals, Incident: i, Code: 202, Latency: time.Duration(r.Signals+1) * time.Millisecond})
			r.Signals++
		}
	}
	r.Acknowledged = r.Signals
	latencies := make([]time.Duration, len(r.Results))
	for i, res := range r.Results {
		latencies[i] = res.Latency
	}
	r.Latency = latencySummary(latencies)
	return r
}

// fingerprint is a made-up 64-hex-digit fingerprint of incident i of a run.
func fingerprint(runID string, i int) string {
	s := fmt.Sprintf("%x", runID+"-"+fmt.Sprint(i))
	return (s + strings.Repeat("0", 64))[:64]
}

func target(runID string, i int) v1alpha1.TargetRef {
	return storm.TargetOf("local", "storm", runID, i)
}

func fakeRR(runID string, incident, generation int, phase v1alpha1.RemediationPhase, count int64) v1alpha1.RemediationRequest {
	name := fmt.Sprintf("rr-%s-%d-%d", runID, incident, generation)
	return v1alpha1.RemediationRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)},
		Spec:       v1alpha1.RemediationRequestSpec{Fingerprint: fingerprint(runID, incident), Target: target(runID, incident)},
		Status: v1alpha1.RemediationRequestStatus{
			Phase:         phase,
			Deduplication: &v1alpha1.DeduplicationStatus{OccurrenceCount: count},
		},
	}
}

func fakeWFE(rr *v1alpha1.RemediationRequest, sequence int64, phase v1alpha1.WorkflowPhase) v1alpha1.WorkflowExecution {
	return v1alpha1.WorkflowExecution{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("wfe-%s-%d", rr.Name, sequence)},
		Spec: v1alpha1.WorkflowExecutionSpec{
			Target: rr.Spec.Target, Sequence: sequence,
			RemediationRequestRef: v1alpha1.ObjectReference{Name: rr.Name, UID: string(rr.UID)},
		},
		Status: v1alpha1.WorkflowExecutionStatus{Phase: phase},
	}
}

// goodDemo is the demo as it should go: 100 identical signals on one
// incident, 50 over five; one request each, Completed, counted exactly,
// one execution each; the watches saw one active at a time.
func goodDemo() ([]StormRun, observation) {
	runs := []StormRun{
		{Name: "identical", Report: fakeStorm("aaaaaa", 100)},
		{Name: "spread", Report: fakeStorm("bbbbbb", 10, 10, 10, 10, 10)},
	}
	obs := observation{
		requests:   overlap.Result{MaxActive: map[string]int{}},
		executions: overlap.Result{MaxActive: map[string]int{}},
		wait:       700 * time.Millisecond,
	}
	for _, run := range runs {
		for _, inc := range run.Report.Incidents {
			rr := fakeRR(run.Report.RunID, inc.Index, 1, v1alpha1.PhaseCompleted, int64(inc.Sent))
			obs.rrs = append(obs.rrs, rr)
			obs.wfes = append(obs.wfes, fakeWFE(&rr, 1, v1alpha1.WorkflowCompleted))
			obs.requests.MaxActive[inc.Fingerprint] = 1
			obs.executions.MaxActive[rr.Spec.Target.LockKey()] = 1
		}
	}
	return runs, obs
}

func TestSummarizeGoodDemo(t *testing.T) {
	runs, obs := goodDemo()
	s := summarize(runs, obs)
	if err := s.Check(); err != nil {
		t.Fatalf("Check = %v, want nil", err)
	}
	got := []int{s.Signals, s.Acknowledged, s.RRs, s.DuplicateRRs, s.MaxActiveRRs, s.Terminal, s.WFEs, s.Targets, s.DuplicateExecutions, s.MissingExecutions, s.MaxActiveWFEs, len(s.Incidents), s.RestartedIncidents}
	want := []int{150, 150, 6, 0, 1, 6, 6, 6, 0, 0, 1, 6, 0}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("signals, acked, RRs, dup RRs, max active RRs, terminal, WFEs, targets, dup WFEs, missing WFEs, max active WFEs, incidents, restarted = %v, want %v", got, want)
	}
	if !s.CountsExact {
		t.Error("CountsExact = false, want true")
	}
	if s.Phases[v1alpha1.PhaseCompleted] != 6 {
		t.Errorf("Phases = %v, want Completed 6", s.Phases)
	}
	row := s.Incidents[0]
	if row.Storm != "identical" || row.Signals != 100 || row.RRs != 1 || row.Occurrences != 100 || row.WFEs != 1 || row.MaxActiveRRs != 1 || row.MaxActiveWFEs != 1 {
		t.Errorf("first incident row = %+v", row)
	}
	if want := target("aaaaaa", 0).String(); row.Target != want {
		t.Errorf("first incident target = %q, want %q", row.Target, want)
	}
	// Latencies are 1..100ms in the first storm and 1..50ms in the second:
	// 150 values, ranks by nearest rank.
	l := s.Latency
	if l.Count != 150 || l.P50Ms != 38 || l.P95Ms != 93 || l.P99Ms != 99 || l.MaxMs != 100 {
		t.Errorf("Latency = %+v, want count 150, p50 38, p95 93, p99 99, max 100", l)
	}
}

// A request that finished during the storm is followed by a new one for
// the later signals: two requests one after the other, counts summed. That
// is correct and must pass.
func TestSummarizeSequentialRequestsAreNotDuplicates(t *testing.T) {
	runs, obs := goodDemo()
	first := fakeRR("bbbbbb", 2, 1, v1alpha1.PhaseCompleted, 6)
	second := fakeRR("bbbbbb", 2, 2, v1alpha1.PhaseCompleted, 4)
	obs.rrs = replaceRRs(obs.rrs, fingerprint("bbbbbb", 2), first, second)
	// goodDemo already has the first one's execution (same name and UID).
	obs.wfes = append(obs.wfes, fakeWFE(&second, 2, v1alpha1.WorkflowCompleted))
	s := summarize(runs, obs)
	if err := s.Check(); err != nil {
		t.Fatalf("Check = %v, want nil", err)
	}
	if s.RRs != 7 || s.RestartedIncidents != 1 || s.DuplicateRRs != 0 || s.WFEs != 7 {
		t.Errorf("RRs %d, restarted %d, duplicates %d, WFEs %d; want 7, 1, 0, 7", s.RRs, s.RestartedIncidents, s.DuplicateRRs, s.WFEs)
	}
	var out strings.Builder
	if err := s.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "1 incident(s) got a new RR") {
		t.Errorf("WriteText does not explain the second request:\n%s", out.String())
	}
}

// replaceRRs drops the requests of fingerprint fp and adds rrs.
func replaceRRs(all []v1alpha1.RemediationRequest, fp string, rrs ...v1alpha1.RemediationRequest) []v1alpha1.RemediationRequest {
	var out []v1alpha1.RemediationRequest
	for _, rr := range all {
		if rr.Spec.Fingerprint != fp {
			out = append(out, rr)
		}
	}
	return append(out, rrs...)
}

func TestSummaryCheckFailures(t *testing.T) {
	cases := []struct {
		name   string
		change func(runs []StormRun, obs *observation)
		want   []error
	}{
		{
			name: "two requests of one incident in progress at once",
			change: func(runs []StormRun, obs *observation) {
				obs.requests.MaxActive[fingerprint("aaaaaa", 0)] = 2
				obs.requests.Violations = []string{"two in progress"}
			},
			want: []error{storm.ErrDuplicates},
		},
		{
			name: "a violation on a fingerprint outside the demo",
			change: func(runs []StormRun, obs *observation) {
				obs.requests.Violations = []string{"another fingerprint: two in progress"}
			},
			want: []error{storm.ErrDuplicates},
		},
		{
			name: "occurrence count off by one",
			change: func(runs []StormRun, obs *observation) {
				obs.rrs[0].Status.Deduplication.OccurrenceCount = 99
			},
			want: []error{storm.ErrCountsNotExact},
		},
		{
			name: "no request at all for an incident",
			change: func(runs []StormRun, obs *observation) {
				obs.rrs = replaceRRs(obs.rrs, fingerprint("bbbbbb", 4))
			},
			want: []error{storm.ErrCountsNotExact},
		},
		{
			name: "a request still Executing when the wait ended",
			change: func(runs []StormRun, obs *observation) {
				obs.rrs[1].Status.Phase = v1alpha1.PhaseExecuting
				obs.wfes[1].Status.Phase = v1alpha1.WorkflowRunning
				obs.timedOut = true
			},
			want: []error{ErrNotTerminal},
		},
		{
			name: "a request never looked at (empty phase)",
			change: func(runs []StormRun, obs *observation) {
				obs.rrs[2].Status.Phase = ""
				obs.wfes = obs.wfes[:2:2]
				obs.wfes = append(obs.wfes, fakeWFE(&obs.rrs[3], 1, v1alpha1.WorkflowCompleted),
					fakeWFE(&obs.rrs[4], 1, v1alpha1.WorkflowCompleted), fakeWFE(&obs.rrs[5], 1, v1alpha1.WorkflowCompleted))
			},
			want: []error{ErrNotTerminal},
		},
		{
			name: "two active executions on one target",
			change: func(runs []StormRun, obs *observation) {
				obs.executions.MaxActive[target("aaaaaa", 0).LockKey()] = 2
				obs.executions.Violations = []string{"two active"}
			},
			want: []error{ErrConcurrentExecutions},
		},
		{
			name: "a request served by two executions",
			change: func(runs []StormRun, obs *observation) {
				obs.wfes = append(obs.wfes, fakeWFE(&obs.rrs[0], 2, v1alpha1.WorkflowCompleted))
			},
			want: []error{ErrDuplicateExecutions},
		},
		{
			name: "a terminal request without execution",
			change: func(runs []StormRun, obs *observation) {
				obs.wfes = obs.wfes[1:]
			},
			want: []error{ErrMissingExecutions},
		},
		{
			name: "the watch lost changes",
			change: func(runs []StormRun, obs *observation) {
				obs.executions.Gaps = []string{"the watch of executions failed"}
			},
			want: []error{ErrWatchIncomplete},
		},
		{
			name: "a gateway died",
			change: func(runs []StormRun, obs *observation) {
				obs.exits = []Exit{{Name: "gw-1", PID: 42, Status: errors.New("signal: killed"), LogPath: "/tmp/gw-1.log"}}
			},
			want: []error{ErrProcessExited},
		},
		{
			name: "signals without a 2xx answer",
			change: func(runs []StormRun, obs *observation) {
				runs[1].Report.Failed = 3
			},
			want: []error{storm.ErrUnacknowledged},
		},
		{
			name: "verification failed",
			change: func(runs []StormRun, obs *observation) {
				runs[0].Report.Verification = &storm.Verification{Error: "forbidden"}
			},
			want: []error{storm.ErrNotVerified},
		},
		{
			name: "verification missing",
			change: func(runs []StormRun, obs *observation) {
				runs[0].Report.Verification = nil
			},
			want: []error{storm.ErrNotVerified},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runs, obs := goodDemo()
			tc.change(runs, &obs)
			s := summarize(runs, obs)
			err := s.Check()
			if err == nil {
				t.Fatal("Check = nil, want an error")
			}
			for _, sentinel := range allSentinels {
				wanted := false
				for _, w := range tc.want {
					wanted = wanted || w == sentinel
				}
				if got := errors.Is(err, sentinel); got != wanted {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", err, sentinel, got, wanted)
				}
			}
			var out strings.Builder
			if err := s.WriteText(&out); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "checks: FAILED") {
				t.Errorf("WriteText does not say the checks failed:\n%s", out.String())
			}
		})
	}
}

func TestExitIsErrProcessExited(t *testing.T) {
	var err error = Exit{Name: "orchestrator-1", PID: 7, LogPath: "/logs/orchestrator-1.log"}
	if !errors.Is(err, ErrProcessExited) {
		t.Fatalf("errors.Is(%v, ErrProcessExited) = false", err)
	}
	var e Exit
	if !errors.As(fmt.Errorf("wrapped: %w", err), &e) || e.Name != "orchestrator-1" {
		t.Fatalf("errors.As did not recover the Exit: %+v", e)
	}
	for _, want := range []string{"orchestrator-1", "pid 7", "exit status 0", "/logs/orchestrator-1.log"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err.Error(), want)
		}
	}
}

// The lines the up command's users and its integration test read.
func TestWriteTextGoodDemo(t *testing.T) {
	runs, obs := goodDemo()
	var out strings.Builder
	if err := summarize(runs, obs).WriteText(&out); err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{
		`(?m)^signals sent:\s+150 \(150 acknowledged\)$`,
		`(?m)^RRs created:\s+6 for 6 incidents$`,
		`(?m)^duplicate RRs:\s+0 \(at most 1 in progress per incident at once\)$`,
		`(?m)^occurrence counts exact:\s+yes$`,
		`(?m)^RRs terminal:\s+6 of 6 \(Completed 6; waited 700ms\)$`,
		`(?m)^WFEs run:\s+6 on 6 targets$`,
		`(?m)^duplicate WFEs:\s+0$`,
		`(?m)^max active WFEs per target:\s+1$`,
		`(?m)^latency ms:\s+p50 38\.0  p95 93\.0  p99 99\.0  max 100\.0 \(150 answered\)$`,
		`(?m)^identical\s+aaaaaa\s+100\s+100\s+1\s+1\s+50\.0\s+95\.0\s+99\.0$`,
		`(?m)^identical\s+0\s+local:Deployment/storm/storm-aaaaaa-0\s+100\s+1\s+100\s+Completed 1\s+1\s+1\s+1$`,
		`(?m)^checks: passed$`,
	} {
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Errorf("output does not match %s:\n%s", re, out.String())
		}
	}
}

func TestLatencySummary(t *testing.T) {
	if got := latencySummary(nil); got != (storm.LatencySummary{}) {
		t.Errorf("latencySummary(nil) = %+v, want zero", got)
	}
	var ds []time.Duration
	for i := 200; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, time.Duration(i)*time.Millisecond+250*time.Microsecond)
	}
	got := latencySummary(ds)
	want := storm.LatencySummary{Count: 200, P50Ms: 100.3, P95Ms: 190.3, P99Ms: 198.3, MaxMs: 200.3}
	if got != want {
		t.Errorf("latencySummary = %+v, want %+v", got, want)
	}
}

func TestPhaseList(t *testing.T) {
	for _, tc := range []struct {
		in   map[v1alpha1.RemediationPhase]int
		want string
	}{
		{nil, "-"},
		{map[v1alpha1.RemediationPhase]int{v1alpha1.PhaseCompleted: 1}, "Completed 1"},
		{map[v1alpha1.RemediationPhase]int{v1alpha1.PhaseBlocked: 1, v1alpha1.PhaseCompleted: 5, v1alpha1.PhaseFailed: 1}, "Completed 5, Blocked 1, Failed 1"},
	} {
		if got := phaseList(tc.in); got != tc.want {
			t.Errorf("phaseList(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
