package runner

import (
	"fmt"
	"slices"
	"strings"
	"time"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
)

// executionReplay is what a replay of WorkflowExecution changes shows.
type executionReplay struct {
	// executions counts the distinct executions seen.
	executions int
	// maxActive is the most non-terminal executions one target had at
	// once; duplicates sums, over targets, how far that went above 1.
	maxActive  int
	duplicates int
	// violations describe each change after which a target had more than
	// one active execution.
	violations []string
	// handoffs are, per pair of consecutive executions (by sequence) of a
	// target, the time from the first being seen terminal to the second
	// being seen at all.
	handoffs []time.Duration
}

// replayExecutions replays changes in delivery order, keeping only the
// executions inScope accepts.
func replayExecutions(changes []change, inScope func(*v1alpha1.WorkflowExecution) bool) executionReplay {
	type exec struct {
		target    string
		sequence  int64
		createdAt time.Time
		endedAt   time.Time
		ended     bool
	}
	execs := map[string]*exec{}
	active := map[string]map[string]bool{}
	maxActive := map[string]int{}
	var out executionReplay
	for _, c := range changes {
		wfe, ok := c.obj.(*v1alpha1.WorkflowExecution)
		if !ok || !inScope(wfe) {
			continue
		}
		name, target := wfe.Name, wfe.Spec.Target.LockKey()
		x := execs[name]
		if x == nil {
			x = &exec{target: target, sequence: wfe.Spec.Sequence, createdAt: c.at}
			execs[name] = x
		}
		isActive := !c.deleted && !wfe.IsTerminal()
		if !isActive && !x.ended {
			x.ended, x.endedAt = true, c.at
		}
		if active[target] == nil {
			active[target] = map[string]bool{}
		}
		if isActive {
			active[target][name] = true
		} else {
			delete(active[target], name)
		}
		n := len(active[target])
		maxActive[target] = max(maxActive[target], n)
		if n > 1 {
			names := make([]string, 0, n)
			for a := range active[target] {
				names = append(names, a)
			}
			slices.Sort(names)
			out.violations = append(out.violations, fmt.Sprintf("%s: %d executions active at once after a change of %s: %s",
				target, n, name, strings.Join(names, ", ")))
		}
	}
	out.executions = len(execs)
	for _, n := range maxActive {
		out.maxActive = max(out.maxActive, n)
		out.duplicates += max(0, n-1)
	}
	byTarget := map[string][]*exec{}
	for _, x := range execs {
		byTarget[x.target] = append(byTarget[x.target], x)
	}
	targets := make([]string, 0, len(byTarget))
	for t := range byTarget {
		targets = append(targets, t)
	}
	slices.Sort(targets)
	for _, t := range targets {
		xs := byTarget[t]
		slices.SortFunc(xs, func(a, b *exec) int { return int(a.sequence - b.sequence) })
		for i := 1; i < len(xs); i++ {
			prev, next := xs[i-1], xs[i]
			// A next execution created before the previous one ended is an
			// overlap, counted above; it has no hand-off.
			if !prev.ended || next.createdAt.Before(prev.endedAt) {
				continue
			}
			out.handoffs = append(out.handoffs, next.createdAt.Sub(prev.endedAt))
		}
	}
	return out
}

// requestReplay is what a replay of RemediationRequest changes shows for
// the requests a scenario created.
type requestReplay struct {
	completed, failed, unfinished int
	// latencies run from each finished request's create to its first
	// terminal state seen.
	latencies []time.Duration
	// lastEnd is when the last of them was seen terminal.
	lastEnd time.Time
}

// replayRequests replays changes for the requests in createdAt (by name,
// the time their create was sent).
func replayRequests(changes []change, createdAt map[string]time.Time) requestReplay {
	ended := map[string]v1alpha1.RemediationPhase{}
	var out requestReplay
	for _, c := range changes {
		rr, ok := c.obj.(*v1alpha1.RemediationRequest)
		if !ok {
			continue
		}
		start, ours := createdAt[rr.Name]
		if !ours || !rr.IsTerminal() {
			continue
		}
		if _, seen := ended[rr.Name]; seen {
			continue
		}
		ended[rr.Name] = rr.EffectivePhase()
		out.latencies = append(out.latencies, c.at.Sub(start))
		if c.at.After(out.lastEnd) {
			out.lastEnd = c.at
		}
	}
	for _, phase := range ended {
		if phase == v1alpha1.PhaseCompleted {
			out.completed++
		} else {
			out.failed++
		}
	}
	out.unfinished = len(createdAt) - len(ended)
	return out
}
