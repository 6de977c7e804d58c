package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/leasehold/leasehold/internal/proc"
)

// run is the state of one Run.
type run struct {
	opts Options

	// builds remembers each binary's build, so that it happens once and
	// only for scenarios that need it.
	buildMu sync.Mutex
	builds  map[string]buildResult
}

type buildResult struct {
	path string
	err  error
}

// Run runs the scenarios opts asks for, one after the other, each against a
// fresh control plane, and returns the report with the goals evaluated. It
// returns an error without a report only for invalid options or a work
// folder it cannot make; a scenario that fails is recorded in its result
// (ScenarioResult.Error) with whatever it measured, and the run goes on.
// When ctx ends, the scenario under way stops and the rest are skipped.
func Run(ctx context.Context, opts Options) (*Report, error) {
	o, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	if o.WorkDir == "" {
		dir, err := os.MkdirTemp("", "leasehold-bench-")
		if err != nil {
			return nil, err
		}
		o.WorkDir = dir
		if !o.KeepWorkDir {
			defer os.RemoveAll(dir)
		}
	} else if err := os.MkdirAll(o.WorkDir, 0o700); err != nil {
		return nil, err
	}
	r := &run{opts: o, builds: map[string]buildResult{}}
	rep := &Report{StartedAt: o.Clock.Now(), Machine: DescribeMachine(), Command: o.Command, Quick: o.Quick}
	for _, sc := range plan(o) {
		if ctx.Err() != nil {
			rep.Scenarios = append(rep.Scenarios, ScenarioResult{ID: sc.id, Title: sc.title, Params: sc.params, Error: "not run: " + ctx.Err().Error()})
			continue
		}
		start := o.Clock.Now()
		r.progress("%s %s: %s", sc.id, sc.title, paramsLine(&ScenarioResult{Params: sc.params}))
		var res ScenarioResult
		switch sc.kind {
		case kindStorm:
			res = r.stormScenario(ctx, sc)
		case kindOrchestration:
			res = r.orchestrationScenario(ctx, sc)
		case kindLocks:
			res = r.locksScenario(ctx, sc)
		}
		res.DurationSeconds = o.Clock.Since(start).Seconds()
		if res.Error != "" {
			r.progress("%s: error: %s", sc.id, res.Error)
		}
		rep.Scenarios = append(rep.Scenarios, res)
	}
	rep.Goals = evaluateGoals(rep.Scenarios)
	rep.DurationSeconds = o.Clock.Since(rep.StartedAt).Seconds()
	return rep, nil
}

// binary returns the path of a given binary or builds pkg once.
func (r *run) binary(ctx context.Context, given, pkg, name string) (string, error) {
	if given != "" {
		return given, nil
	}
	r.buildMu.Lock()
	defer r.buildMu.Unlock()
	if b, ok := r.builds[pkg]; ok {
		return b.path, b.err
	}
	out := filepath.Join(r.opts.WorkDir, "bin", name)
	r.progress("building %s", pkg)
	// Without the race detector: the services' speed is what is measured.
	err := proc.Build(ctx, r.opts.RepoDir, pkg, out, false)
	if err != nil {
		err = fmt.Errorf("build %s: %w", pkg, err)
	}
	r.builds[pkg] = buildResult{path: out, err: err}
	return out, err
}

func (r *run) gatewayBinary(ctx context.Context) (string, error) {
	return r.binary(ctx, r.opts.GatewayBinary, "./bench/cmd/bench-gateway", "bench-gateway")
}

func (r *run) leaseholdBinary(ctx context.Context) (string, error) {
	return r.binary(ctx, r.opts.LeaseholdBinary, "./cmd/leasehold", "leasehold")
}

// progress writes one line to Options.Progress.
func (r *run) progress(format string, args ...any) {
	if r.opts.Progress == nil {
		return
	}
	fmt.Fprintf(r.opts.Progress, "%s bench: %s\n", r.opts.Clock.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// wait waits d on the clock, or until ctx ends.
func (r *run) wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := r.opts.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}
