package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/overlap"
	"github.com/leasehold/leasehold/internal/storm"
)

// demoStorm is one storm of the demo.
type demoStorm struct {
	name         string
	signals      int
	fingerprints int
}

// demoStorms are sent one after the other: a storm of identical alerts,
// the case deduplication exists for, and alerts about several workloads,
// so that several targets are remediated at once.
var demoStorms = []demoStorm{
	{name: "identical", signals: 100, fingerprints: 1},
	{name: "spread", signals: 50, fingerprints: 5},
}

// pollInterval is how often the demo lists the requests it waits for.
const pollInterval = 200 * time.Millisecond

// watchCatchUp bounds the wait for a watch to have seen what a list
// already shows; it is normally a few milliseconds behind.
const watchCatchUp = 10 * time.Second

// Demo waits out the API server's hold on creates right after the CRDs
// were installed (see crdCreateDelay), then sends the demo storms to the
// gateways, round-robin, with
// verification of the RemediationRequests they wrote; waits, within
// Options.DemoTimeout, until the orchestrators have run each of those
// requests to a terminal phase through the simulated executor; and returns
// what it saw. A watch on the RemediationRequests and one on the
// WorkflowExecutions run from before the first signal to the end, so that
// the summary's counts of requests in progress per incident and of active
// executions per target cover every state the API server passed through.
// It returns an error only when the demo could not be run (the stack not
// started, the API server unreachable, ctx ended); a demo that ran and
// found problems returns a Summary whose Check says which. Progress goes
// to w.
func (s *Stack) Demo(ctx context.Context, w io.Writer) (*Summary, error) {
	urls := s.GatewayURLs()
	if len(urls) == 0 {
		return nil, errors.New("stack: no gateway running; call StartServices first")
	}
	requests, err := overlap.Start(ctx, s.cli, s.Namespace, "requests",
		func() client.ObjectList { return &v1alpha1.RemediationRequestList{} }, overlap.Requests)
	if err != nil {
		return nil, err
	}
	defer requests.Close()
	executions, err := overlap.Start(ctx, s.cli, s.Namespace, "executions",
		func() client.ObjectList { return &v1alpha1.WorkflowExecutionList{} }, overlap.Executions)
	if err != nil {
		return nil, err
	}
	defer executions.Close()

	if err := s.waitCRDsSettled(ctx, w); err != nil {
		return nil, err
	}

	runs := make([]StormRun, 0, len(demoStorms))
	for _, d := range demoStorms {
		fmt.Fprintf(w, "demo: storm %q: %d alerts about %d workload(s) over %d gateways\n", d.name, d.signals, d.fingerprints, len(urls))
		rep, err := storm.Run(ctx, storm.Config{
			Targets:      urls,
			Signals:      d.signals,
			Fingerprints: d.fingerprints,
			Kube:         s.ControlPlane.Config,
			RRNamespace:  s.Namespace,
			// The demo reports duplicates, counts and latency; the API
			// request accounting would add an idle interval per storm.
			NoAPIMetrics: true,
			Clock:        s.opts.Clock,
		})
		if err != nil {
			return nil, fmt.Errorf("storm %s: %w", d.name, err)
		}
		fmt.Fprintf(w, "demo: storm %q: %d of %d acknowledged in %.2fs\n", d.name, rep.Acknowledged, rep.Signals, rep.DurationSeconds)
		runs = append(runs, StormRun{Name: d.name, Report: rep})
	}

	var fps []string
	for _, run := range runs {
		for _, inc := range run.Report.Incidents {
			fps = append(fps, inc.Fingerprint)
		}
	}
	fmt.Fprintf(w, "demo: waiting up to %v for the orchestrators and the executor to finish every RemediationRequest\n", s.opts.DemoTimeout)
	start := s.opts.Clock.Now()
	rrs, timedOut, err := s.waitTerminal(ctx, fps)
	if err != nil {
		return nil, err
	}
	wait := s.opts.Clock.Since(start)

	targets := map[string]v1alpha1.TargetRef{}
	for _, rr := range rrs {
		targets[rr.Spec.Target.LockKey()] = rr.Spec.Target
	}
	wfes, err := s.listExecutions(ctx, targets)
	if err != nil {
		return nil, err
	}
	requestsCaughtUp := s.waitWatch(ctx, requests, objects(rrs))
	executionsCaughtUp := s.waitWatch(ctx, executions, objects(wfes))
	keys := make([]string, 0, len(targets))
	for k := range targets {
		keys = append(keys, k)
	}
	obs := observation{
		rrs: rrs, wfes: wfes, requests: requests.Result(fps), executions: executions.Result(keys),
		wait: wait, timedOut: timedOut, exits: s.Exited(),
	}
	// A watch behind the lists has not checked the last states they show:
	// a gap, like changes the watch lost.
	if !requestsCaughtUp {
		obs.requests.Gaps = append(obs.requests.Gaps, fmt.Sprintf("after %v the watch had not seen every request in its listed phase", watchCatchUp))
	}
	if !executionsCaughtUp {
		obs.executions.Gaps = append(obs.executions.Gaps, fmt.Sprintf("after %v the watch had not seen every execution in its listed phase", watchCatchUp))
	}
	return summarize(runs, obs), nil
}

// objects returns pointers to the elements of items as client.Objects.
func objects[T any, PT interface {
	*T
	client.Object
}](items []T) []client.Object {
	out := make([]client.Object, len(items))
	for i := range items {
		out[i] = PT(&items[i])
	}
	return out
}

