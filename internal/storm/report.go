package storm

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of one storm. Its JSON field names are stable: tools
// and the benchmark read them.
type Report struct {
	// RunID is in every target name of the run.
	RunID string `json:"runID"`
	// Payload, Cluster and SignalNamespace echo the config.
	Payload         Payload `json:"payload"`
	Cluster         string  `json:"cluster"`
	SignalNamespace string  `json:"signalNamespace"`
	// Targets are the gateway base URLs used.
	Targets []string `json:"targets"`
	// Signals, Concurrency and Fingerprints are the resolved config.
	Signals      int `json:"signals"`
	Concurrency  int `json:"concurrency"`
	Fingerprints int `json:"fingerprints"`
	// Rate is the resolved config's pacing of first attempts, in signals
	// per second; 0 (left out of the JSON) means the storm was not paced.
	Rate float64 `json:"rate,omitempty"`

	// StartedAt is when the first signal was sent.
	StartedAt time.Time `json:"startedAt"`
	// DurationSeconds is from the first send to the last final answer.
	DurationSeconds float64 `json:"durationSeconds"`
	// Throughput is signals with a final answer per second of Duration.
	Throughput float64 `json:"throughputPerSecond"`

	// Outcomes counts signals by final outcome: an HTTP status code in
	// decimal ("201", "202", "503"), OutcomeError or OutcomeCanceled.
	Outcomes map[string]int `json:"outcomes"`
	// Acknowledged counts signals answered 2xx, Counted those answered 201,
	// 202 or 207; Failed is Signals - Acknowledged.
	Acknowledged int `json:"acknowledged"`
	Counted      int `json:"counted"`
	Failed       int `json:"failed"`

	// Attempts is the number of requests sent; Retries = Attempts - the
	// signals that were sent at least once.
	Attempts int `json:"attempts"`
	Retries  int `json:"retries"`
	// RetriedSignals counts signals sent more than once.
	RetriedSignals int `json:"retriedSignals"`
	// RetriesByCause splits Retries by what caused them: the status code
	// of a retried answer ("503", "504", "429") or "connection".
	RetriesByCause map[string]int `json:"retriesByCause"`
	// MaxAttempts is the most attempts any one signal took.
	MaxAttempts int `json:"maxAttempts"`

	// Latency summarises the latencies of signals with a final HTTP answer.
	Latency LatencySummary `json:"latency"`

	// OtherFingerprints is the sum of Incident.OtherFingerprints.
	OtherFingerprints int `json:"otherFingerprints"`

	// PerTarget counts attempts and answers by gateway.
	PerTarget []TargetSummary `json:"perTarget"`

	// Incidents has one entry per fingerprint, in index order.
	Incidents []Incident `json:"incidents"`

	// Verification is present when a kube config was given and the run
	// completed.
	Verification *Verification `json:"verification,omitempty"`
	// APIRequests is present when a kube config was given and metrics were
	// not turned off.
	APIRequests *APIRequests `json:"apiRequests,omitempty"`

	// Results has one entry per signal, in index order. The command leaves
	// it out of its JSON unless asked (it is as long as the storm).
	Results []SignalResult `json:"results,omitempty"`
}

// LatencySummary is in milliseconds, rounded to 0.1 ms, over the signals
// with a final HTTP answer (Count of them): from the first send to the
// final answer, retry waits included.
type LatencySummary struct {
	Count int     `json:"count"`
	P50Ms float64 `json:"p50Ms"`
	P95Ms float64 `json:"p95Ms"`
	P99Ms float64 `json:"p99Ms"`
	MaxMs float64 `json:"maxMs"`
}

// TargetSummary is one gateway's share of the storm.
type TargetSummary struct {
	URL string `json:"url"`
	// Attempts is the number of requests sent to it.
	Attempts int `json:"attempts"`
	// Final counts, by outcome as in Report.Outcomes, the signals whose
	// last attempt went to it.
	Final map[string]int `json:"final"`
}

