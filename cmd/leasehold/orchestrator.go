package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/kubeclient"
	"github.com/leasehold/leasehold/internal/skewclock"
	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/orchestrator"
)

// orchestratorFlags are the flags of `leasehold orchestrator`.
type orchestratorFlags struct {
	controllerFlags
	leaseDuration time.Duration
	requeueDelay  time.Duration
	blockedResync time.Duration
	retention     time.Duration

	// Test-only hooks, hidden.
	testClockOffset        time.Duration
	testCheckToCreateDelay time.Duration
}

func newOrchestratorCommand() *cobra.Command {
	var f orchestratorFlags
	cmd := &cobra.Command{
		Use:   "orchestrator",
		Short: "Start at most one WorkflowExecution per target for the RemediationRequests of a namespace",
		Long: `orchestrator turns the RemediationRequests of --namespace into
WorkflowExecutions, at most one active execution per target resource across
all replicas: the requests of a busy target wait (Blocked, reason
ResourceBusy) and start in arrival order when it is free.

Run as many replicas as you like, each with its own --identity: there is no
leader election, every replica works, and a per-target Lease lock
(ro-lock-*) serialises their decisions. A replica that dies holding a lock
delays its target by at most --lease-duration.

It serves /metrics on --metrics-bind-address and /healthz, /readyz on
--health-probe-bind-address, and stops cleanly on SIGTERM or SIGINT: work
in progress finishes, then the locks still held are released.`,
		Example: `  leasehold orchestrator --kubeconfig /tmp/leasehold/kubeconfig --identity orch-0`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runOrchestrator(cmd, f)
		},
	}
	fl := cmd.Flags()
	f.controllerFlags.bind(fl, ":8081", ":8082")
	fl.DurationVar(&f.leaseDuration, "lease-duration", 30*time.Second, "duration of the per-target Leases: how long a crashed replica can keep a target locked")
	fl.DurationVar(&f.requeueDelay, "requeue-delay", 0, "mean delay before a request whose target lock is held is tried again (0: the orchestrator's default, 100ms)")
	fl.DurationVar(&f.blockedResync, "blocked-resync", 0, "period of the safety-net re-examination of Blocked requests (0: the orchestrator's default, 30s)")
	fl.DurationVar(&f.retention, "retention", 0, "age after which terminal requests and executions are deleted; negative disables (0: the orchestrator's default, 24h)")
	fl.DurationVar(&f.testClockOffset, "test-clock-offset", 0, "TEST ONLY: add this offset to the wall clock")
	fl.DurationVar(&f.testCheckToCreateDelay, "test-check-to-create-delay", 0, "TEST ONLY: wait this long between the last lock check and the create of an execution")
	for _, name := range []string{"test-clock-offset", "test-check-to-create-delay"} {
		if err := fl.MarkHidden(name); err != nil {
			panic(err) // the flag was defined just above
		}
	}
	return cmd
}

func runOrchestrator(cmd *cobra.Command, f orchestratorFlags) error {
	log, err := f.logger(cmd, "orchestrator")
	if err != nil {
		return err
	}
	restCfg, err := f.restConfig("leasehold-orchestrator")
	if err != nil {
		return err
	}
	clientset, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	mgr, err := f.newManager(restCfg, log)
	if err != nil {
		return err
	}
	locker, err := lease.New(clientset.CoordinationV1(), lease.Options{
		Namespace:        f.namespace,
		Identity:         f.identity,
		Prefix:           "ro-lock",
		LeaseDuration:    f.leaseDuration,
		Registerer:       metrics.Registry,
		MetricsNamespace: "orchestrator",
		Clock:            skewclock.New(clock.RealClock{}, f.testClockOffset),
	})
	if err != nil {
		return err
	}
	err = orchestrator.Setup(mgr, orchestrator.Options{
		Namespace:          f.namespace,
		Identity:           f.identity,
		Locker:             locker,
		RequeueDelay:       f.requeueDelay,
		BlockedResync:      f.blockedResync,
		Retention:          f.retention,
		Registerer:         metrics.Registry,
		ClockOffset:        f.testClockOffset,
		CheckToCreateDelay: f.testCheckToCreateDelay,
	})
	if err == nil {
		f.printStartup(cmd, "orchestrator")
		err = mgr.Start(cmd.Context())
	}
	// Only after the manager has stopped, that is after the last
	// reconcile has returned: releasing a lock under a running reconcile
	// would let another replica decide while this one still writes.
	if cerr := locker.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("release locks: %w", cerr))
	}
	return err
}

