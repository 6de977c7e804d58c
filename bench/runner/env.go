package runner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/controlplane"
	"github.com/leasehold/leasehold/internal/kubeclient"
	"github.com/leasehold/leasehold/internal/proc"
)

// env is one scenario's world: a fresh control plane, a kubeconfig for the
// services, a client for the benchmark, and the service processes, all
// stopped by stop.
type env struct {
	r          *run
	cp         *controlplane.ControlPlane
	kubeconfig string
	logDir     string
	cli        client.WithWatch
	clientset  kubernetes.Interface

	mu    sync.Mutex
	procs []*proc.Process
}

// startEnv starts a control plane with namespaces and waits until creates
// of the CRDs' resources are no longer held back (see waitCRDsSettled).
func (r *run) startEnv(ctx context.Context, name string, namespaces []string) (*env, error) {
	dir := filepath.Join(r.opts.WorkDir, name)
	logDir := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return nil, err
	}
	r.progress("%s: starting a fresh control plane", name)
	cp, err := controlplane.Start(ctx, controlplane.Options{Namespaces: namespaces})
	if err != nil {
		return nil, err
	}
	e := &env{r: r, cp: cp, logDir: logDir, kubeconfig: filepath.Join(dir, "kubeconfig")}
	if err := e.init(ctx); err != nil {
		return nil, errors.Join(err, e.stop())
	}
	return e, nil
}

func (e *env) init(ctx context.Context) error {
	if err := os.WriteFile(e.kubeconfig, e.cp.Kubeconfig(), 0o600); err != nil {
		return err
	}
	cfg, err := kubeclient.Configure(e.cp.Config, kubeclient.Options{UserAgent: "leasehold-bench"})
	if err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		return err
	}
	if e.cli, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	if e.clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	return e.waitCRDsSettled(ctx)
}

// crdCreateDelay is how long kube-apiserver holds every create of a custom
// resource made within that time of its CRD becoming Established, so that
// all servers of a highly available control plane have seen the CRD. A
// fresh control plane installs the CRDs moments before the scenario, so
// without this wait the first signals would each take two seconds more.
const crdCreateDelay = 2 * time.Second

var benchCRDs = []string{"remediationrequests.leasehold.dev", "workflowexecutions.leasehold.dev"}

// waitCRDsSettled waits until crdCreateDelay has passed since each CRD
// became Established. The condition's time is stored in whole seconds,
// rounded down, and the API server compares it the same way; both clocks
// are this machine's.
func (e *env) waitCRDsSettled(ctx context.Context) error {
	var settled time.Time
	for _, name := range benchCRDs {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := e.cli.Get(ctx, client.ObjectKey{Name: name}, &crd); err != nil {
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
	return e.r.wait(ctx, settled.Sub(e.r.opts.Clock.Now()))
}

// stop stops every service process, all at once, then the control plane.
// Safe to call more than once.
func (e *env) stop() error {
	e.mu.Lock()
	procs := e.procs
	e.procs = nil
	e.mu.Unlock()
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, p := range procs {
		wg.Go(func() {
			if err := p.Stop(e.r.opts.StopGrace); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("stop %s: %w", p.Name, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if e.cp != nil {
		errs = append(errs, e.cp.Stop())
		e.cp = nil
	}
	return errors.Join(errs...)
}

// service is a process to start: its name (also its --identity and log
// file), executable and arguments without the listen addresses.
type service struct {
	name string
	path string
	args []string
	// ports is how many loopback ports it listens on; listen turns them
	// into arguments and says which one serves /readyz.
	ports  int
	listen func(addrs []string) (args []string, readyURL string)
}

// startAttempts bounds the starts of one service: a port picked free can be
// taken by another program before the service binds it.
const startAttempts = 3

// startServices starts svcs all at once and waits until each is ready; it
// returns their base addresses (the first port of each) in order. Started
// processes are stopped by e.stop, also after an error.
func (e *env) startServices(ctx context.Context, svcs []service) ([]string, error) {
	type started struct {
		p     *proc.Process
		ready string
		addrs []string
	}
	all := make([]started, len(svcs))
	launch := func(i int) error {
		addrs, err := freeAddrs(svcs[i].ports)
		if err != nil {
			return err
		}
		listenArgs, ready := svcs[i].listen(addrs)
		p, err := proc.Start(proc.Spec{Name: svcs[i].name, Path: svcs[i].path, Args: append(append([]string(nil), svcs[i].args...), listenArgs...), LogDir: e.logDir})
		if err != nil {
			return err
		}
		e.mu.Lock()
		e.procs = append(e.procs, p)
		e.mu.Unlock()
		all[i] = started{p: p, ready: ready, addrs: addrs}
		return nil
	}
	for i := range svcs {
		if err := launch(i); err != nil {
			return nil, err
		}
	}
	readyCtx, cancel := context.WithTimeout(ctx, e.r.opts.ReadyTimeout)
	defer cancel()
	urls := make([]string, len(svcs))
	for i := range svcs {
		for attempt := 1; ; attempt++ {
			err := all[i].p.WaitReady(readyCtx, all[i].ready)
			if err == nil {
				break
			}
			lostPort := strings.Contains(all[i].p.Tail(4096), "address already in use")
			if attempt == startAttempts || !lostPort {
				return nil, fmt.Errorf("%s not ready: %w", svcs[i].name, err)
			}
			// The process has exited; it has nothing left to stop.
			e.forget(all[i].p)
			if err := launch(i); err != nil {
				return nil, err
			}
		}
		urls[i] = "http://" + all[i].addrs[0]
	}
	return urls, nil
}

// forget drops an exited process from those stop stops.
func (e *env) forget(p *proc.Process) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, q := range e.procs {
		if q == p {
			e.procs = append(e.procs[:i], e.procs[i+1:]...)
			return
		}
	}
}

// freeAddrs returns n distinct loopback addresses whose ports were free a
// moment ago: all stay bound until all are picked.
func freeAddrs(n int) ([]string, error) {
	addrs := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		defer ln.Close()
		addrs = append(addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)))
	}
	return addrs, nil
}

// gatewayServices are n bench gateway replicas of strategy s writing to
// namespace ns.
func (e *env) gatewayServices(binary string, s Strategy, ns string, n int) []service {
	out := make([]service, n)
	for i := range n {
		name := fmt.Sprintf("gw-%s-%d", s, i)
		out[i] = service{
			name: name, path: binary, ports: 1,
			args: []string{"--kubeconfig", e.kubeconfig, "--namespace", ns, "--identity", name,
				"--cluster", "local", "--insecure-no-auth", "--strategy", string(s)},
			listen: func(addrs []string) ([]string, string) {
				return []string{"--listen", addrs[0]}, "http://" + addrs[0] + "/readyz"
			},
		}
	}
	return out
}

// controllerService is a `leasehold orchestrator` or `leasehold executor`
// replica in namespace ns.
func (e *env) controllerService(binary, role, name, ns string, extra ...string) service {
	args := append([]string{role, "--kubeconfig", e.kubeconfig, "--namespace", ns, "--identity", name}, extra...)
	return service{
		name: name, path: binary, ports: 2, args: args,
		listen: func(addrs []string) ([]string, string) {
			return []string{"--metrics-bind-address", addrs[0], "--health-probe-bind-address", addrs[1]}, "http://" + addrs[1] + "/readyz"
		},
	}
}
