package runner

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/leasehold/leasehold/internal/storm"
)

// scrapeRequests reads the API server's request counters.
func (e *env) scrapeRequests(ctx context.Context) (storm.RequestCounts, error) {
	data, err := e.clientset.Discovery().RESTClient().Get().AbsPath("/metrics").
		SetHeader("Accept", "text/plain;version=0.0.4").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("get /metrics: %w", err)
	}
	return storm.ParseRequestCounts(bytes.NewReader(data))
}

// accountRequests is storm's accounting for a run that is not a storm:
// with a the counters before the run, b after it and c after an idle
// interval, requests = (b - a) - (c - b) * run/idle per resource and verb,
// floored at 0; per unit divides by n. Keys are sorted by requests, most
// first, then by name.
func accountRequests(a, b, c storm.RequestCounts, run, idle time.Duration, n int) (rows []storm.APIRequestCount, total float64) {
	scale := 0.0
	if idle > 0 {
		scale = float64(run) / float64(idle)
	}
	for k, after := range b {
		raw := counterDelta(a[k], after)
		if raw == 0 {
			continue
		}
		row := storm.APIRequestCount{Resource: k.Resource, Verb: k.Verb, Raw: raw}
		if c != nil {
			row.IdleSubtracted = counterDelta(after, c[k]) * scale
		}
		row.Requests = math.Max(0, row.Raw-row.IdleSubtracted)
		if n > 0 {
			row.PerSignal = row.Requests / float64(n)
		}
		total += row.Requests
		rows = append(rows, row)
	}
	sort.Slice(rows, func(i, j int) bool {
		x, y := rows[i], rows[j]
		if x.Requests != y.Requests {
			return x.Requests > y.Requests
		}
		if x.Resource != y.Resource {
			return x.Resource < y.Resource
		}
		return x.Verb < y.Verb
	})
	return rows, total
}

// counterDelta is the increase of a counter; one that went down was reset
// (the API server restarted), and its new value is the best lower bound.
func counterDelta(before, after float64) float64 {
	if after < before {
		return after
	}
	return after - before
}

// idleInterval is the run's duration kept inside [1s, 10s], as storm's
// default: long enough to see a background rate, short enough not to make
// the run slow.
func idleInterval(run time.Duration) time.Duration {
	return min(max(run, time.Second), 10*time.Second)
}

// mergeRows sums rows of several repetitions by resource and verb and
// divides by n, the units of all of them together.
func mergeRows(rows []storm.APIRequestCount, n int) (merged []storm.APIRequestCount, perUnit float64) {
	index := map[storm.ResourceVerb]int{}
	var total float64
	for _, r := range rows {
		k := storm.ResourceVerb{Resource: r.Resource, Verb: r.Verb}
		i, ok := index[k]
		if !ok {
			i = len(merged)
			index[k] = i
			merged = append(merged, storm.APIRequestCount{Resource: r.Resource, Verb: r.Verb})
		}
		merged[i].Raw += r.Raw
		merged[i].IdleSubtracted += r.IdleSubtracted
		merged[i].Requests += r.Requests
		total += r.Requests
	}
	for i := range merged {
		if n > 0 {
			merged[i].PerSignal = merged[i].Requests / float64(n)
		}
	}
	sort.Slice(merged, func(i, j int) bool {
		x, y := merged[i], merged[j]
		if x.Requests != y.Requests {
			return x.Requests > y.Requests
		}
		if x.Resource != y.Resource {
			return x.Resource < y.Resource
		}
		return x.Verb < y.Verb
	})
	if n > 0 {
		perUnit = total / float64(n)
	}
	return merged, perUnit
}
