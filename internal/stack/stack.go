package stack

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

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/controlplane"
	"github.com/leasehold/leasehold/internal/kubeclient"
	"github.com/leasehold/leasehold/internal/proc"
)

// ErrNotReady is wrapped by StartServices when a service did not answer
// 200 on /readyz in time or exited first.
var ErrNotReady = errors.New("service not ready")

// Role is what a service process runs.
type Role string

const (
	RoleGateway      Role = "gateway"
	RoleOrchestrator Role = "orchestrator"
	RoleExecutor     Role = "executor"
)

// startOrder is the order services start in; Stop goes the other way, the
// executor first and the gateways last. Each service's own shutdown is
// complete without the others (work in flight finishes, its locks are
// released), so the order is the usual teardown, not a correctness need.
var startOrder = []Role{RoleGateway, RoleOrchestrator, RoleExecutor}

// Service is one service process of the stack.
type Service struct {
	// Name is the replica's --identity and the base name of its log file.
	Name string
	Role Role
	PID  int
	// URL is a gateway's base URL; empty for the other roles.
	URL string
	// ReadyURL is the /readyz the stack waited on; MetricsURL serves
	// Prometheus metrics.
	ReadyURL   string
	MetricsURL string
	LogPath    string
}

// service is a Service with what it takes to start it again.
type service struct {
	Service
	// args are the role's arguments without the addresses, which change
	// when a picked port was taken and the process is started again.
	args []string
	// ports is how many loopback ports the role listens on.
	ports int
	proc  *proc.Process
}

// Exit is a service process that ended while the stack was up, not
// because Stop asked it to. It is an error matching ErrProcessExited.
type Exit struct {
	Name string
	PID  int
	// Status is the process's exit error; nil for exit status 0.
	Status  error
	LogPath string
	// Tail is the end of the process's log.
	Tail string
}

func (e Exit) Error() string {
	status := "exit status 0"
	if e.Status != nil {
		status = e.Status.Error()
	}
	return fmt.Sprintf("%v: %s (pid %d, %s); log %s", ErrProcessExited, e.Name, e.PID, status, e.LogPath)
}

func (e Exit) Unwrap() error { return ErrProcessExited }

// exitTailBytes is how much of a dead process's log an Exit carries: the
// last few log lines, enough for a panic's first frames or a fatal error.
const exitTailBytes = 4096

// Stack is a running local system: a control plane and, after
// StartServices, the service processes. Stop stops all of it.
type Stack struct {
	ControlPlane   *controlplane.ControlPlane
	KubeconfigPath string
	Namespace      string
	// LogDir holds one <name>.log per service process.
	LogDir string

	opts    Options
	dataDir string
	cli     client.WithWatch

	mu       sync.Mutex
	services []*service
	// stopping is set by Stop before it signals anything, so that the
	// monitors tell an exit Stop caused from one it did not.
	stopping bool
	stopped  bool
	// exited are the exits recorded, recorded the PIDs they are of: a
	// monitor and Stop may both find one, and it is recorded once.
	exited   []Exit
	recorded map[int]bool
	exits    chan Exit
	monitors sync.WaitGroup
}

// Up starts the control plane with the CRDs and the namespace and writes a
// kubeconfig next to its data. It starts no service; see StartServices. On
// error, whatever it started is stopped again.
func Up(ctx context.Context, opts Options) (*Stack, error) {
	o, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	cp, err := controlplane.Start(ctx, controlplane.Options{Dir: o.Dir, KeepData: o.KeepData, Namespaces: []string{o.Namespace}})
	if err != nil {
		return nil, err
	}
	s := &Stack{ControlPlane: cp, Namespace: o.Namespace, opts: o, dataDir: cp.Dir(), recorded: map[int]bool{}}
	if err := s.init(); err != nil {
		return nil, errors.Join(err, cp.Stop())
	}
	return s, nil
}

func (s *Stack) init() error {
	s.KubeconfigPath = filepath.Join(s.dataDir, "kubeconfig")
	if err := os.WriteFile(s.KubeconfigPath, s.ControlPlane.Kubeconfig(), 0o600); err != nil {
		return err
	}
	s.LogDir = filepath.Join(s.dataDir, "logs")
	if err := os.MkdirAll(s.LogDir, 0o700); err != nil {
		return err
	}
	cfg, err := kubeclient.Configure(s.ControlPlane.Config, kubeclient.Options{UserAgent: "leasehold-up"})
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
	s.cli, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	return err
}

