package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/backoff"
	"github.com/leasehold/leasehold/gateway"
	"github.com/leasehold/leasehold/gateway/dedup"
	"github.com/leasehold/leasehold/gateway/owner"
	"github.com/leasehold/leasehold/internal/kubeclient"
	"github.com/leasehold/leasehold/internal/skewclock"
	"github.com/leasehold/leasehold/lease"
)

// Client rates of the gateway's reviews and readiness check. The reviews
// of a few senders' tokens, cached for a while, need little; the limit
// bounds what a flood of unknown tokens can cost the API server.
const (
	defaultAuthQPS   = 20
	defaultAuthBurst = 40
	readyQPS         = 10
	readyBurst       = 20
)

// gatewayFlags are the flags of `leasehold gateway`.
type gatewayFlags struct {
	listen         string
	namespace      string
	cluster        string
	clusterLabel   string
	kubeconfig     string
	identity       string
	maxBodyBytes   int64
	maxInFlight    int
	requestTimeout time.Duration
	insecureNoAuth bool
	accessReview   bool
	audience       string
	maxReviews     int
	authQPS        float32
	authBurst      int
	tlsCertFile    string
	tlsKeyFile     string
	leaseDuration  time.Duration
	maxAttempts    int
	lockWrites     string
	backoffBase    time.Duration
	backoffMax     time.Duration
	backoffJitter  float64
	logVerbosity   int

	// Test-only hooks, hidden.
	testClockOffset          time.Duration
	testCriticalSectionDelay time.Duration
}

func newGatewayCommand() *cobra.Command {
	var f gatewayFlags
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Receive alert signals over HTTP and record them as RemediationRequests",
		Long: `gateway serves POST /api/v1/signals/alertmanager (Alertmanager webhooks) and
POST /api/v1/signals/kubernetes-event (Kubernetes Events), and records every
firing signal as a RemediationRequest: one per workload while it is in
progress, whose occurrence count includes every signal about it, however many
replicas receive them.

Callers authenticate with a bearer token issued for --token-audience,
validated by a TokenReview, and a SubjectAccessReview must allow its owner to
create remediationrequests.leasehold.dev in --namespace (unless
--access-review=false). At most --max-token-reviews reviews of uncached
tokens run at once; a request beyond them is answered 503 at once. The
reviews use a client of their own (--auth-qps, --auth-burst), and so does the
API server check of /readyz, so that a flood of unknown tokens slows neither
readiness nor the writes. --insecure-no-auth turns authentication off for
local runs.

It also serves /healthz, /readyz and /metrics, and shuts down gracefully on
SIGTERM: /readyz fails, new connections are refused, requests in flight finish,
then the locks still held are released.`,
		Example: `  leasehold gateway --kubeconfig /tmp/leasehold/kubeconfig --insecure-no-auth --identity gw-0
  leasehold gateway --listen :8443 --tls-cert-file tls.crt --tls-key-file tls.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runGateway(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", gateway.DefaultAddr, "address to listen on")
	fl.StringVar(&f.namespace, "namespace", gatewayEnvOr("POD_NAMESPACE", "leasehold-system"), "namespace of the RemediationRequests and Leases; POD_NAMESPACE if set")
	fl.StringVar(&f.cluster, "cluster", "local", "cluster name for signals that do not carry one")
	fl.StringVar(&f.clusterLabel, "cluster-label", "", `alert label that names the cluster (default "cluster")`)
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: KUBECONFIG, ~/.kube/config, or the in-cluster configuration)")
	fl.StringVar(&f.identity, "identity", gatewayDefaultIdentity(), "identity of this replica in Leases; POD_NAME if set, else the hostname")
	fl.Int64Var(&f.maxBodyBytes, "max-body-bytes", gateway.DefaultMaxBodyBytes, "largest request body accepted")
	fl.IntVar(&f.maxInFlight, "max-in-flight", gateway.DefaultMaxInFlight, "signals recorded at once, beyond which requests are answered 503")
	fl.DurationVar(&f.requestTimeout, "request-timeout", gateway.DefaultRequestTimeout,
		fmt.Sprintf("deadline of one request: a signal not yet being written is then answered 503 (not counted); one being written is answered with its write's outcome, up to %s later", dedup.MaxOutcomeWait))
	fl.BoolVar(&f.insecureNoAuth, "insecure-no-auth", false, "accept signals without authentication (local runs only)")
	fl.BoolVar(&f.accessReview, "access-review", true, "also require permission to create remediationrequests.leasehold.dev in --namespace (off with --insecure-no-auth unless given)")
	fl.StringVar(&f.audience, "token-audience", gateway.DefaultAudience, "audience a bearer token must be issued for (TokenReview spec.audiences, checked in status.audiences)")
	fl.IntVar(&f.maxReviews, "max-token-reviews", gateway.DefaultMaxTokenReviews, "token reviews of uncached tokens in flight at once, beyond which requests are answered 503")
	fl.Float32Var(&f.authQPS, "auth-qps", defaultAuthQPS, "sustained rate of TokenReview and SubjectAccessReview requests, on a client of their own")
	fl.IntVar(&f.authBurst, "auth-burst", defaultAuthBurst, "burst of TokenReview and SubjectAccessReview requests above --auth-qps")
	fl.StringVar(&f.tlsCertFile, "tls-cert-file", "", "serve HTTPS with this certificate (with --tls-key-file)")
	fl.StringVar(&f.tlsKeyFile, "tls-key-file", "", "private key of --tls-cert-file")
	fl.DurationVar(&f.leaseDuration, "lease-duration", 30*time.Second, "duration of the per-fingerprint Leases")
	fl.StringVar(&f.lockWrites, "lock-writes", string(dedup.LockNone), `writes made under the fingerprint's gw-lock Lease: "none" (creates are fenced by their name, updates by their resourceVersion), "updates" or "all"`)
	fl.IntVar(&f.maxAttempts, "max-attempts", 10, "attempts to record one signal under contention, the first included")
	fl.DurationVar(&f.backoffBase, "backoff-base", 100*time.Millisecond, "wait after the first contended attempt")
	fl.DurationVar(&f.backoffMax, "backoff-max", time.Second, "cap of the wait between attempts")
	fl.Float64Var(&f.backoffJitter, "backoff-jitter", 10, "jitter of the waits, in percent of the nominal wait (0: none)")
	fl.IntVar(&f.logVerbosity, "log-verbosity", 0, "log verbosity (1: every signal)")
	fl.DurationVar(&f.testClockOffset, "test-clock-offset", 0, "TEST ONLY: add this offset to the wall clock")
	fl.DurationVar(&f.testCriticalSectionDelay, "test-critical-section-delay", 0, "TEST ONLY: wait this long while holding a lock, before writing")
	for _, name := range []string{"test-clock-offset", "test-critical-section-delay"} {
		if err := fl.MarkHidden(name); err != nil {
			panic(err) // the flag was defined just above
		}
	}
	return cmd
}

