//go:build integration

package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/faultproxy"
	"github.com/leasehold/leasehold/internal/proc"
)

// Role is what a replica runs.
type role string

const (
	roleGateway      role = "gateway"
	roleOrchestrator role = "orchestrator"
	roleExecutor     role = "executor"
)

// leaseDuration is every replica's lease: short, so that a crashed holder
// blocks its keys for seconds, not the default half minute.
const leaseDuration = 5 * time.Second

// Lease name prefixes of the two services (gateway/dedup and orchestrator).
const (
	gatewayLeasePrefix      = "gw-lock-"
	orchestratorLeasePrefix = "ro-lock-"
)

// replica is one service process of a run, with what it takes to start it
// again after a kill.
type replica struct {
	name string
	role role
	// args are the role's own flags; start adds the kubeconfig, namespace,
	// identity and addresses.
	args []string
	// proxy, when set, carries all of the replica's API traffic, so that
	// the test can cut it off.
	proxy      *faultproxy.Proxy
	kubeconfig string

	mu  sync.Mutex
	p   *proc.Process
	url string // a gateway's base URL
}

func (r *replica) process() *proc.Process {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.p
}

// cluster is the system under test for one run: its own namespace, three
// gateways, three orchestrators and the simulated executor.
type cluster struct {
	t      *testing.T
	ns     string
	logDir string

	gateways      []*replica
	orchestrators []*replica
	executor      *replica
}

// clusterOptions shape a run; the zero value is the plain system.
type clusterOptions struct {
	// lockWrites is the gateways' --lock-writes.
	lockWrites string
	// gatewayArgs and orchestratorArgs add flags to single replicas, by
	// index: test hooks such as clock offsets and delays.
	gatewayArgs      map[int][]string
	orchestratorArgs map[int][]string
	// executionDuration is how long each execution runs.
	executionDuration time.Duration
}

// replicas per service.
const replicas = 3

// http2Env makes client-go notice a connection that went silent within
// seconds, not the default 45: a replica whose API server connection was
// black-holed would otherwise keep sending requests into it. The sum stays
// above the 5 s request deadline, so a slow answer is not mistaken for a
// dead connection.
var http2Env = []string{"HTTP2_READ_IDLE_TIMEOUT_SECONDS=5", "HTTP2_PING_TIMEOUT_SECONDS=5"}

