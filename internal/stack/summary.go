package stack

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/overlap"
	"github.com/leasehold/leasehold/internal/storm"
)

// Errors Summary.Check returns, joined, for errors.Is, besides storm's
// ErrUnacknowledged, ErrNotVerified, ErrDuplicates and ErrCountsNotExact.
var (
	// ErrNotTerminal: some RemediationRequest of the demo had not reached
	// Completed, Failed or Cancelled when the wait ended.
	ErrNotTerminal = errors.New("RemediationRequests not terminal in time")
	// ErrConcurrentExecutions: a target had more than one non-terminal
	// WorkflowExecution at some moment.
	ErrConcurrentExecutions = errors.New("more than one active WorkflowExecution on a target")
	// ErrDuplicateExecutions: a RemediationRequest was served by more than
	// one WorkflowExecution.
	ErrDuplicateExecutions = errors.New("RemediationRequests with more than one WorkflowExecution")
	// ErrMissingExecutions: a terminal RemediationRequest was served by no
	// WorkflowExecution, so it did not go through the executor.
	ErrMissingExecutions = errors.New("terminal RemediationRequests without a WorkflowExecution")
	// ErrWatchIncomplete: the WorkflowExecution watch missed changes, so
	// the exclusion check is not complete.
	ErrWatchIncomplete = errors.New("WorkflowExecution watch incomplete")
	// ErrProcessExited: a service process ended while the stack was up.
	ErrProcessExited = errors.New("service process exited")
)

// StormRun is one storm of the demo.
type StormRun struct {
	// Name says which storm it was, such as "identical".
	Name   string
	Report *storm.Report
}

// IncidentRow is one incident of the demo: one workload its signals named,
// and what became of it.
type IncidentRow struct {
	// Storm is the StormRun.Name the incident belongs to; Index its number
	// in that storm.
	Storm string
	Index int
	// Target is the RemediationRequest's target (TargetRef.String), or the
	// workload the signals named when no request was found.
	Target string
	// Signals is the number of signals sent about it.
	Signals int
	// RRs is the number of RemediationRequests with its fingerprint;
	// Occurrences the sum of their occurrence counts; Terminal how many of
	// them are Completed, Failed or Cancelled; Phases their phases.
	RRs         int
	Occurrences int64
	Terminal    int
	Phases      map[v1alpha1.RemediationPhase]int
	// MaxActiveRRs is the most of its requests in progress at once, as the
	// watch saw: more than one is a duplicate.
	MaxActiveRRs int
	// WFEs is the number of WorkflowExecutions that served its requests;
	// MaxActiveWFEs the most executions non-terminal at once on its
	// target, as the watch saw.
	WFEs          int
	MaxActiveWFEs int
}

// Summary is the outcome of the demo. Check turns it into a verdict.
type Summary struct {
	Storms    []StormRun
	Incidents []IncidentRow

	// Signals is the number of signals sent, Acknowledged those answered
	// 2xx.
	Signals      int
	Acknowledged int
	// RRs is the number of RemediationRequests found for the demo's
	// incidents. An incident can have several, one after the other: the
	// gateway starts a new request for signals that arrive after the
	// previous one finished, and the demo's executions are short enough to
	// finish during a storm. RestartedIncidents counts such incidents.
	RRs                int
	RestartedIncidents int
	// DuplicateRRs is the sum over incidents of max(0, MaxActiveRRs-1):
	// requests of one incident in progress at the same time, which the
	// gateways must never create. MaxActiveRRs is the largest over
	// incidents.
	DuplicateRRs int
	MaxActiveRRs int
	// CountsExact: every incident's occurrence count, summed over its
	// requests, equals its signals.
	CountsExact bool
	// Terminal counts the RemediationRequests in a terminal phase at the
	// end of the wait, Phases all of them by phase.
	Terminal int
	Phases   map[v1alpha1.RemediationPhase]int
	// Wait is how long the demo waited, after the storms, for every
	// RemediationRequest to become terminal; TimedOut says it gave up.
	Wait     time.Duration
	TimedOut bool

	// WFEs is the number of WorkflowExecutions that served the demo's
	// requests, on Targets distinct targets.
	WFEs    int
	Targets int
	// DuplicateExecutions counts requests served by more than one
	// execution, MissingExecutions terminal requests served by none.
	DuplicateExecutions int
	MissingExecutions   int
	// MaxActiveWFEs is the most non-terminal executions one target had at
	// once, as the watch saw.
	MaxActiveWFEs int
	// RequestViolations and ExecutionViolations describe each moment a
	// fingerprint had two requests in progress, or a target two active
	// executions, anywhere in the namespace; WatchGaps each time a watch
	// lost track.
	RequestViolations   []string
	ExecutionViolations []string
	WatchGaps           []string

	// Latency is over every signal of every storm with a final HTTP answer.
	Latency storm.LatencySummary

	// Exits are the service processes that ended while the stack was up.
	Exits []Exit
}