// DataDir is the folder of control plane data, kubeconfig and logs.
func (s *Stack) DataDir() string { return s.dataDir }

// plan lists the service processes to start, in start order.
func (s *Stack) plan() []*service {
	o := s.opts
	common := []string{"--kubeconfig", s.KubeconfigPath, "--namespace", s.Namespace}
	var out []*service
	add := func(role Role, name string, ports int, args ...string) {
		all := append([]string{string(role)}, args...)
		all = append(all, common...)
		all = append(all, "--identity", name)
		out = append(out, &service{Service: Service{Name: name, Role: role}, args: all, ports: ports})
	}
	lease := o.LeaseDuration.String()
	for _, role := range startOrder {
		switch role {
		case RoleGateway:
			for i := range o.Gateways {
				// No authentication: the stack listens on loopback only and
				// has no token issuer for callers.
				add(role, fmt.Sprintf("gw-%d", i), 1, "--insecure-no-auth", "--lease-duration", lease)
			}
		case RoleOrchestrator:
			for i := range o.Orchestrators {
				add(role, fmt.Sprintf("orchestrator-%d", i), 2, "--lease-duration", lease)
			}
		case RoleExecutor:
			add(role, "executor-0", 2, "--simulate", "--duration", o.ExecutionDuration.String())
		}
	}
	return out
}

// listenArgs gives a service its addresses and records its URLs.
func (svc *service) listenArgs(addrs []string) []string {
	args := append([]string(nil), svc.args...)
	switch svc.Role {
	case RoleGateway:
		svc.URL = "http://" + addrs[0]
		svc.ReadyURL = svc.URL + "/readyz"
		svc.MetricsURL = svc.URL + "/metrics"
		return append(args, "--listen", addrs[0])
	default:
		svc.MetricsURL = "http://" + addrs[0] + "/metrics"
		svc.ReadyURL = "http://" + addrs[1] + "/readyz"
		return append(args, "--metrics-bind-address", addrs[0], "--health-probe-bind-address", addrs[1])
	}
}

// startAttempts bounds the starts of one service: a port picked free can be
// taken by another program before the service binds it.
const startAttempts = 3

// StartServices starts the gateways, orchestrators and the simulated
// executor as processes of Options.Executable, all at once, and waits until
// each answers 200 on /readyz (within Options.ReadyTimeout; ErrNotReady
// otherwise). A service that lost its port to another program is started
// again on new ports. Whatever it started keeps running until Stop, also
// when it returns an error. From its return on, a service that exits is
// reported on Exits.
func (s *Stack) StartServices(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped || s.services != nil {
		s.mu.Unlock()
		return errors.New("stack: services already started or stack stopped")
	}
	svcs := s.plan()
	s.services = svcs
	s.exits = make(chan Exit, len(svcs))
	s.mu.Unlock()

	n := 0
	for _, svc := range svcs {
		n += svc.ports
	}
	addrs, err := freeAddrs(n)
	if err != nil {
		return err
	}
	for _, svc := range svcs {
		if err := s.start(svc, addrs[:svc.ports]); err != nil {
			return err
		}
		addrs = addrs[svc.ports:]
	}

	readyCtx, cancel := context.WithTimeout(ctx, s.opts.ReadyTimeout)
	defer cancel()
	for _, svc := range svcs {
		if err := s.waitReady(readyCtx, svc); err != nil {
			return err
		}
	}
	for _, svc := range svcs {
		s.monitor(svc)
	}
	return nil
}

// start starts svc's process on addrs. It holds s.mu: it changes what
// Services returns.
func (s *Stack) start(svc *service, addrs []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := proc.Start(proc.Spec{Name: svc.Name, Path: s.opts.Executable, Args: svc.listenArgs(addrs), LogDir: s.LogDir})
	if err != nil {
		return err
	}
	svc.proc, svc.PID, svc.LogPath = p, p.PID(), p.LogPath()
	return nil
}