// Incident is one fingerprint's signals and, after verification, its
// RemediationRequests.
type Incident struct {
	Index int `json:"index"`
	// Target is the Deployment name the signals named; Fingerprint is
	// dedup.Fingerprint of its TargetRef.
	Target      string `json:"target"`
	Fingerprint string `json:"fingerprint"`
	// Sent is the number of signals of the incident; Attempts the requests
	// they took; Acknowledged and Counted as in Report.
	Sent         int `json:"sent"`
	Attempts     int `json:"attempts"`
	Acknowledged int `json:"acknowledged"`
	Counted      int `json:"counted"`
	// NamesAnswered are the distinct RemediationRequest names the gateway's
	// answers gave, sorted, at most maxNamesAnswered. More than one name is
	// a duplicate seen without asking the API server.
	NamesAnswered []string `json:"namesAnswered,omitempty"`
	// OtherFingerprints counts answers that named a fingerprint other than
	// Fingerprint: the gateway computed another target (a --cluster that
	// differs from the gateway's, say), so verification will not find its
	// RemediationRequests.
	OtherFingerprints int `json:"otherFingerprints"`
	// Found is set by verification.
	Found *IncidentRRs `json:"found,omitempty"`
}

// maxNamesAnswered bounds Incident.NamesAnswered: one is right, a handful
// shows the problem, thousands would only bloat the report.
const maxNamesAnswered = 10

// Errors Report.Check returns, joined, for errors.Is.
var (
	// ErrDuplicates: some incident has more than one RemediationRequest.
	ErrDuplicates = errors.New("duplicate RemediationRequests")
	// ErrCountsNotExact: some incident's occurrence count differs from its
	// signals.
	ErrCountsNotExact = errors.New("occurrence counts not exact")
	// ErrUnacknowledged: some signal ended without a 2xx answer.
	ErrUnacknowledged = errors.New("signals not acknowledged")
	// ErrNotVerified: verification was asked for and could not be done.
	ErrNotVerified = errors.New("verification failed")
)

// Check returns nil when the storm met its expectations, or the joined
// reasons it did not: duplicates, counts not exact (only if expectExact),
// signals without a 2xx, verification that could not be done.
func (r *Report) Check(expectExact bool) error {
	var errs []error
	if r.Failed > 0 {
		errs = append(errs, fmt.Errorf("%w: %d of %d", ErrUnacknowledged, r.Failed, r.Signals))
	}
	if v := r.Verification; v != nil {
		switch {
		case v.Error != "":
			errs = append(errs, fmt.Errorf("%w: %s", ErrNotVerified, v.Error))
		default:
			if v.Duplicates > 0 {
				errs = append(errs, fmt.Errorf("%w: %d", ErrDuplicates, v.Duplicates))
			}
			if expectExact && !v.CountsExact {
				errs = append(errs, fmt.Errorf("%w: %d of %d incidents off", ErrCountsNotExact, countInexact(r.Incidents), len(r.Incidents)))
			}
		}
	}
	return errors.Join(errs...)
}

func countInexact(incs []Incident) int {
	n := 0
	for _, inc := range incs {
		if inc.Found != nil && !inc.Found.CountExact {
			n++
		}
	}
	return n
}

// newReport starts a report for a resolved config.
func newReport(c Config, incs []incident) *Report {
	r := &Report{
		RunID:           c.RunID,
		Payload:         c.Payload,
		Cluster:         c.Cluster,
		SignalNamespace: c.Namespace,
		Targets:         slices.Clone(c.Targets),
		Signals:         c.Signals,
		Concurrency:     min(c.Concurrency, c.Signals),
		Fingerprints:    c.Fingerprints,
		Rate:            c.Rate,
		Outcomes:        map[string]int{},
		RetriesByCause:  map[string]int{},
		Incidents:       make([]Incident, len(incs)),
	}
	for i, inc := range incs {
		r.Incidents[i] = Incident{Index: i, Target: inc.target.Name, Fingerprint: inc.fingerprint}
	}
	return r
}