// observation is what the demo saw after its storms: the inputs of
// summarize besides the storm reports.
type observation struct {
	// rrs may include requests of other fingerprints; they are ignored.
	rrs []v1alpha1.RemediationRequest
	// wfes may include executions of other requests; they are ignored.
	wfes []v1alpha1.WorkflowExecution
	// requests is the watch of requests by fingerprint, executions the
	// watch of executions by target lock key.
	requests   overlap.Result
	executions overlap.Result
	wait       time.Duration
	timedOut   bool
	exits      []Exit
}

// summarize matches the requests and executions found to the storms'
// incidents. It is a pure function of its inputs.
func summarize(storms []StormRun, obs observation) *Summary {
	s := &Summary{
		Storms:      storms,
		CountsExact: true,
		Phases:      map[v1alpha1.RemediationPhase]int{},
		Wait:        obs.wait,
		TimedOut:    obs.timedOut,
		Exits:       obs.exits,

		RequestViolations:   obs.requests.Violations,
		ExecutionViolations: obs.executions.Violations,
		WatchGaps:           append(slices.Clone(obs.requests.Gaps), obs.executions.Gaps...),
	}
	rrsByFP := map[string][]*v1alpha1.RemediationRequest{}
	for i := range obs.rrs {
		rr := &obs.rrs[i]
		rrsByFP[rr.Spec.Fingerprint] = append(rrsByFP[rr.Spec.Fingerprint], rr)
	}
	wfesByRR := map[string][]*v1alpha1.WorkflowExecution{}
	for i := range obs.wfes {
		wfe := &obs.wfes[i]
		uid := wfe.Spec.RemediationRequestRef.UID
		wfesByRR[uid] = append(wfesByRR[uid], wfe)
	}
	targets := map[string]bool{}
	var latencies []time.Duration
	for _, run := range storms {
		r := run.Report
		s.Signals += r.Signals
		s.Acknowledged += r.Acknowledged
		for _, res := range r.Results {
			if res.Code != 0 {
				latencies = append(latencies, res.Latency)
			}
		}
		for _, inc := range r.Incidents {
			row := IncidentRow{
				Storm: run.Name, Index: inc.Index, Target: inc.Target, Signals: inc.Sent,
				Phases: map[v1alpha1.RemediationPhase]int{}, MaxActiveRRs: obs.requests.MaxActive[inc.Fingerprint],
			}
			for _, rr := range rrsByFP[inc.Fingerprint] {
				row.RRs++
				row.Target = rr.Spec.Target.String()
				row.Occurrences += rr.EffectiveDeduplication().OccurrenceCount
				phase := rr.EffectivePhase()
				row.Phases[phase]++
				s.Phases[phase]++
				wfes := wfesByRR[string(rr.UID)]
				if rr.IsTerminal() {
					row.Terminal++
					if len(wfes) == 0 {
						s.MissingExecutions++
					}
				}
				if len(wfes) > 1 {
					s.DuplicateExecutions++
				}
				for _, wfe := range wfes {
					row.WFEs++
					key := wfe.Spec.Target.LockKey()
					targets[key] = true
					row.MaxActiveWFEs = max(row.MaxActiveWFEs, obs.executions.MaxActive[key])
				}
			}
			s.RRs += row.RRs
			if row.RRs > 1 {
				s.RestartedIncidents++
			}
			s.DuplicateRRs += max(0, row.MaxActiveRRs-1)
			s.MaxActiveRRs = max(s.MaxActiveRRs, row.MaxActiveRRs)
			s.MaxActiveWFEs = max(s.MaxActiveWFEs, row.MaxActiveWFEs)
			s.Terminal += row.Terminal
			s.WFEs += row.WFEs
			s.CountsExact = s.CountsExact && row.Occurrences == int64(row.Signals)
			s.Incidents = append(s.Incidents, row)
		}
	}
	s.Targets = len(targets)
	s.Latency = latencySummary(latencies)
	return s
}

