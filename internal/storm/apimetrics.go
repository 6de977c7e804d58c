package storm

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// requestMetric is the API server's counter of requests served.
const requestMetric = "apiserver_request_total"

// ResourceVerb keys API server request counts. Resource includes the
// subresource after a slash ("remediationrequests/status"); Verb is the
// API server's label value ("LIST", "POST", "PUT", "WATCH", ...).
type ResourceVerb struct {
	Resource string
	Verb     string
}

// RequestCounts are cumulative apiserver_request_total values summed over
// every label but resource, subresource and verb. Requests for non-resource
// URLs (/metrics, /healthz, discovery) are left out: the scrapes themselves
// are such requests.
type RequestCounts map[ResourceVerb]float64

// ParseRequestCounts reads apiserver_request_total out of a /metrics page in
// the Prometheus text format. Only the lines of that family are parsed: the
// page of a kube-apiserver is megabytes, almost all of it histograms.
func ParseRequestCounts(r io.Reader) (RequestCounts, error) {
	var only bytes.Buffer
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if isFamilyLine(line, requestMetric) {
			only.Write(line)
			only.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(&only)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", requestMetric, err)
	}
	counts := make(RequestCounts)
	mf, ok := families[requestMetric]
	if !ok {
		return counts, nil
	}
	for _, m := range mf.GetMetric() {
		labels := labelMap(m)
		if labels["resource"] == "" {
			continue
		}
		key := ResourceVerb{Resource: labels["resource"], Verb: labels["verb"]}
		if sub := labels["subresource"]; sub != "" {
			key.Resource += "/" + sub
		}
		var v float64
		switch {
		case m.GetCounter() != nil:
			v = m.GetCounter().GetValue()
		case m.GetUntyped() != nil:
			v = m.GetUntyped().GetValue()
		}
		counts[key] += v
	}
	return counts, nil
}

// isFamilyLine reports whether line is a sample, HELP or TYPE line of the
// metric family name.
func isFamilyLine(line []byte, name string) bool {
	s := string(line)
	if rest, ok := strings.CutPrefix(s, "# HELP "); ok {
		s = rest
	} else if rest, ok := strings.CutPrefix(s, "# TYPE "); ok {
		s = rest
	}
	rest, ok := strings.CutPrefix(s, name)
	return ok && (strings.HasPrefix(rest, "{") || strings.HasPrefix(rest, " "))
}

func labelMap(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// delta is after - before per key. A key whose counter went down was reset
// (the API server restarted): its delta is the new value, the best lower
// bound available.
func delta(before, after RequestCounts) RequestCounts {
	d := make(RequestCounts, len(after))
	for k, a := range after {
		b := before[k]
		if a < b {
			d[k] = a
		} else if a > b {
			d[k] = a - b
		}
	}
	return d
}

// APIRequests is what the API server served during the storm.
type APIRequests struct {
	// RunSeconds is the storm's duration: from the first send to the last
	// answer.
	RunSeconds float64 `json:"runSeconds"`
	// IdleCorrection says whether background requests were subtracted.
	IdleCorrection bool `json:"idleCorrection"`
	// IdleSeconds is the idle interval after the storm over which the
	// background rate was measured; 0 without correction.
	IdleSeconds float64 `json:"idleSeconds"`
	// Subtracted explains the correction in words.
	Subtracted string `json:"subtracted"`
	// Total is the sum of Requests over ByResourceVerb; PerSignal is Total
	// divided by the signals sent.
	Total     float64 `json:"total"`
	PerSignal float64 `json:"perSignal"`
	// ByResourceVerb lists every resource and verb with requests during the
	// run, most requests first.
	ByResourceVerb []APIRequestCount `json:"byResourceVerb"`
	// Error says why no accounting could be done (for example, the
	// kubeconfig's identity may not GET /metrics); everything else is
	// then empty.
	Error string `json:"error,omitempty"`
}

// APIRequestCount is the requests of one resource and verb.
type APIRequestCount struct {
	Resource string `json:"resource"`
	Verb     string `json:"verb"`
	// Raw is the counter's increase over the run.
	Raw float64 `json:"raw"`
	// IdleSubtracted is the background estimate: the increase over the
	// idle interval scaled to the run's duration.
	IdleSubtracted float64 `json:"idleSubtracted"`
	// Requests is Raw - IdleSubtracted, floored at 0.
	Requests float64 `json:"requests"`
	// PerSignal is Requests divided by the signals sent.
	PerSignal float64 `json:"perSignal"`
}

// accountRequests turns three scrapes into the run's request counts: a
// before the storm, b right after it, c after an idle interval. The
// background rate over the idle interval, scaled to the run's length, is
// taken as what the run would have seen without the storm:
//
//	requests = (b - a) - (c - b) * run/idle, floored at 0
//
// With idle == 0 (no correction) requests = b - a.
func accountRequests(a, b, c RequestCounts, run, idle time.Duration, signals int) *APIRequests {
	out := &APIRequests{RunSeconds: run.Seconds(), IdleCorrection: idle > 0}
	during := delta(a, b)
	var background RequestCounts
	scale := 0.0
	if idle > 0 {
		out.IdleSeconds = idle.Seconds()
		background = delta(b, c)
		scale = float64(run) / float64(idle)
		out.Subtracted = fmt.Sprintf("requests seen in %.1fs idle after the run, x %.3g (run %.1fs / idle %.1fs), per resource and verb", idle.Seconds(), scale, run.Seconds(), idle.Seconds())
	} else {
		out.Subtracted = "nothing: raw counts of the run, background included"
	}
	for k := range during {
		row := APIRequestCount{Resource: k.Resource, Verb: k.Verb, Raw: during[k], IdleSubtracted: background[k] * scale}
		row.Requests = math.Max(0, row.Raw-row.IdleSubtracted)
		if signals > 0 {
			row.PerSignal = row.Requests / float64(signals)
		}
		out.Total += row.Requests
		out.ByResourceVerb = append(out.ByResourceVerb, row)
	}
	sort.Slice(out.ByResourceVerb, func(i, j int) bool {
		x, y := out.ByResourceVerb[i], out.ByResourceVerb[j]
		if x.Requests != y.Requests {
			return x.Requests > y.Requests
		}
		if x.Resource != y.Resource {
			return x.Resource < y.Resource
		}
		return x.Verb < y.Verb
	})
	if signals > 0 {
		out.PerSignal = out.Total / float64(signals)
	}
	return out
}

// idleInterval is the run's duration kept inside [lo, hi]: long enough to
// see a background rate, short enough not to make a quick run slow.
func idleInterval(run, lo, hi time.Duration) time.Duration {
	return min(max(run, lo), hi)
}
