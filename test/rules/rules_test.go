package rules_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the PrometheusRule from the plain rules file")

// Paths relative to this package's directory, where go test runs.
var (
	rulesDir       = filepath.Join("..", "..", "deploy", "rules")
	rulesFile      = filepath.Join(rulesDir, "leasehold.rules.yaml")
	rulesTestFile  = filepath.Join(rulesDir, "leasehold.rules.test.yaml")
	componentDir   = filepath.Join("..", "..", "deploy", "components", "monitoring")
	prometheusRule = filepath.Join(componentDir, "prometheusrule.yaml")
	namespaceFile  = filepath.Join("..", "..", "deploy", "namespace.yaml")
)

// toolTimeout bounds each run of promtool or kustomize; they finish in well
// under a second.
const toolTimeout = 2 * time.Minute

// Labels an aggregation may keep: each has a small, fixed set of values.
var boundedLabels = []string{"namespace", "job", "le", "reason", "controller"}

var severities = []string{"warning", "critical"}

type ruleFile struct {
	Groups []ruleGroup `json:"groups"`
}

type ruleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval"`
	Rules    []rule `json:"rules"`
}

type rule struct {
	Record      string            `json:"record"`
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// object is the part of a Kubernetes object the checks read.
type object struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

// unitTestFile is the part of promtool's test file format the checks read.
type unitTestFile struct {
	RuleFiles []string `json:"rule_files"`
	Tests     []struct {
		AlertRuleTest []struct {
			Alertname string            `json:"alertname"`
			ExpAlerts []json.RawMessage `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

// promtool returns the path of promtool, failing the test when it is not
// installed.
func promtool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	const debian = "/usr/bin/promtool"
	if _, err := os.Stat(debian); err == nil {
		return debian
	}
	t.Fatalf("promtool not found (Debian package prometheus): run hack/packages.sh")
	return ""
}

// runPromtool runs promtool with args in dir and fails the test, with
// promtool's output, unless it exits 0.
func runPromtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

func TestPromtoolCheckRules(t *testing.T) {
	runPromtool(t, rulesDir, "check", "rules", "--lint=all", "--lint-fatal", filepath.Base(rulesFile))
}

func TestPromtoolTestRules(t *testing.T) {
	runPromtool(t, rulesDir, "test", "rules", filepath.Base(rulesTestFile))
}

// decodeFile decodes path into v, refusing fields v does not have: a
// misspelt key (annotation:, labels under the wrong rule) fails here,
// where Prometheus might load it silently.
func decodeFile(t *testing.T, path string, v any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(mustRead(t, path), v); err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
}

func alerts(rf ruleFile) []rule {
	var out []rule
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r)
			}
		}
	}
	return out
}

func TestAlertsAreDocumentedAndTested(t *testing.T) {
	var rf ruleFile
	decodeFile(t, rulesFile, &rf)
	var ut unitTestFile
	if err := yaml.Unmarshal(mustRead(t, rulesTestFile), &ut); err != nil {
		t.Fatalf("decode %s: %v", rulesTestFile, err)
	}
	if want := []string{filepath.Base(rulesFile)}; !slices.Equal(ut.RuleFiles, want) {
		t.Fatalf("%s tests rule_files %q, want %q", rulesTestFile, ut.RuleFiles, want)
	}

	firing := map[string]int{}
	silent := map[string]int{}
	for _, tc := range ut.Tests {
		for _, at := range tc.AlertRuleTest {
			if len(at.ExpAlerts) > 0 {
				firing[at.Alertname]++
			} else {
				silent[at.Alertname]++
			}
		}
	}

	as := alerts(rf)
	if len(as) == 0 {
		t.Fatalf("%s has no alerts", rulesFile)
	}
	known := map[string]bool{}
	for _, a := range as {
		known[a.Alert] = true
		if a.For == "" {
			t.Errorf("alert %s has no for: duration", a.Alert)
		}
		if !slices.Contains(severities, a.Labels["severity"]) {
			t.Errorf("alert %s: severity %q, want one of %q", a.Alert, a.Labels["severity"], severities)
		}
		for _, k := range []string{"summary", "description"} {
			if strings.TrimSpace(a.Annotations[k]) == "" {
				t.Errorf("alert %s has no %s annotation", a.Alert, k)
			}
		}
		if firing[a.Alert] == 0 {
			t.Errorf("alert %s: no promtool case where it fires", a.Alert)
		}
		if silent[a.Alert] == 0 {
			t.Errorf("alert %s: no promtool case where it does not fire", a.Alert)
		}
	}
	tested := maps.Clone(firing)
	maps.Copy(tested, silent)
	for _, name := range slices.Sorted(maps.Keys(tested)) {
		if !known[name] {
			t.Errorf("%s tests alert %s, which %s does not define", rulesTestFile, name, rulesFile)
		}
	}
}

var (
	byClause      = regexp.MustCompile(`\bby\s*\(([^)]*)\)`)
	withoutClause = regexp.MustCompile(`\bwithout\s*\(`)
)

func TestAggregationsKeepBoundedLabels(t *testing.T) {
	var rf ruleFile
	decodeFile(t, rulesFile, &rf)
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			name := r.Record + r.Alert
			if withoutClause.MatchString(r.Expr) {
				t.Errorf("%s: aggregates with without(), which keeps pod and any label a scrape adds", name)
			}
			for _, m := range byClause.FindAllStringSubmatch(r.Expr, -1) {
				for l := range strings.SplitSeq(m[1], ",") {
					if l = strings.TrimSpace(l); !slices.Contains(boundedLabels, l) {
						t.Errorf("%s: aggregates by %q; only %q are bounded", name, l, boundedLabels)
					}
				}
			}
		}
	}
}

// renderPrometheusRule returns the PrometheusRule for the plain rules file
// src: its groups, comments included, indented under spec. The file's
// leading comment is about the file and is dropped.
func renderPrometheusRule(src []byte) []byte {
	var b bytes.Buffer
	b.WriteString(`# Generated from deploy/rules/leasehold.rules.yaml by
# "go test ./test/rules/ -update". Do not edit: edit that file and run it.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: leasehold
  namespace: leasehold-system
  labels:
    app.kubernetes.io/name: leasehold
    app.kubernetes.io/part-of: leasehold
    app.kubernetes.io/component: monitoring
spec:
`)
	lines := strings.Split(strings.TrimRight(string(src), "\n"), "\n")
	start := 0
	for start < len(lines) && (strings.HasPrefix(lines[start], "#") || strings.TrimSpace(lines[start]) == "") {
		start++
	}
	for _, l := range lines[start:] {
		if strings.TrimSpace(l) != "" {
			b.WriteString("  ")
			b.WriteString(l)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkPrometheusRule decodes a PrometheusRule and requires its groups to
// equal those of the plain rules file.
func checkPrometheusRule(t *testing.T, what string, doc []byte) {
	t.Helper()
	var plain, pr map[string]any
	if err := yaml.Unmarshal(mustRead(t, rulesFile), &plain); err != nil {
		t.Fatalf("decode %s: %v", rulesFile, err)
	}
	if err := yaml.Unmarshal(doc, &pr); err != nil {
		t.Fatalf("decode %s: %v", what, err)
	}
	if pr["apiVersion"] != "monitoring.coreos.com/v1" || pr["kind"] != "PrometheusRule" {
		t.Fatalf("%s is %v %v, want monitoring.coreos.com/v1 PrometheusRule", what, pr["apiVersion"], pr["kind"])
	}
	spec, _ := pr["spec"].(map[string]any)
	if len(spec) != 1 {
		t.Fatalf("%s: spec has %d fields, want groups only", what, len(spec))
	}
	if d := difference("groups", spec["groups"], plain["groups"]); d != "" {
		t.Fatalf("%s: groups differ from %s (run go test ./test/rules/ -update):\n%s", what, rulesFile, d)
	}
}

// difference describes the first place where the decoded YAML values got
// and want differ, or returns "" when they are equal.
func difference(path string, got, want any) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			break
		}
		keys := slices.Sorted(maps.Keys(w))
		for k := range g {
			if _, ok := w[k]; !ok {
				keys = append(keys, k)
			}
		}
		for _, k := range keys {
			if d := difference(path+"."+k, g[k], w[k]); d != "" {
				return d
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok {
			break
		}
		for i := range max(len(g), len(w)) {
			var gi, wi any
			if i < len(g) {
				gi = g[i]
			}
			if i < len(w) {
				wi = w[i]
			}
			if d := difference(fmt.Sprintf("%s[%d]", path, i), gi, wi); d != "" {
				return d
			}
		}
		return ""
	}
	if reflect.DeepEqual(got, want) {
		return ""
	}
	return fmt.Sprintf("%s:\n  got  %s\n  want %s", path, jsonText(got), jsonText(want))
}

// jsonText renders v for a failure message, without json's escaping of <,
// > and &, which PromQL is full of.
func jsonText(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSpace(b.String())
}

func TestPrometheusRuleMatchesRulesFile(t *testing.T) {
	want := renderPrometheusRule(mustRead(t, rulesFile))
	if *update {
		if err := os.WriteFile(prometheusRule, want, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", prometheusRule)
	}
	got := mustRead(t, prometheusRule)
	// Checked on the decoded groups first, which is what must not drift,
	// then on the bytes, so that hand edits (comments included) are caught
	// too.
	checkPrometheusRule(t, prometheusRule, got)
	// In the namespace of the rest of deploy/, like every object there; a
	// parent kustomization's namespace: overrides it.
	var pr, ns object
	if err := yaml.Unmarshal(got, &pr); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(mustRead(t, namespaceFile), &ns); err != nil {
		t.Fatal(err)
	}
	if ns.Kind != "Namespace" || pr.Metadata.Namespace != ns.Metadata.Name {
		t.Errorf("PrometheusRule in namespace %q, want that of %s (%s %q)", pr.Metadata.Namespace, namespaceFile, ns.Kind, ns.Metadata.Name)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not what %s generates; run go test ./test/rules/ -update", prometheusRule, rulesFile)
	}
}

func TestComponentRendersPrometheusRule(t *testing.T) {
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	decodeFile(t, filepath.Join(componentDir, "kustomization.yaml"), &k)
	if k.APIVersion != "kustomize.config.k8s.io/v1alpha1" || k.Kind != "Component" {
		t.Fatalf("kustomization is %s %s, want kustomize.config.k8s.io/v1alpha1 Component", k.APIVersion, k.Kind)
	}
	if want := []string{filepath.Base(prometheusRule)}; !slices.Equal(k.Resources, want) {
		t.Fatalf("component resources %q, want %q", k.Resources, want)
	}

	// The pinned kustomize, built into the per-user cache on first use, so
	// the check runs on every machine rather than where kubectl happens to
	// be installed.
	toolCtx, toolCancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer toolCancel()
	var toolErr bytes.Buffer
	tool := exec.CommandContext(toolCtx, "bash", filepath.Join("..", "..", "hack", "tools.sh"), "kustomize")
	tool.Stderr = &toolErr
	path, err := tool.Output()
	if err != nil {
		t.Fatalf("hack/tools.sh kustomize: %v\n%s", err, toolErr.Bytes())
	}
	kustomize := strings.TrimSpace(string(path))
	// A parent that includes nothing but the component, as a deployment
	// kustomization would.
	parent := t.TempDir()
	abs, err := filepath.Abs(componentDir)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(parent, abs)
	if err != nil {
		t.Fatal(err)
	}
	kust := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: leasehold-test\ncomponents:\n  - " + rel + "\n"
	if err := os.WriteFile(filepath.Join(parent, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), toolTimeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, kustomize, "build", parent)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kustomize build: %v\n%s", err, stderr.Bytes())
	}
	if docs := strings.Split(strings.TrimSpace(string(out)), "\n---\n"); len(docs) != 1 {
		t.Fatalf("kustomize rendered %d objects, want the PrometheusRule only:\n%s", len(docs), out)
	}
	checkPrometheusRule(t, "the rendered component", out)
	var meta object
	if err := yaml.Unmarshal(out, &meta); err != nil {
		t.Fatal(err)
	}
	if meta.Metadata.Namespace != "leasehold-test" {
		t.Errorf("rendered namespace %q, want the parent's, leasehold-test", meta.Metadata.Namespace)
	}
}
