package runner

import (
	"errors"
	"reflect"
	"testing"
)

func TestResolveDefaults(t *testing.T) {
	o, err := Options{RepoDir: "/repo"}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.Scenarios, ScenarioIDs) || o.Reps != DefaultReps || o.OtherReps != DefaultOtherReps ||
		o.LockIterations != DefaultLockIterations || o.ReadyTimeout != DefaultReadyTimeout || o.Clock == nil {
		t.Errorf("defaults %+v", o)
	}
	q, err := Options{RepoDir: "/repo", Quick: true}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if q.Reps != DefaultQuickReps || q.LockIterations != QuickLockIterations {
		t.Errorf("quick defaults: reps %d, iterations %d", q.Reps, q.LockIterations)
	}
}

func TestResolveOrdersAndDeduplicatesScenarios(t *testing.T) {
	o, err := Options{RepoDir: "/repo", Scenarios: []string{"s4", "S1", " S4 "}}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.Scenarios, []string{"S1", "S4"}) {
		t.Errorf("scenarios %v, want [S1 S4]", o.Scenarios)
	}
}

func TestResolveRejects(t *testing.T) {
	for name, o := range map[string]Options{
		"unknown scenario": {RepoDir: "/repo", Scenarios: []string{"S9"}},
		"negative reps":    {RepoDir: "/repo", Reps: -1},
		"negative timeout": {RepoDir: "/repo", StopGrace: -1},
	} {
		if _, err := o.resolve(); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: %v, want ErrInvalidOptions", name, err)
		}
	}
}

func TestPlanSizes(t *testing.T) {
	full := plan(Options{Scenarios: ScenarioIDs, Reps: 10, OtherReps: 1, LockIterations: 200})
	want := map[string]Params{
		"S1": {Signals: 100, Fingerprints: 1, Concurrency: 100, Replicas: 3, Reps: 10},
		"S2": {Signals: 2000, Fingerprints: 2000, Concurrency: 50, Replicas: 3, Reps: 1},
		"S3": {Signals: 2000, Fingerprints: 20, Concurrency: 50, Replicas: 3, Reps: 1},
		"S4": {RRs: 50, Targets: 5, Replicas: 3, ExecutionMs: 200, Reps: 1},
		"S5": {Iterations: 200},
	}
	if len(full) != 5 {
		t.Fatalf("%d scenarios", len(full))
	}
	for _, sc := range full {
		if sc.params != want[sc.id] {
			t.Errorf("%s: %+v, want %+v (the issue's sizes)", sc.id, sc.params, want[sc.id])
		}
	}
	for _, sc := range plan(Options{Scenarios: ScenarioIDs, Quick: true, Reps: 2, OtherReps: 1}) {
		if sc.params.Signals > 200 || sc.params.RRs > 20 {
			t.Errorf("quick %s is not small: %+v", sc.id, sc.params)
		}
	}
}

func TestRotate(t *testing.T) {
	s := []Strategy{Leasehold, Baseline, Floor}
	for n, want := range [][]Strategy{
		{Leasehold, Baseline, Floor}, {Baseline, Floor, Leasehold}, {Floor, Leasehold, Baseline}, {Leasehold, Baseline, Floor},
	} {
		if got := rotate(s, n); !reflect.DeepEqual(got, want) {
			t.Errorf("rotate(%d) = %v, want %v", n, got, want)
		}
	}
	if !reflect.DeepEqual(s, []Strategy{Leasehold, Baseline, Floor}) {
		t.Error("rotate changed its input")
	}
}