func runGateway(cmd *cobra.Command, f gatewayFlags) error {
	ctx := cmd.Context()
	if f.identity == "" {
		return errors.New("--identity is empty and neither POD_NAME nor the hostname gives one: locks need a holder identity")
	}
	log := funcr.NewJSON(func(obj string) { fmt.Fprintln(cmd.ErrOrStderr(), obj) },
		funcr.Options{LogTimestamp: true, Verbosity: f.logVerbosity}).
		WithName("gateway").WithValues("identity", f.identity)
	ctx = logr.NewContext(ctx, log)

	if f.insecureNoAuth && f.accessReview {
		if cmd.Flags().Changed("access-review") {
			return errors.New("--access-review needs authentication: it cannot be on with --insecure-no-auth")
		}
		f.accessReview = false
	}
	baseCfg, err := gatewayKubeconfig(f.kubeconfig)
	if err != nil {
		return err
	}
	userAgent := "leasehold-gateway/" + f.identity
	restCfg, err := kubeclient.Configure(baseCfg, kubeclient.Options{UserAgent: userAgent})
	if err != nil {
		return err
	}
	clientset, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	// Reviews and the readiness check get clients, and so rate limiters,
	// of their own: requests with unknown tokens must not use up the rate
	// that Lease and RemediationRequest calls need, nor make /readyz wait
	// behind them.
	authCfg, err := kubeclient.Configure(baseCfg, kubeclient.Options{QPS: f.authQPS, Burst: f.authBurst, UserAgent: userAgent + "/auth"})
	if err != nil {
		return fmt.Errorf("auth client: %w", err)
	}
	authClientset, err := kubernetes.NewForConfig(authCfg)
	if err != nil {
		return fmt.Errorf("auth client: %w", err)
	}
	readyCfg, err := kubeclient.Configure(baseCfg, kubeclient.Options{QPS: readyQPS, Burst: readyBurst, UserAgent: userAgent + "/readyz"})
	if err != nil {
		return fmt.Errorf("readiness client: %w", err)
	}
	readyClientset, err := kubernetes.NewForConfig(readyCfg)
	if err != nil {
		return fmt.Errorf("readiness client: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	// Uncached on purpose: deduplication must read what the API server
	// has now, not what an informer saw.
	crClient, err := client.New(restCfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("controller-runtime client: %w", err)
	}
	metadataClient, err := metadata.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("metadata client: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	clk := skewclock.New(clock.RealClock{}, f.testClockOffset)

	locker, err := lease.New(clientset.CoordinationV1(), lease.Options{
		Namespace:        f.namespace,
		Identity:         f.identity,
		Prefix:           "gw-lock",
		LeaseDuration:    f.leaseDuration,
		Registerer:       reg,
		MetricsNamespace: "gateway",
		Clock:            clk,
	})
	if err != nil {
		return err
	}
	// Closed only after Serve has returned, that is after the last
	// handler has: releasing locks under a running request would let
	// another replica in while this one still writes.
	err = serveGateway(ctx, cmd, f, gatewayDeps{
		auth:     authClientset,
		ready:    readyClientset,
		crClient: crClient,
		metadata: metadataClient,
		locker:   locker,
		reg:      reg,
		clock:    clk,
		log:      log,
	})
	if cerr := locker.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("release locks: %w", cerr))
	}
	return err
}

// gatewayDeps are the clients and shared parts serveGateway wires together.
type gatewayDeps struct {
	// auth answers TokenReviews and SubjectAccessReviews, ready the
	// readiness check; each has a rate limiter of its own.
	auth     kubernetes.Interface
	ready    kubernetes.Interface
	crClient client.Client
	metadata metadata.Interface
	locker   *lease.Locker
	reg      *prometheus.Registry
	clock    clock.WithTicker
	log      logr.Logger
}

// serveGateway builds the deduplicator, the owner resolver and the server,
// and serves until ctx ends.
func serveGateway(ctx context.Context, cmd *cobra.Command, f gatewayFlags, d gatewayDeps) error {
	policy, err := backoff.NewExponential(backoff.Config{
		BasePeriod:    f.backoffBase,
		MaxPeriod:     f.backoffMax,
		Multiplier:    2,
		JitterPercent: f.backoffJitter,
		// To backoff.Config a zero JitterPercent means "default".
		NoJitter: f.backoffJitter == 0,
	})
	if err != nil {
		return fmt.Errorf("backoff: %w", err)
	}
	recorder, err := dedup.New(d.crClient, d.locker, dedup.Options{
		Namespace:            f.namespace,
		Identity:             f.identity,
		Policy:               policy,
		Lock:                 dedup.LockMode(f.lockWrites),
		MaxAttempts:          f.maxAttempts,
		Clock:                d.clock,
		Registerer:           d.reg,
		Logger:               d.log,
		CriticalSectionDelay: f.testCriticalSectionDelay,
	})
	if err != nil {
		return err
	}
	resolver, err := owner.New(d.metadata, owner.Options{
		Cluster:          f.cluster,
		Registerer:       d.reg,
		MetricsNamespace: "gateway",
	})
	if err != nil {
		return fmt.Errorf("owner resolver: %w", err)
	}
	srv, err := gateway.New(gateway.Config{
		Dedup:           recorder,
		Resolver:        resolver,
		Cluster:         f.cluster,
		ClusterLabel:    f.clusterLabel,
		Namespace:       f.namespace,
		InsecureNoAuth:  f.insecureNoAuth,
		TokenReviewer:   d.auth.AuthenticationV1().TokenReviews(),
		Audience:        f.audience,
		AccessReview:    f.accessReview,
		AccessReviewer:  d.auth.AuthorizationV1().SubjectAccessReviews(),
		MaxTokenReviews: f.maxReviews,
		MaxBodyBytes:    f.maxBodyBytes,
		MaxInFlight:     f.maxInFlight,
		RequestTimeout:  f.requestTimeout,
		ReadyCheck:      gatewayAPIServerReady(d.ready.Discovery().RESTClient()),
		Addr:            f.listen,
		TLSCertFile:     f.tlsCertFile,
		TLSKeyFile:      f.tlsKeyFile,
		Registerer:      d.reg,
		Gatherer:        d.reg,
		Logger:          d.log,
		ClockOffset:     f.testClockOffset,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	scheme := "http"
	if f.tlsCertFile != "" {
		scheme = "https"
	}
	fmt.Fprintf(cmd.OutOrStdout(), "gateway listening on %s://%s identity=%s namespace=%s auth=%s\n",
		scheme, ln.Addr(), f.identity, f.namespace, srv.AuthMode())
	err = srv.Serve(ctx, ln)
	// Serve returned after the last handler, and a handler whose signal
	// was in a write waited for that write's outcome; so no worker is
	// still writing for a caller. What a worker may still do (a read, a
	// backoff wait, releasing a lock) ends well within MaxOutcomeWait,
	// which bounds a write and its read back. The locks are released only
	// after the workers are done.
	drain, cancel := context.WithTimeout(context.WithoutCancel(ctx), dedup.MaxOutcomeWait)
	defer cancel()
	if cerr := recorder.Close(drain); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return err
}

// gatewayAPIServerReady checks the API server's own /readyz: cheap, and readable
// by every identity (system:public-info-viewer).
func gatewayAPIServerReady(rc rest.Interface) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		return rc.Get().AbsPath("/readyz").Do(ctx).Error()
	}
}

// gatewayKubeconfig follows client-go's standard rules: the explicit file, else
// the KUBECONFIG files, else ~/.kube/config, else the in-cluster
// configuration when none of those exists.
func gatewayKubeconfig(explicit string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = explicit
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	return cfg, nil
}

func gatewayEnvOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// gatewayDefaultIdentity is POD_NAME, else the hostname; empty if neither exists,
// which runGateway refuses.
func gatewayDefaultIdentity() string {
	if v := os.Getenv("POD_NAME"); v != "" {
		return v
	}
	h, _ := os.Hostname()
	return h
}