// controllerFlags are the flags the controller-runtime based commands
// (orchestrator, executor) share.
type controllerFlags struct {
	namespace    string
	kubeconfig   string
	identity     string
	metricsAddr  string
	probeAddr    string
	logVerbosity int
}

func (f *controllerFlags) bind(fl *pflag.FlagSet, metricsAddr, probeAddr string) {
	fl.StringVar(&f.namespace, "namespace", controllerEnvOr("POD_NAMESPACE", "leasehold-system"), "namespace of the RemediationRequests, WorkflowExecutions and Leases; the default comes from POD_NAMESPACE when set")
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: KUBECONFIG, ~/.kube/config, or the in-cluster configuration)")
	fl.StringVar(&f.identity, "identity", controllerDefaultIdentity(), "identity of this replica, unique among replicas; the default is POD_NAME, else the hostname")
	fl.StringVar(&f.metricsAddr, "metrics-bind-address", metricsAddr, `address of /metrics ("0" disables it)`)
	fl.StringVar(&f.probeAddr, "health-probe-bind-address", probeAddr, `address of /healthz and /readyz ("0" disables them)`)
	fl.IntVar(&f.logVerbosity, "log-verbosity", 0, "log verbosity (1: every transition)")
}

// logger checks the identity and returns the process's logger, JSON lines
// on stderr, also installed as controller-runtime's.
func (f *controllerFlags) logger(cmd *cobra.Command, name string) (logr.Logger, error) {
	if f.identity == "" {
		return logr.Logger{}, errors.New("--identity is empty and neither POD_NAME nor the hostname gives one")
	}
	log := funcr.NewJSON(func(obj string) { fmt.Fprintln(cmd.ErrOrStderr(), obj) },
		funcr.Options{LogTimestamp: true, Verbosity: f.logVerbosity}).
		WithName(name).WithValues("identity", f.identity)
	useControllerRuntimeLogger(log)
	return log, nil
}

// restConfig follows client-go's standard rules (the explicit file, else
// the KUBECONFIG files, else ~/.kube/config, else the in-cluster
// configuration) and applies the project's client settings.
func (f *controllerFlags) restConfig(userAgent string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	return kubeclient.Configure(cfg, kubeclient.Options{UserAgent: userAgent + "/" + f.identity})
}

// newManager returns a manager whose cache holds only f.namespace, without
// leader election: every replica works, and the per-target locks, not a
// leader, keep them apart. /readyz passes once the informers are synced.
func (f *controllerFlags) newManager(restCfg *rest.Config, log logr.Logger) (ctrl.Manager, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 log,
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{f.namespace: {}}},
		Metrics:                metricsserver.Options{BindAddress: f.metricsAddr},
		HealthProbeBindAddress: f.probeAddr,
		LeaderElection:         false,
	})
	if err != nil {
		return nil, fmt.Errorf("manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	synced := func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("informer caches not started or not synced")
		}
		return nil
	}
	if err := mgr.AddReadyzCheck("informers", synced); err != nil {
		return nil, err
	}
	return mgr, nil
}

// printStartup prints the one line that says the command is up and where.
func (f *controllerFlags) printStartup(cmd *cobra.Command, what string) {
	fmt.Fprintf(cmd.OutOrStdout(), "%s starting identity=%s namespace=%s metrics=%s health=%s\n",
		what, f.identity, f.namespace, f.metricsAddr, f.probeAddr)
}

func controllerEnvOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// controllerDefaultIdentity is POD_NAME, else the hostname; empty if
// neither exists, which the commands refuse.
func controllerDefaultIdentity() string {
	if v := os.Getenv("POD_NAME"); v != "" {
		return v
	}
	h, _ := os.Hostname()
	return h
}