// addResults folds the per-signal results into the report.
func (r *Report) addResults(results []SignalResult, run time.Duration) {
	r.Results = results
	r.DurationSeconds = run.Seconds()
	perTarget := make(map[string]*TargetSummary, len(r.Targets))
	for _, t := range r.Targets {
		ts := TargetSummary{URL: t, Final: map[string]int{}}
		r.PerTarget = append(r.PerTarget, ts)
	}
	for i := range r.PerTarget {
		perTarget[r.PerTarget[i].URL] = &r.PerTarget[i]
	}
	names := make([]map[string]bool, len(r.Incidents))
	var latencies []time.Duration
	answered := 0
	for _, res := range results {
		r.Outcomes[res.Outcome]++
		inc := &r.Incidents[res.Incident]
		inc.Sent++
		inc.Attempts += res.Attempts
		r.Attempts += res.Attempts
		if res.Attempts > 0 {
			r.Retries += res.Attempts - 1
		}
		if res.Attempts > 1 {
			r.RetriedSignals++
		}
		r.MaxAttempts = max(r.MaxAttempts, res.Attempts)
		for cause, n := range res.retries {
			r.RetriesByCause[cause] += n
		}
		// Attempt a of signal i went to target (i+a-1) mod len.
		for a := range res.Attempts {
			perTarget[r.Targets[(res.Index+a)%len(r.Targets)]].Attempts++
		}
		if res.Attempts > 0 {
			perTarget[res.Target].Final[res.Outcome]++
		}
		if res.Acknowledged() {
			r.Acknowledged++
			inc.Acknowledged++
		}
		if res.Counted() {
			r.Counted++
			inc.Counted++
		}
		if res.Fingerprint != "" && res.Fingerprint != inc.Fingerprint {
			inc.OtherFingerprints++
			r.OtherFingerprints++
		}
		if res.RemediationRequest != "" {
			if names[res.Incident] == nil {
				names[res.Incident] = map[string]bool{}
			}
			names[res.Incident][res.RemediationRequest] = true
		}
		if res.Code != 0 && res.Outcome != OutcomeCanceled {
			latencies = append(latencies, res.Latency)
			answered++
		}
	}
	r.Failed = r.Signals - r.Acknowledged
	for i, set := range names {
		ns := make([]string, 0, len(set))
		for n := range set {
			ns = append(ns, n)
		}
		slices.Sort(ns)
		if len(ns) > maxNamesAnswered {
			ns = ns[:maxNamesAnswered]
		}
		if len(ns) > 0 {
			r.Incidents[i].NamesAnswered = ns
		}
	}
	r.Latency = summarize(latencies)
	if run > 0 {
		r.Throughput = float64(answered) / run.Seconds()
	}
}

func summarize(ds []time.Duration) LatencySummary {
	s := slices.Clone(ds)
	slices.Sort(s)
	return LatencySummary{
		Count: len(s),
		P50Ms: ms(Percentile(s, 50)),
		P95Ms: ms(Percentile(s, 95)),
		P99Ms: ms(Percentile(s, 99)),
		MaxMs: ms(Percentile(s, 100)),
	}
}

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest value with at least p% of the values at
// or below it. It is 0 for no values.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// ms is d in milliseconds rounded to 0.1.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Millisecond)*10) / 10
}

// maxIncidentRows bounds the incident table of WriteText; incidents that
// failed a check come first.
const maxIncidentRows = 20