// newCluster creates the run's namespace, a fault proxy in front of the API
// server for replica 0 of each service, and starts every process; all of it
// is stopped when the test ends.
func newCluster(t *testing.T, ns string, o clusterOptions) *cluster {
	t.Helper()
	if err := cp.CreateNamespace(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, ns: ns, logDir: filepath.Join(workDir, ns)}
	if err := os.MkdirAll(c.logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	direct := filepath.Join(c.logDir, "kubeconfig")
	if err := os.WriteFile(direct, cp.Kubeconfig(), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cp.APIServerURL())
	if err != nil {
		t.Fatal(err)
	}
	newReplica := func(name string, r role, args []string, proxied bool) *replica {
		rep := &replica{name: name, role: r, args: args, kubeconfig: direct}
		if !proxied {
			return rep
		}
		p, err := faultproxy.New(u.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		kc, err := faultproxy.Kubeconfig(cp.Kubeconfig(), p)
		if err != nil {
			t.Fatal(err)
		}
		rep.proxy = p
		rep.kubeconfig = filepath.Join(c.logDir, name+".kubeconfig")
		if err := os.WriteFile(rep.kubeconfig, kc, 0o600); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	lockWrites := o.lockWrites
	if lockWrites == "" {
		lockWrites = "none"
	}
	for i := range replicas {
		args := append([]string{"--insecure-no-auth", "--lease-duration", leaseDuration.String(), "--lock-writes", lockWrites}, o.gatewayArgs[i]...)
		c.gateways = append(c.gateways, newReplica(fmt.Sprintf("gw-%d", i), roleGateway, args, i == 0))
	}
	for i := range replicas {
		args := append([]string{"--lease-duration", leaseDuration.String()}, o.orchestratorArgs[i]...)
		c.orchestrators = append(c.orchestrators, newReplica(fmt.Sprintf("orch-%d", i), roleOrchestrator, args, i == 0))
	}
	d := o.executionDuration
	if d == 0 {
		d = time.Second
	}
	c.executor = newReplica("executor", roleExecutor, []string{"--simulate", "--duration", d.String()}, false)

	all := c.all()
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, r := range all {
		wg.Go(func() { errs[i] = c.start(t.Context(), r) })
	}
	wg.Wait()
	t.Cleanup(func() {
		c.stopAll()
		if t.Failed() {
			c.logTails()
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *cluster) all() []*replica {
	out := slices.Concat(c.gateways, c.orchestrators)
	return append(out, c.executor)
}

// startAttempts bounds the starts of one replica: a port picked free can be
// taken by another program before the replica binds it.
const startAttempts = 3

// start starts r's process and waits until its /readyz answers 200.
func (c *cluster) start(ctx context.Context, r *replica) error {
	for attempt := 1; ; attempt++ {
		ports := make([]string, 2)
		for i := range ports {
			p, err := proc.FreePort()
			if err != nil {
				return err
			}
			ports[i] = fmt.Sprintf("127.0.0.1:%d", p)
		}
		args := append([]string{string(r.role)}, r.args...)
		args = append(args, "--kubeconfig", r.kubeconfig, "--namespace", c.ns, "--identity", r.name)
		var ready, base string
		if r.role == roleGateway {
			base = "http://" + ports[0]
			ready = base + "/readyz"
			args = append(args, "--listen", ports[0])
		} else {
			ready = "http://" + ports[1] + "/readyz"
			args = append(args, "--metrics-bind-address", ports[0], "--health-probe-bind-address", ports[1])
		}
		p, err := proc.Start(proc.Spec{Name: r.name, Path: binaryPath, Args: args, Env: http2Env, LogDir: c.logDir})
		if err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		err = p.WaitReady(rctx, ready)
		cancel()
		if err == nil {
			r.mu.Lock()
			r.p, r.url = p, base
			r.mu.Unlock()
			return nil
		}
		_ = p.Kill()
		if attempt < startAttempts && strings.Contains(p.Tail(8192), "address already in use") {
			continue
		}
		return fmt.Errorf("%s: %w", r.name, err)
	}
}

// gatewayURLs are the gateways' base URLs, fixed for the run: a killed
// gateway that is started again listens elsewhere, and the storm's retries
// move on to the next URL anyway.
func (c *cluster) gatewayURLs() []string {
	var out []string
	for _, g := range c.gateways {
		g.mu.Lock()
		out = append(out, g.url)
		g.mu.Unlock()
	}
	return out
}

// stopAll stops every process that still runs and returns a failure for
// each that did not exit cleanly on SIGTERM: a replica that survived its
// fault must also shut down properly. Stop is idempotent, so the test's
// cleanup calling it again only reaps what a failed run left.
func (c *cluster) stopAll() []string {
	var failures []string
	for _, r := range c.all() {
		p := r.process()
		if p == nil {
			continue
		}
		select {
		case <-p.Done():
			continue // killed by the scenario, or died: checkAlive reports that
		default:
		}
		if err := p.Stop(45 * time.Second); err != nil {
			failures = append(failures, fmt.Sprintf("%s: stop: %v\n%s", r.name, err, p.Tail(4096)))
		}
	}
	return failures
}

// logTails logs the end of every replica's log, for a failed run.
func (c *cluster) logTails() {
	for _, r := range c.all() {
		if p := r.process(); p != nil {
			c.t.Logf("--- %s, end of its log (%s):\n%s", r.name, p.LogPath(), p.Tail(3000))
		}
	}
}

// checkAlive reports every replica that exited without the scenario
// killing it.
func (c *cluster) checkAlive(killed map[*replica]bool) []string {
	var out []string
	for _, r := range c.all() {
		p := r.process()
		if p == nil || killed[r] {
			continue
		}
		select {
		case <-p.Done():
			out = append(out, fmt.Sprintf("%s exited on its own: %v", r.name, p.ExitErr()))
		default:
		}
	}
	return out
}

// leases lists the namespace's Leases.
func (c *cluster) leases(ctx context.Context) ([]coordinationv1.Lease, error) {
	list, err := clientset.CoordinationV1().Leases(c.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

func holder(l coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// heldBy returns the Leases of prefix whose holder is one of r's
// acquisitions: holder ids are "<identity>/<random>".
func heldBy(ls []coordinationv1.Lease, prefix string, r *replica) []coordinationv1.Lease {
	var out []coordinationv1.Lease
	for _, l := range ls {
		if strings.HasPrefix(l.Name, prefix) && strings.HasPrefix(holder(l), r.name+"/") {
			out = append(out, l)
		}
	}
	return out
}

// waitHolding polls until r holds a Lease of prefix and returns it. The
// critical-section hooks make each hold last long enough to be caught.
func (c *cluster) waitHolding(ctx context.Context, r *replica, prefix string, timeout time.Duration) (coordinationv1.Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ls, err := c.leases(ctx)
		if err == nil {
			if held := heldBy(ls, prefix, r); len(held) > 0 {
				return held[0], nil
			}
		}
		select {
		case <-ctx.Done():
			return coordinationv1.Lease{}, fmt.Errorf("%s held no %s Lease within %v", r.name, strings.TrimSuffix(prefix, "-"), timeout)
		case <-tick.C:
		}
	}
}

// leaseRef is a Lease at one resourceVersion.
type leaseRef struct {
	name, holder, rv string
}

// waitLeasesMoved polls until none of refs still exists with the same
// holder: each was released (deleted) or taken over. It returns when that
// happened, and when each one moved.
func (c *cluster) waitLeasesMoved(ctx context.Context, refs []leaseRef, timeout time.Duration) (time.Time, map[leaseRef]time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	moved := map[leaseRef]time.Time{}
	for {
		ls, err := c.leases(ctx)
		if err == nil {
			byName := map[string]coordinationv1.Lease{}
			for _, l := range ls {
				byName[l.Name] = l
			}
			now := time.Now()
			for _, ref := range refs {
				if _, done := moved[ref]; done {
					continue
				}
				if l, ok := byName[ref.name]; !ok || holder(l) != ref.holder {
					moved[ref] = now
				}
			}
			if len(moved) == len(refs) {
				return now, moved, nil
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, moved, fmt.Errorf("Leases held at the fault were neither released nor taken over within %v", timeout)
		case <-tick.C:
		}
	}
}

// settleLeases checks that no Lease is still renewed once all work is done.
// A Lease left by a killed or cut-off holder is expired, not held: it stays
// unchanged. It lists twice, a lease duration and a margin apart: a Lease
// that changed or appeared in between is held by a live process.
func (c *cluster) settleLeases(ctx context.Context) (held, abandoned []string, err error) {
	first, err := c.leases(ctx)
	if err != nil {
		return nil, nil, err
	}
	t := time.NewTimer(leaseDuration + time.Second)
	select {
	case <-ctx.Done():
		t.Stop()
		return nil, nil, ctx.Err()
	case <-t.C:
	}
	second, err := c.leases(ctx)
	if err != nil {
		return nil, nil, err
	}
	before := map[string]string{}
	for _, l := range first {
		before[l.Name] = l.ResourceVersion
	}
	for _, l := range second {
		desc := fmt.Sprintf("%s (holder %q)", l.Name, holder(l))
		if holder(l) == "" {
			continue
		}
		if rv, ok := before[l.Name]; ok && rv == l.ResourceVersion {
			abandoned = append(abandoned, desc)
		} else {
			held = append(held, desc)
		}
	}
	return held, abandoned, nil
}

// waitSettled polls until every request and execution of the namespace is
// terminal, and at least want requests exist.
func (c *cluster) waitSettled(ctx context.Context, want int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	last := "nothing listed yet"
	for {
		var rrs v1alpha1.RemediationRequestList
		var wfes v1alpha1.WorkflowExecutionList
		err := errors.Join(cli.List(ctx, &rrs, client.InNamespace(c.ns)), cli.List(ctx, &wfes, client.InNamespace(c.ns)))
		if err == nil {
			phases := map[string]int{}
			open := 0
			for i := range rrs.Items {
				phases["rr/"+string(rrs.Items[i].EffectivePhase())]++
				if !rrs.Items[i].IsTerminal() {
					open++
				}
			}
			for i := range wfes.Items {
				phases["wfe/"+string(wfes.Items[i].EffectivePhase())]++
				if !wfes.Items[i].IsTerminal() {
					open++
				}
			}
			if open == 0 && len(rrs.Items) >= want {
				return nil
			}
			last = fmt.Sprintf("%d requests, %v", len(rrs.Items), phases)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not settled within %v: %s", timeout, last)
		case <-tick.C:
		}
	}
}

// events lists the namespace's events, for a failed run's log.
func (c *cluster) events(ctx context.Context) string {
	list, err := clientset.CoreV1().Events(c.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range list.Items {
		if e.Type == corev1.EventTypeWarning {
			fmt.Fprintf(&b, "%s %s/%s: %s\n", e.Reason, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Message)
		}
	}
	return b.String()
}