// waitReady waits for one service, starting it again on new ports when it
// exited because its address was taken.
func (s *Stack) waitReady(ctx context.Context, svc *service) error {
	for attempt := 1; ; attempt++ {
		err := svc.proc.WaitReady(ctx, svc.ReadyURL)
		if err == nil {
			return nil
		}
		if attempt == startAttempts || !svc.lostPort() {
			return fmt.Errorf("%w: %s: %w", ErrNotReady, svc.Name, err)
		}
		addrs, aerr := freeAddrs(svc.ports)
		if aerr != nil {
			return aerr
		}
		if err := s.start(svc, addrs); err != nil {
			return err
		}
	}
}

// lostPort reports whether the process exited and its log says an address
// was in use.
func (svc *service) lostPort() bool {
	select {
	case <-svc.proc.Done():
	default:
		return false
	}
	return strings.Contains(svc.proc.Tail(exitTailBytes), "address already in use")
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

// monitor reports svc's exit on Exits unless Stop caused it.
func (s *Stack) monitor(svc *service) {
	p := svc.proc
	s.monitors.Go(func() {
		<-p.Done()
		s.mu.Lock()
		if s.stopping {
			// Stop records what had exited before it began.
			s.mu.Unlock()
			return
		}
		e, first := s.recordExitLocked(svc)
		s.mu.Unlock()
		if first {
			// Never blocks: the channel has room for every service, and
			// each is monitored once.
			s.exits <- e
		}
	})
}

// recordExitLocked records the exit of svc's process, which has exited,
// once; first is false if it was recorded before. s.mu must be held.
func (s *Stack) recordExitLocked(svc *service) (e Exit, first bool) {
	p := svc.proc
	if s.recorded[p.PID()] {
		return Exit{}, false
	}
	s.recorded[p.PID()] = true
	e = Exit{Name: svc.Name, PID: p.PID(), Status: p.ExitErr(), LogPath: p.LogPath(), Tail: p.Tail(exitTailBytes)}
	s.exited = append(s.exited, e)
	return e, true
}

// Exits delivers each service process that ends while the stack is up,
// once. Nil before StartServices.
func (s *Stack) Exits() <-chan Exit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exits
}

// Exited returns the service processes that ended while the stack was up,
// so far: those delivered on Exits, and after Stop also those that had
// exited before it began without being delivered (such as a service that
// failed to start).
func (s *Stack) Exited() []Exit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Exit(nil), s.exited...)
}

// Services describes the service processes, in start order.
func (s *Stack) Services() []Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Service, 0, len(s.services))
	for _, svc := range s.services {
		if svc.proc != nil {
			out = append(out, svc.Service)
		}
	}
	return out
}

// GatewayURLs are the gateways' base URLs.
func (s *Stack) GatewayURLs() []string {
	var urls []string
	for _, svc := range s.Services() {
		if svc.Role == RoleGateway {
			urls = append(urls, svc.URL)
		}
	}
	return urls
}

// Stop stops every service process, in the reverse of the start order and
// the replicas of one role at once, each with SIGTERM and, after
// Options.StopGrace, SIGKILL; then the control plane, which removes the
// data folder unless it was given or KeepData is set. A process that had
// exited before Stop began is added to Exited, not to Stop's error, which
// is about processes that did not exit cleanly when asked and about the
// control plane. Stop is idempotent.
func (s *Stack) Stop() error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped, s.stopping = true, true
	svcs := s.services
	exitedBefore := map[*service]bool{}
	for _, svc := range svcs {
		if svc.proc == nil {
			continue
		}
		select {
		case <-svc.proc.Done():
			exitedBefore[svc] = true
			s.recordExitLocked(svc)
		default:
		}
	}
	s.mu.Unlock()

	var (
		mu   sync.Mutex
		errs []error
	)
	for i := len(startOrder) - 1; i >= 0; i-- {
		var wg sync.WaitGroup
		for _, svc := range svcs {
			if svc.Role != startOrder[i] || svc.proc == nil || exitedBefore[svc] {
				continue
			}
			wg.Go(func() {
				if err := svc.proc.Stop(s.opts.StopGrace); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("stop %s: %w", svc.Name, err))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	s.monitors.Wait()
	errs = append(errs, s.ControlPlane.Stop())
	return errors.Join(errs...)
}