// WriteText renders the report as aligned tables for a person.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "storm %s: %d %s signal(s) for %d incident(s), concurrency %d", r.RunID, r.Signals, r.Payload, r.Fingerprints, r.Concurrency)
	if r.Rate > 0 {
		fmt.Fprintf(&b, ", rate %g/s", r.Rate)
	}
	fmt.Fprintf(&b, ", %d target(s)\n", len(r.Targets))
	fmt.Fprintf(&b, "duration %.3fs, throughput %.1f signals/s\n\n", r.DurationSeconds, r.Throughput)

	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OUTCOME\tSIGNALS")
	for _, k := range sortedKeys(r.Outcomes) {
		fmt.Fprintf(tw, "%s\t%d\n", k, r.Outcomes[k])
	}
	tw.Flush()
	fmt.Fprintf(&b, "acknowledged %d/%d (counted %d), failed %d\n", r.Acknowledged, r.Signals, r.Counted, r.Failed)
	fmt.Fprintf(&b, "attempts %d, retries %d", r.Attempts, r.Retries)
	if r.Retries > 0 {
		parts := make([]string, 0, len(r.RetriesByCause))
		for _, k := range sortedKeys(r.RetriesByCause) {
			parts = append(parts, fmt.Sprintf("%s %d", k, r.RetriesByCause[k]))
		}
		fmt.Fprintf(&b, " (%s; %d signal(s) retried, at most %d attempts)", strings.Join(parts, ", "), r.RetriedSignals, r.MaxAttempts)
	}
	b.WriteString("\n")
	if r.OtherFingerprints > 0 {
		fmt.Fprintf(&b, "warning: %d answer(s) named another fingerprint than expected; does --cluster (%s) match the gateways'?\n", r.OtherFingerprints, r.Cluster)
	}
	l := r.Latency
	fmt.Fprintf(&b, "latency ms (%d answered): p50 %.1f  p95 %.1f  p99 %.1f  max %.1f\n\n", l.Count, l.P50Ms, l.P95Ms, l.P99Ms, l.MaxMs)

	if len(r.PerTarget) > 1 {
		tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TARGET\tATTEMPTS\tFINAL ANSWERS")
		for _, t := range r.PerTarget {
			parts := make([]string, 0, len(t.Final))
			for _, k := range sortedKeys(t.Final) {
				parts = append(parts, fmt.Sprintf("%s:%d", k, t.Final[k]))
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\n", t.URL, t.Attempts, strings.Join(parts, " "))
		}
		tw.Flush()
		b.WriteString("\n")
	}

	if v := r.Verification; v != nil {
		fmt.Fprintf(&b, "verification in namespace %s\n", v.Namespace)
		if v.Error != "" {
			fmt.Fprintf(&b, "  not done: %s\n\n", v.Error)
		} else {
			fmt.Fprintf(&b, "RRs expected %d, found %d, duplicates %d, missing %d\n", v.RRsExpected, v.RRsFound, v.Duplicates, v.Missing)
			if v.Successive > 0 {
				fmt.Fprintf(&b, "successive RRs %d: an incident's RR finished during the run and a new one took later signals (not duplicates)\n", v.Successive)
			}
			fmt.Fprintf(&b, "counts exact: %s; bounds (counted <= count <= attempts) held: %s\n", yesNo(v.CountsExact), yesNo(v.BoundsHeld))
		}
	}
	b.WriteString(r.incidentTable())

	if a := r.APIRequests; a != nil {
		b.WriteString("API server requests during the run\n")
		if a.Error != "" {
			fmt.Fprintf(&b, "  not measured: %s\n", a.Error)
		} else {
			fmt.Fprintf(&b, "subtracted: %s\n", a.Subtracted)
			tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RESOURCE\tVERB\tREQUESTS\tPER SIGNAL\tRAW\tIDLE SUBTRACTED")
			for _, row := range a.ByResourceVerb {
				fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.3f\t%.0f\t%.1f\n", row.Resource, row.Verb, row.Requests, row.PerSignal, row.Raw, row.IdleSubtracted)
			}
			fmt.Fprintf(tw, "total\t\t%.1f\t%.3f\t\t\n", a.Total, a.PerSignal)
			tw.Flush()
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// incidentTable lists incidents, the ones that failed a check first, at
// most maxIncidentRows of them.
func (r *Report) incidentTable() string {
	rows := make([]*Incident, 0, len(r.Incidents))
	for i := range r.Incidents {
		rows = append(rows, &r.Incidents[i])
	}
	bad := func(inc *Incident) bool {
		if inc.Acknowledged < inc.Sent || len(inc.NamesAnswered) > 1 || inc.OtherFingerprints > 0 {
			return true
		}
		return inc.Found != nil && (inc.Found.RRs != 1 || !inc.Found.CountExact || !inc.Found.BoundsHeld)
	}
	sort.SliceStable(rows, func(i, j int) bool { return bad(rows[i]) && !bad(rows[j]) })
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	if r.Verification != nil && r.Verification.Error == "" {
		fmt.Fprintln(tw, "INCIDENT\tTARGET\tSENT\tATTEMPTS\tACKED\tCOUNTED\tRRS\tCOUNT\tEXACT\tBOUNDS\tNAMES")
	} else {
		fmt.Fprintln(tw, "INCIDENT\tTARGET\tSENT\tATTEMPTS\tACKED\tCOUNTED\tNAMES ANSWERED")
	}
	for n, inc := range rows {
		if n == maxIncidentRows {
			fmt.Fprintf(tw, "... %d more\n", len(rows)-n)
			break
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d", inc.Index, inc.Target, inc.Sent, inc.Attempts, inc.Acknowledged, inc.Counted)
		if f := inc.Found; f != nil {
			fmt.Fprintf(tw, "\t%d\t%d\t%s\t%s\t%s", f.RRs, f.OccurrenceCount, yesNo(f.CountExact), yesNo(f.BoundsHeld), strings.Join(f.Names, ","))
		} else {
			fmt.Fprintf(tw, "\t%s", strings.Join(inc.NamesAnswered, ","))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	b.WriteString("\n")
	return b.String()
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

// sortedKeys orders outcome keys numerically where they are codes, words
// after.
func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, errA := strconv.Atoi(keys[i])
		b, errB := strconv.Atoi(keys[j])
		switch {
		case errA == nil && errB == nil:
			return a < b
		case errA == nil:
			return true
		case errB == nil:
			return false
		}
		return keys[i] < keys[j]
	})
	return keys
}
