// Command bench-gateway is the gateway front end of `leasehold gateway`
// with a choice of deduplication strategy, for the benchmark only:
// leasehold's (the product's default configuration), the original design's
// (bench/baseline), or one unconditional create per signal (bench/floor).
// Everything but the strategy is the product's: the same HTTP server, owner
// resolution, client configuration and /readyz. It is never shipped.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/bench/baseline"
	"github.com/leasehold/leasehold/bench/floor"
	"github.com/leasehold/leasehold/gateway"
	"github.com/leasehold/leasehold/gateway/dedup"
	"github.com/leasehold/leasehold/gateway/owner"
	"github.com/leasehold/leasehold/internal/kubeclient"
	"github.com/leasehold/leasehold/lease"
)

// Strategies accepted by --strategy.
const (
	strategyLeasehold = "leasehold"
	strategyBaseline  = "baseline"
	strategyFloor     = "floor"
)

type flags struct {
	listen         string
	kubeconfig     string
	namespace      string
	identity       string
	cluster        string
	insecureNoAuth bool
	strategy       string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "bench-gateway",
		Short: "The gateway with a choice of deduplication strategy, for the benchmark",
		Long: `bench-gateway serves what ` + "`leasehold gateway`" + ` serves (signals, /healthz,
/readyz, /metrics) and records signals with the strategy chosen by --strategy:

  leasehold  the product's Recorder with its defaults
  baseline   the original design's algorithm, flaws included
  floor      one unconditional create per signal, no deduplication

For benchmarks only.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", gateway.DefaultAddr, "address to listen on")
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: KUBECONFIG, ~/.kube/config, or the in-cluster configuration)")
	fl.StringVar(&f.namespace, "namespace", envOr("POD_NAMESPACE", "leasehold-system"), "namespace of the RemediationRequests and Leases; POD_NAMESPACE if set")
	fl.StringVar(&f.identity, "identity", defaultIdentity(), "identity of this replica in Leases (distinct per replica); POD_NAME if set, else the hostname")
	fl.StringVar(&f.cluster, "cluster", "local", "cluster name for signals that do not carry one")
	fl.BoolVar(&f.insecureNoAuth, "insecure-no-auth", false, "accept signals without authentication")
	fl.StringVar(&f.strategy, "strategy", strategyLeasehold, `deduplication strategy: "leasehold", "baseline" or "floor"`)
	return cmd
}

func run(cmd *cobra.Command, f flags) error {
	switch f.strategy {
	case strategyLeasehold, strategyBaseline, strategyFloor:
	default:
		return fmt.Errorf("--strategy %q is not %q, %q or %q", f.strategy, strategyLeasehold, strategyBaseline, strategyFloor)
	}
	if f.identity == "" {
		return errors.New("--identity is empty and neither POD_NAME nor the hostname gives one")
	}
	ctx := cmd.Context()
	log := funcr.NewJSON(func(obj string) { fmt.Fprintln(cmd.ErrOrStderr(), obj) }, funcr.Options{LogTimestamp: true}).
		WithName("bench-gateway").WithValues("identity", f.identity, "strategy", f.strategy)
	ctx = logr.NewContext(ctx, log)

	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	restCfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	// The user agent tells the strategies apart in the API server's logs.
	restCfg, err = kubeclient.Configure(restCfg, kubeclient.Options{UserAgent: "bench-gateway/" + f.strategy + "/" + f.identity})
	if err != nil {
		return err
	}
	clientset, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	// Uncached, as in the product: every strategy reads the API server.
	crClient, err := client.New(restCfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("controller-runtime client: %w", err)
	}
	metadataClient, err := metadata.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("metadata client: %w", err)
	}
	reg := prometheus.NewRegistry()

	var (
		d       dedup.Deduplicator
		cleanup = func(context.Context) error { return nil }
	)
	switch f.strategy {
	case strategyLeasehold:
		locker, err := lease.New(clientset.CoordinationV1(), lease.Options{
			Namespace:        f.namespace,
			Identity:         f.identity,
			Prefix:           "gw-lock",
			LeaseDuration:    30 * time.Second,
			Registerer:       reg,
			MetricsNamespace: "gateway",
		})
		if err != nil {
			return err
		}
		rec, err := dedup.New(crClient, locker, dedup.Options{Namespace: f.namespace, Identity: f.identity, Registerer: reg, Logger: log})
		if err != nil {
			return errors.Join(err, locker.Close())
		}
		d = rec
		// As in the product: workers finish before the locks are released.
		cleanup = func(ctx context.Context) error {
			return errors.Join(rec.Close(ctx), locker.Close())
		}
	case strategyBaseline:
		d, err = baseline.New(crClient, clientset.CoordinationV1(), baseline.Options{Namespace: f.namespace, Identity: f.identity})
	case strategyFloor:
		d, err = floor.New(crClient, floor.Options{Namespace: f.namespace})
	}
	if err != nil {
		return err
	}
	err = serve(ctx, cmd, f, d, clientset, metadataClient, reg, log)
	drain, cancel := context.WithTimeout(context.WithoutCancel(ctx), gateway.DefaultRequestTimeout)
	defer cancel()
	return errors.Join(err, cleanup(drain))
}

// serve builds the product's front end around d and serves until ctx ends.
func serve(ctx context.Context, cmd *cobra.Command, f flags, d dedup.Deduplicator, clientset kubernetes.Interface,
	md metadata.Interface, reg *prometheus.Registry, log logr.Logger) error {
	resolver, err := owner.New(md, owner.Options{Cluster: f.cluster, Registerer: reg, MetricsNamespace: "gateway"})
	if err != nil {
		return fmt.Errorf("owner resolver: %w", err)
	}
	srv, err := gateway.New(gateway.Config{
		Dedup:          d,
		Resolver:       resolver,
		Cluster:        f.cluster,
		Namespace:      f.namespace,
		InsecureNoAuth: f.insecureNoAuth,
		TokenReviewer:  clientset.AuthenticationV1().TokenReviews(),
		ReadyCheck:     apiServerReady(clientset.Discovery().RESTClient()),
		Addr:           f.listen,
		Registerer:     reg,
		Gatherer:       reg,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "bench-gateway listening on http://%s strategy=%s identity=%s namespace=%s auth=%s\n",
		ln.Addr(), f.strategy, f.identity, f.namespace, srv.AuthMode())
	return srv.Serve(ctx, ln)
}

// apiServerReady checks the API server's own /readyz, as the product does.
func apiServerReady(rc rest.Interface) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		return rc.Get().AbsPath("/readyz").Do(ctx).Error()
	}
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func defaultIdentity() string {
	if v := os.Getenv("POD_NAME"); v != "" {
		return v
	}
	h, _ := os.Hostname()
	return h
}