// latencySummary is storm's LatencySummary over latencies of several runs.
func latencySummary(latencies []time.Duration) storm.LatencySummary {
	slices.Sort(latencies)
	l := storm.LatencySummary{Count: len(latencies)}
	if len(latencies) == 0 {
		return l
	}
	l.P50Ms = millis(storm.Percentile(latencies, 50))
	l.P95Ms = millis(storm.Percentile(latencies, 95))
	l.P99Ms = millis(storm.Percentile(latencies, 99))
	l.MaxMs = millis(latencies[len(latencies)-1])
	return l
}

// millis is d in milliseconds rounded to 0.1, as in storm's reports.
func millis(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Millisecond)*10) / 10
}

// Check returns nil when the demo met every expectation, or the joined
// reasons it did not: signals without a 2xx answer, verification not done,
// duplicate requests, inexact occurrence counts, requests not terminal in
// time, more than one active execution on a target, a request served by
// more or fewer than one execution, an incomplete watch, a service process
// that exited.
func (s *Summary) Check() error {
	var errs []error
	for _, run := range s.Storms {
		r := run.Report
		if r.Failed > 0 {
			errs = append(errs, fmt.Errorf("%s: %w: %d of %d", run.Name, storm.ErrUnacknowledged, r.Failed, r.Signals))
		}
		if v := r.Verification; v == nil || v.Error != "" {
			reason := "not run"
			if v != nil {
				reason = v.Error
			}
			errs = append(errs, fmt.Errorf("%s: %w: %s", run.Name, storm.ErrNotVerified, reason))
		}
	}
	if s.DuplicateRRs > 0 || len(s.RequestViolations) > 0 {
		errs = append(errs, fmt.Errorf("%w: %d in progress beside another of the same incident (seen %d time(s))", storm.ErrDuplicates, s.DuplicateRRs, len(s.RequestViolations)))
	}
	if !s.CountsExact {
		off := 0
		for _, row := range s.Incidents {
			if row.Occurrences != int64(row.Signals) {
				off++
			}
		}
		errs = append(errs, fmt.Errorf("%w: %d of %d incidents off", storm.ErrCountsNotExact, off, len(s.Incidents)))
	}
	if s.Terminal < s.RRs {
		errs = append(errs, fmt.Errorf("%w: %d of %d after %v", ErrNotTerminal, s.RRs-s.Terminal, s.RRs, s.Wait.Round(time.Millisecond)))
	}
	if s.MaxActiveWFEs > 1 || len(s.ExecutionViolations) > 0 {
		errs = append(errs, fmt.Errorf("%w: seen %d time(s), up to %d at once on a demo target", ErrConcurrentExecutions, len(s.ExecutionViolations), s.MaxActiveWFEs))
	}
	if s.DuplicateExecutions > 0 {
		errs = append(errs, fmt.Errorf("%w: %d", ErrDuplicateExecutions, s.DuplicateExecutions))
	}
	if s.MissingExecutions > 0 {
		errs = append(errs, fmt.Errorf("%w: %d", ErrMissingExecutions, s.MissingExecutions))
	}
	if len(s.WatchGaps) > 0 {
		errs = append(errs, fmt.Errorf("%w: %s", ErrWatchIncomplete, strings.Join(s.WatchGaps, "; ")))
	}
	for _, e := range s.Exits {
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// maxIncidentRows bounds the incident table; the demo has a handful.
const maxIncidentRows = 20

// WriteText renders the summary for a person: one row per storm, one per
// incident, then the totals the checks are about.
func (s *Summary) WriteText(w io.Writer) error {
	var b strings.Builder
	b.WriteString("\ndemo summary\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STORM\tRUN\tSIGNALS\tACKED\tINCIDENTS\tRRS\tP50 MS\tP95 MS\tP99 MS")
	for _, run := range s.Storms {
		r := run.Report
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\n", run.Name, r.RunID, r.Signals, r.Acknowledged, len(r.Incidents),
			rrsOf(s.Incidents, run.Name), r.Latency.P50Ms, r.Latency.P95Ms, r.Latency.P99Ms)
	}
	fmt.Fprintf(tw, "all\t\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\n", s.Signals, s.Acknowledged, len(s.Incidents), s.RRs, s.Latency.P50Ms, s.Latency.P95Ms, s.Latency.P99Ms)
	tw.Flush()
	b.WriteString("\n")

	tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STORM\tINCIDENT\tTARGET\tSIGNALS\tRRS\tOCCURRENCES\tPHASE\tWFES\tMAX ACTIVE RRS\tMAX ACTIVE WFES")
	for n, row := range s.Incidents {
		if n == maxIncidentRows {
			fmt.Fprintf(tw, "... %d more\n", len(s.Incidents)-n)
			break
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%s\t%d\t%d\t%d\n", row.Storm, row.Index, row.Target, row.Signals, row.RRs, row.Occurrences,
			phaseList(row.Phases), row.WFEs, row.MaxActiveRRs, row.MaxActiveWFEs)
	}
	tw.Flush()
	b.WriteString("\n")

	tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "signals sent:\t%d (%d acknowledged)\n", s.Signals, s.Acknowledged)
	restarted := ""
	if s.RestartedIncidents > 0 {
		restarted = fmt.Sprintf(" (%d incident(s) got a new RR for signals that came after the previous one finished)", s.RestartedIncidents)
	}
	fmt.Fprintf(tw, "RRs created:\t%d for %d incidents%s\n", s.RRs, len(s.Incidents), restarted)
	fmt.Fprintf(tw, "duplicate RRs:\t%d (at most %d in progress per incident at once)\n", s.DuplicateRRs, s.MaxActiveRRs)
	fmt.Fprintf(tw, "occurrence counts exact:\t%s\n", yesNo(s.CountsExact))
	waited := "waited " + s.Wait.Round(time.Millisecond).String()
	if s.TimedOut {
		waited = "gave up after " + s.Wait.Round(time.Millisecond).String()
	}
	fmt.Fprintf(tw, "RRs terminal:\t%d of %d (%s; %s)\n", s.Terminal, s.RRs, phaseList(s.Phases), waited)
	fmt.Fprintf(tw, "WFEs run:\t%d on %d targets\n", s.WFEs, s.Targets)
	fmt.Fprintf(tw, "duplicate WFEs:\t%d\n", s.DuplicateExecutions)
	fmt.Fprintf(tw, "max active WFEs per target:\t%d\n", s.MaxActiveWFEs)
	fmt.Fprintf(tw, "latency ms:\tp50 %.1f  p95 %.1f  p99 %.1f  max %.1f (%d answered)\n", s.Latency.P50Ms, s.Latency.P95Ms, s.Latency.P99Ms, s.Latency.MaxMs, s.Latency.Count)
	tw.Flush()
	for _, v := range append(slices.Clone(s.RequestViolations), s.ExecutionViolations...) {
		fmt.Fprintf(&b, "violation: %s\n", v)
	}
	if err := s.Check(); err != nil {
		fmt.Fprintf(&b, "checks: FAILED\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
	} else {
		b.WriteString("checks: passed\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func rrsOf(rows []IncidentRow, stormName string) int {
	n := 0
	for _, row := range rows {
		if row.Storm == stormName {
			n += row.RRs
		}
	}
	return n
}

// phaseList renders phase counts as "Completed 5, Blocked 1", largest
// first; "-" when empty.
func phaseList(phases map[v1alpha1.RemediationPhase]int) string {
	if len(phases) == 0 {
		return "-"
	}
	keys := make([]v1alpha1.RemediationPhase, 0, len(phases))
	for p := range phases {
		keys = append(keys, p)
	}
	sort.Slice(keys, func(i, j int) bool {
		if phases[keys[i]] != phases[keys[j]] {
			return phases[keys[i]] > phases[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, p := range keys {
		parts[i] = fmt.Sprintf("%s %d", p, phases[p])
	}
	return strings.Join(parts, ", ")
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}
