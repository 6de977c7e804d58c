package runner

import (
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
)

// plotScenarios are the scenarios whose latency distributions are plotted.
var plotScenarios = []string{"S1", "S2"}

// strategyStyle gives each strategy its line in the plot.
var strategyStyle = map[Strategy]struct{ color, dash string }{
	Leasehold: {"#1b7837", ""},
	Baseline:  {"#c51b7d", ""},
	Floor:     {"#666666", "6 4"},
}

// Plot geometry, in SVG user units. One panel per plotted scenario, side
// by side.
const (
	panelWidth  = 460
	panelHeight = 412
	marginLeft  = 58
	marginRight = 16
	marginTop   = 44
	// marginBottom holds the tick labels, the axis title and below them
	// the legend, one row per strategy: a legend inside the plot would
	// cover some curve in one run or another.
	marginBottom = 100
	// maxCurvePoints bounds each curve: quantiles at this many evenly
	// spaced ranks draw the same line as thousands of points.
	maxCurvePoints = 400
)

// WriteLatencySVG draws, for S1 and S2 (those present), the cumulative
// distribution of signal latencies of each strategy on a logarithmic time
// axis. The output depends only on the report, so a rerun on the same data
// gives the same bytes.
func WriteLatencySVG(w io.Writer, rep *Report) error {
	var panels []*ScenarioResult
	for _, id := range plotScenarios {
		for i := range rep.Scenarios {
			if rep.Scenarios[i].ID == id && len(rep.Scenarios[i].Strategies) > 0 {
				panels = append(panels, &rep.Scenarios[i])
			}
		}
	}
	width := panelWidth * max(len(panels), 1)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		width, panelHeight, width, panelHeight)
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`+"\n", width, panelHeight)
	if len(panels) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">no S1 or S2 latencies in this run</text>`+"\n", width/2, panelHeight/2)
	}
	for i, sc := range panels {
		writePanel(&b, float64(i*panelWidth), sc)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// writePanel draws one scenario's curves with its axes, at x offset ox.
func writePanel(b *strings.Builder, ox float64, sc *ScenarioResult) {
	x0, x1 := ox+marginLeft, ox+panelWidth-marginRight
	y0, y1 := float64(panelHeight-marginBottom), float64(marginTop)

	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range sc.Strategies {
		for _, v := range s.Summary.LatenciesMs {
			if v > 0 {
				lo = math.Min(lo, v)
			}
			hi = math.Max(hi, v)
		}
	}
	if math.IsInf(lo, 1) || hi <= 0 {
		lo, hi = 1, 10
	}
	// Whole decades, so that the ticks fall on round numbers.
	dlo, dhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	xOf := func(v float64) float64 {
		if v < math.Pow(10, dlo) {
			v = math.Pow(10, dlo)
		}
		return x0 + (math.Log10(v)-dlo)/(dhi-dlo)*(x1-x0)
	}
	yOf := func(f float64) float64 { return y0 - f*(y0-y1) }

	fmt.Fprintf(b, `<text x="%s" y="18" text-anchor="middle" font-size="14" font-weight="bold">%s</text>`+"\n",
		f1(ox+panelWidth/2), html.EscapeString(sc.ID+" "+sc.Title))
	fmt.Fprintf(b, `<text x="%s" y="34" text-anchor="middle" fill="#444444">%s</text>`+"\n",
		f1(ox+panelWidth/2), html.EscapeString(panelSubtitle(sc)))

	// Grid and ticks: 1, 2 and 5 of every decade on x; quarters and the
	// 95th and 99th percentiles on y.
	for d := dlo; d <= dhi; d++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, d)
			if math.Log10(v) > dhi+1e-9 {
				break
			}
			x := xOf(v)
			stroke := "#eeeeee"
			if m == 1 {
				stroke = "#cccccc"
			}
			fmt.Fprintf(b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s"/>`+"\n", f1(x), f1(y0), f1(x), f1(y1), stroke)
			fmt.Fprintf(b, `<text x="%s" y="%s" text-anchor="middle">%s</text>`+"\n", f1(x), f1(y0+16), msLabel(v))
		}
	}
	for _, f := range []float64{0, 0.25, 0.5, 0.75, 0.95, 0.99, 1} {
		y := yOf(f)
		fmt.Fprintf(b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#eeeeee"/>`+"\n", f1(x0), f1(y), f1(x1), f1(y))
		if f < 0.95 || f == 1 { // 95 % and 99 % are too close to 100 % for labels
			fmt.Fprintf(b, `<text x="%s" y="%s" text-anchor="end">%s</text>`+"\n", f1(x0-6), f1(y+4), strconv.FormatFloat(f*100, 'f', -1, 64)+"%")
		}
	}
	fmt.Fprintf(b, `<rect x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#333333"/>`+"\n", f1(x0), f1(y1), f1(x1-x0), f1(y0-y1))
	fmt.Fprintf(b, `<text x="%s" y="%s" text-anchor="middle">latency (ms, log scale)</text>`+"\n", f1((x0+x1)/2), f1(y0+34))
	fmt.Fprintf(b, `<text x="%s" y="%s" text-anchor="middle" transform="rotate(-90 %s %s)">signals answered</text>`+"\n",
		f1(ox+14), f1((y0+y1)/2), f1(ox+14), f1((y0+y1)/2))

	type entry struct{ color, dash, label string }
	var legend []entry
	for _, s := range sc.Strategies {
		vals := s.Summary.LatenciesMs
		if len(vals) == 0 {
			continue
		}
		style := strategyStyle[s.Strategy]
		dash := ""
		if style.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, style.dash)
		}
		var pts strings.Builder
		for _, p := range cdfPoints(vals, maxCurvePoints) {
			fmt.Fprintf(&pts, "%s,%s ", f1(xOf(p[0])), f1(yOf(p[1])))
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", style.color, dash, strings.TrimSpace(pts.String()))
		legend = append(legend, entry{color: style.color, dash: dash,
			label: fmt.Sprintf("%s: p50 %s, p99 %s ms", s.Strategy, num(s.Summary.Latency.P50Ms), num(s.Summary.Latency.P99Ms))})
	}
	legendY := y0 + 54
	for _, e := range legend {
		fmt.Fprintf(b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="2"%s/>`+"\n", f1(x0), f1(legendY), f1(x0+22), f1(legendY), e.color, e.dash)
		fmt.Fprintf(b, `<text x="%s" y="%s">%s</text>`+"\n", f1(x0+28), f1(legendY+4), html.EscapeString(e.label))
		legendY += 16
	}
}

// panelSubtitle states the sizes behind a panel.
func panelSubtitle(sc *ScenarioResult) string {
	p := sc.Params
	reps := ""
	if p.Reps > 1 {
		reps = fmt.Sprintf(" x %d repetitions", p.Reps)
	}
	return fmt.Sprintf("%d signals, %d fingerprint(s), concurrency %d, %d replicas%s", p.Signals, p.Fingerprints, p.Concurrency, p.Replicas, reps)
}

// cdfPoints returns (value, fraction at or below) pairs of sorted values:
// every value when there are at most n, else the values at n evenly spaced
// ranks, always including the last.
func cdfPoints(sorted []float64, n int) [][2]float64 {
	total := len(sorted)
	if total == 0 {
		return nil
	}
	var out [][2]float64
	if total <= n {
		for i, v := range sorted {
			out = append(out, [2]float64{v, float64(i+1) / float64(total)})
		}
		return out
	}
	for k := 1; k <= n; k++ {
		rank := int(math.Ceil(float64(k) / float64(n) * float64(total)))
		out = append(out, [2]float64{sorted[rank-1], float64(rank) / float64(total)})
	}
	return out
}

// msLabel is a tick label in milliseconds, from 1000 on in seconds ("2s").
// Three significant digits hide the binary error of powers of ten below 1.
func msLabel(v float64) string {
	if v >= 1000 {
		return strconv.FormatFloat(v/1000, 'g', 3, 64) + "s"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// f1 formats a coordinate with one decimal, so that output is stable.
func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