// crdCreateDelay is how long kube-apiserver holds every create of a custom
// resource made within that time of its CRD becoming Established
// (apiextensions-apiserver's customresource_handler: so that in a highly
// available control plane all servers have seen the CRD first). The local
// control plane installs the CRDs moments before the demo, so without a
// wait its first signals would each take two seconds more.
const crdCreateDelay = 2 * time.Second

// demoCRDs are the CRDs whose resources the demo creates, through the
// gateways and the orchestrators.
var demoCRDs = []string{"remediationrequests.leasehold.dev", "workflowexecutions.leasehold.dev"}

// waitCRDsSettled waits until crdCreateDelay has passed since each of
// demoCRDs became Established. The condition's time is stored in whole
// seconds, rounded down, and the API server compares it the same way, so
// waiting from the stored time is enough; both clocks are this machine's.
func (s *Stack) waitCRDsSettled(ctx context.Context, w io.Writer) error {
	var settled time.Time
	for _, name := range demoCRDs {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := s.cli.Get(ctx, client.ObjectKey{Name: name}, &crd); err != nil {
			return fmt.Errorf("get CRD %s: %w", name, err)
		}
		established := false
		for _, c := range crd.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				established = true
				if t := c.LastTransitionTime.Add(crdCreateDelay); t.After(settled) {
					settled = t
				}
			}
		}
		if !established {
			return fmt.Errorf("CRD %s is not established", name)
		}
	}
	wait := settled.Sub(s.opts.Clock.Now())
	if wait <= 0 {
		return nil
	}
	fmt.Fprintf(w, "demo: waiting %v: the API server delays creates for %v after a CRD is installed\n", wait.Round(time.Millisecond), crdCreateDelay)
	t := s.opts.Clock.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}

// waitTerminal lists the requests of the fingerprints until all are
// terminal or Options.DemoTimeout has passed (timedOut), and returns the
// last list. A failed list is tried again at the next poll; only when no
// list succeeded before the timeout is the error returned.
func (s *Stack) waitTerminal(ctx context.Context, fps []string) (rrs []v1alpha1.RemediationRequest, timedOut bool, err error) {
	deadline := s.opts.Clock.NewTimer(s.opts.DemoTimeout)
	defer deadline.Stop()
	tick := s.opts.Clock.NewTicker(pollInterval)
	defer tick.Stop()
	listed := false
	var lastErr error
	for {
		got, err := s.listRequests(ctx, fps)
		if err == nil {
			rrs, listed = got, true
			if allTerminal(rrs) {
				return rrs, false, nil
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-deadline.C():
			if !listed {
				return nil, true, lastErr
			}
			return rrs, true, nil
		case <-tick.C():
		}
	}
}

func allTerminal(rrs []v1alpha1.RemediationRequest) bool {
	for i := range rrs {
		if !rrs[i].IsTerminal() {
			return false
		}
	}
	return true
}

// listRequests returns the namespace's requests with one of the
// fingerprints. The label holds a prefix of the fingerprint; the spec is
// compared in full.
func (s *Stack) listRequests(ctx context.Context, fps []string) ([]v1alpha1.RemediationRequest, error) {
	if len(fps) == 0 {
		return nil, nil
	}
	want := make(map[string]bool, len(fps))
	values := make([]string, 0, len(fps))
	for _, fp := range fps {
		want[fp] = true
		values = append(values, v1alpha1.FingerprintLabelValue(fp))
	}
	sel, err := inSelector(v1alpha1.LabelFingerprint, values)
	if err != nil {
		return nil, err
	}
	var list v1alpha1.RemediationRequestList
	if err := s.cli.List(ctx, &list, client.InNamespace(s.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, fmt.Errorf("list remediationrequests: %w", err)
	}
	out := list.Items[:0]
	for _, rr := range list.Items {
		if want[rr.Spec.Fingerprint] {
			out = append(out, rr)
		}
	}
	return out, nil
}

// listExecutions returns the namespace's executions on the targets.
func (s *Stack) listExecutions(ctx context.Context, targets map[string]v1alpha1.TargetRef) ([]v1alpha1.WorkflowExecution, error) {
	if len(targets) == 0 {
		return nil, nil
	}
	values := make([]string, 0, len(targets))
	for _, t := range targets {
		values = append(values, v1alpha1.TargetLabelValue(t))
	}
	sel, err := inSelector(v1alpha1.LabelTarget, values)
	if err != nil {
		return nil, err
	}
	var list v1alpha1.WorkflowExecutionList
	if err := s.cli.List(ctx, &list, client.InNamespace(s.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, fmt.Errorf("list workflowexecutions: %w", err)
	}
	out := list.Items[:0]
	for _, wfe := range list.Items {
		if _, ok := targets[wfe.Spec.Target.LockKey()]; ok {
			out = append(out, wfe)
		}
	}
	return out, nil
}

func inSelector(key string, values []string) (labels.Selector, error) {
	req, err := labels.NewRequirement(key, selection.In, values)
	if err != nil {
		return nil, fmt.Errorf("selector %s in (%s): %w", key, strings.Join(values, ","), err)
	}
	return labels.NewSelector().Add(*req), nil
}

// waitWatch waits, within watchCatchUp, until the watch has seen every
// listed object in its listed state, and reports whether it has.
func (s *Stack) waitWatch(ctx context.Context, watch *overlap.Watch, objs []client.Object) bool {
	deadline := s.opts.Clock.NewTimer(watchCatchUp)
	defer deadline.Stop()
	tick := s.opts.Clock.NewTicker(pollInterval / 4)
	defer tick.Stop()
	for !watch.CaughtUp(objs) {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C():
			return false
		case <-tick.C():
		}
	}
	return true
}
