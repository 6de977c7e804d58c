package runner

import (
	"bytes"
	"encoding/xml"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; run with -update and review the diff.\ngot:\n%s", name, got)
	}
}

func TestMarkdownGolden(t *testing.T) {
	var b bytes.Buffer
	if err := WriteMarkdown(&b, fixtureReport(), "benchmarks-latency.svg"); err != nil {
		t.Fatal(err)
	}
	golden(t, "benchmarks.md", b.Bytes())
}

func TestMarkdownStatesWhatMatters(t *testing.T) {
	var b bytes.Buffer
	if err := WriteMarkdown(&b, fixtureReport(), "benchmarks-latency.svg"); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{
		"| Date | 2026-11-27 09:30 UTC |",
		"| Machine | 2 cores (runtime.NumCPU), 8.0 GiB memory (MemTotal), Fixture CPU, linux/amd64, go1.26 |",
		"| Command | `go run ./bench/cmd/bench --reps 2` |",
		// A missed goal is said so, with its number.
		"| S2 | at most half the baseline's API requests per signal | **NOT met** | leasehold 3.00, baseline 5.00 requests per signal: 1.67x fewer |",
		"| S3 | zero duplicates and exact counts | not measured | scenario not run |",
		"![Latency distributions of S1 and S2 for each strategy](benchmarks-latency.svg)",
		"| leasehold | 0 (0 of 2 reps) | 2 of 2 reps | 0.25 |",
		"| baseline | 3 (1 of 2 reps) | 0 of 2 reps | 5.50 |",
		"| floor | n/a (no dedup) | n/a | 1.00 |",
		"| leasehold/baseline | 0.05 |",
		"| remediationrequests | LIST | 0.12 | 2.75 | 0.50 |",
		"<details><summary>Per repetition</summary>",
		"| leasehold | 6 | 6 | 0 | 0 | 6 | 1 | 20.0 | 45.0 | 45.0 |",
		"| leasehold | local hand-off | 10 | 2.50 | 4.00 | 4.40 | 1.00 |",
		"## Method",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Quick runs say they are no benchmark.
	rep := fixtureReport()
	rep.Quick = true
	b.Reset()
	if err := WriteMarkdown(&b, rep, ""); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "quick smoke run") {
		t.Error("a quick run's page does not say so")
	}
	if strings.Contains(b.String(), "![") {
		t.Error("a plot is linked though none was given")
	}
}

func TestCellEscapesTableSyntax(t *testing.T) {
	if got := cell("a|b\nc"); got != `a\|b c` {
		t.Errorf("cell = %q", got)
	}
}

func TestSVGGolden(t *testing.T) {
	var b bytes.Buffer
	if err := WriteLatencySVG(&b, fixtureReport()); err != nil {
		t.Fatal(err)
	}
	golden(t, "benchmarks-latency.svg", b.Bytes())
}

func TestSVGIsWellFormedWithACurvePerStrategy(t *testing.T) {
	var b bytes.Buffer
	if err := WriteLatencySVG(&b, fixtureReport()); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	polylines, texts := 0, []string{}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if el.Name.Local == "polyline" {
				polylines++
			}
		case xml.CharData:
			if s := strings.TrimSpace(string(el)); s != "" {
				texts = append(texts, s)
			}
		}
	}
	// S1 and S2 with three strategies each.
	if polylines != 6 {
		t.Errorf("%d curves, want 6", polylines)
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{"S1 fixture S1", "S2 fixture S2", "leasehold: p50 42.0, p99 67.0 ms", "baseline:", "floor:", "latency (ms, log scale)"} {
		if !strings.Contains(all, want) {
			t.Errorf("plot lacks the text %q", want)
		}
	}
}

func TestSVGWithoutData(t *testing.T) {
	var b bytes.Buffer
	if err := WriteLatencySVG(&b, &Report{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "no S1 or S2 latencies") {
		t.Errorf("empty plot does not say why:\n%s", b.String())
	}
}

func TestCDFPoints(t *testing.T) {
	pts := cdfPoints([]float64{1, 2, 3, 4}, 10)
	if len(pts) != 4 || pts[0] != [2]float64{1, 0.25} || pts[3] != [2]float64{4, 1} {
		t.Errorf("small input: %v", pts)
	}
	pts = cdfPoints(ramp(1000, 1, 1), 100)
	if len(pts) != 100 || pts[0] != [2]float64{10, 0.01} || pts[99] != [2]float64{1000, 1} {
		t.Errorf("downsampled: len %d first %v last %v", len(pts), pts[0], pts[len(pts)-1])
	}
	if cdfPoints(nil, 10) != nil {
		t.Error("points for no values")
	}
}

func TestMsLabel(t *testing.T) {
	for v, want := range map[float64]string{0.05: "0.05", 1: "1", 200: "200", 1000: "1s", 5000: "5s"} {
		if got := msLabel(v); got != want {
			t.Errorf("msLabel(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestWriteOutputs(t *testing.T) {
	dir := t.TempDir()
	out := Outputs{
		JSONDir:  filepath.Join(dir, "json"),
		Markdown: filepath.Join(dir, "docs", "benchmarks.md"),
		SVG:      filepath.Join(dir, "docs", "img", "latency.svg"),
	}
	path, err := WriteOutputs(fixtureReport(), out)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(out.JSONDir, "bench-20261127T093000Z.json"); path != want {
		t.Errorf("JSON at %s, want %s", path, want)
	}
	for _, p := range []string{path, out.SVG} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
	page, err := os.ReadFile(out.Markdown)
	if err != nil {
		t.Fatal(err)
	}
	// The link is relative to the page.
	if !strings.Contains(string(page), "](img/latency.svg)") {
		t.Error("the page does not link the plot by its relative path")
	}
}
