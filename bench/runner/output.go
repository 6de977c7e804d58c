package runner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Outputs says where WriteOutputs puts a report. Empty fields are skipped.
type Outputs struct {
	// JSONDir receives one file per run, bench-<UTC start time>.json.
	JSONDir string
	// Markdown is the page, such as docs/benchmarks.md.
	Markdown string
	// SVG is the latency plot, such as docs/benchmarks-latency.svg; the
	// page links it by its path relative to the page's folder.
	SVG string
}

// WriteOutputs writes the report's JSON, page and plot, and returns the
// JSON file's path (empty without JSONDir).
func WriteOutputs(rep *Report, out Outputs) (string, error) {
	var jsonPath string
	if out.JSONDir != "" {
		if err := os.MkdirAll(out.JSONDir, 0o755); err != nil {
			return "", err
		}
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return "", fmt.Errorf("encode report: %w", err)
		}
		jsonPath = filepath.Join(out.JSONDir, "bench-"+rep.StartedAt.UTC().Format("20060102T150405Z")+".json")
		if err := os.WriteFile(jsonPath, append(data, '\n'), 0o644); err != nil {
			return "", err
		}
	}
	link := ""
	if out.SVG != "" {
		var b bytes.Buffer
		if err := WriteLatencySVG(&b, rep); err != nil {
			return jsonPath, err
		}
		if err := writeFile(out.SVG, b.Bytes()); err != nil {
			return jsonPath, err
		}
		link = out.SVG
		if out.Markdown != "" {
			rel, err := filepath.Rel(filepath.Dir(out.Markdown), out.SVG)
			if err != nil {
				return jsonPath, fmt.Errorf("link %s from %s: %w", out.SVG, out.Markdown, err)
			}
			link = filepath.ToSlash(rel)
		}
	}
	if out.Markdown != "" {
		var b bytes.Buffer
		if err := WriteMarkdown(&b, rep, link); err != nil {
			return jsonPath, err
		}
		if err := writeFile(out.Markdown, b.Bytes()); err != nil {
			return jsonPath, err
		}
	}
	return jsonPath, nil
}

// ReadReport reads a report WriteOutputs wrote, so that its page and plot
// can be rendered again without running the benchmark again.
func ReadReport(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	return &rep, nil
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
