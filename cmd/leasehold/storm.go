package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/leasehold/leasehold/internal/storm"
)

func newStormCommand() *cobra.Command {
	var (
		cfg            storm.Config
		payload        string
		tokenFile      string
		retry          bool
		idleCorrection bool
		apiMetrics     bool
		kubeconfig     string
		asJSON         bool
		perSignal      bool
		expectExact    bool
		showProgress   bool
	)
	cmd := &cobra.Command{
		Use:   "storm",
		Short: "Send a storm of identical signals to gateways and check the RemediationRequests they write",
		Long: `storm sends --signals alerts (or Warning Events) about --fingerprints workloads
to the gateways at --target, round-robin, at most --concurrency at a time, and
reports the answers: outcomes by HTTP code, retries, latency percentiles and
throughput. 429 and 5xx answers and connection errors are retried, as
Alertmanager retries them; unlike Alertmanager, the storm honours Retry-After.

By default signals go as fast as --concurrency allows. With --rate N the
storm is paced: signal i is first sent no earlier than i/N seconds after the
start, so 600 signals at --rate 40 last about 15 s. Retries are not paced.

With --kubeconfig (or --rr-namespace, using the standard kubeconfig loading
rules) it then lists the RemediationRequests of the run's fingerprints and
checks there is exactly one per workload with an occurrence count equal to the
signals sent, and, if the identity may GET /metrics, counts the API server
requests the storm caused, per resource and verb.

It exits non-zero when a signal ended without a 2xx answer, when duplicates
were found, or when counts are not exact (unless --expect-exact=false).

--json prints the report as JSON; the field names are those of storm.Report
and are stable.`,
		Example: `  leasehold storm --target http://127.0.0.1:8080 --signals 100
  leasehold storm --target https://gw-0:8443,https://gw-1:8443 --insecure-skip-tls-verify \
      --signals 1000 --fingerprints 10 --kubeconfig /tmp/leasehold/kubeconfig --rr-namespace leasehold-system
  leasehold storm --target http://127.0.0.1:8080 --signals 600 --rate 40`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Config reads a zero count as "default"; on the command line
			// it is a mistake.
			if cfg.Signals < 1 {
				return fmt.Errorf("--signals %d: must be at least 1", cfg.Signals)
			}
			cfg.Payload = storm.Payload(payload)
			// Config reads a zero MaxRetries as "default"; on the command
			// line 0 means what it says.
			cfg.NoRetry = !retry || cfg.MaxRetries == 0
			cfg.NoIdleCorrection = !idleCorrection
			cfg.NoAPIMetrics = !apiMetrics
			if tokenFile != "" {
				if cfg.Token != "" {
					return errors.New("--token and --token-file are mutually exclusive")
				}
				data, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("read token: %w", err)
				}
				cfg.Token = strings.TrimSpace(string(data))
			}
			if kubeconfig != "" || cmd.Flags().Changed("rr-namespace") {
				rules := clientcmd.NewDefaultClientConfigLoadingRules()
				rules.ExplicitPath = kubeconfig
				restCfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
				if err != nil {
					return fmt.Errorf("load kubeconfig: %w", err)
				}
				cfg.Kube = restCfg
			} else {
				cfg.RRNamespace = ""
			}
			if showProgress {
				cfg.Progress = cmd.ErrOrStderr()
			}

			rep, runErr := storm.Run(cmd.Context(), cfg)
			if rep == nil {
				return runErr
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if !perSignal {
					rep.Results = nil
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else if err := rep.WriteText(out); err != nil {
				return err
			}
			if runErr != nil {
				return runErr
			}
			return rep.Check(expectExact)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&cfg.Targets, "target", nil, "gateway base URL; repeat or separate with commas for several, used round-robin (required)")
	f.IntVar(&cfg.Signals, "signals", storm.DefaultSignals, "total number of signals")
	f.IntVar(&cfg.Concurrency, "concurrency", 0, "signals in flight at once (default: --signals up to 100)")
	f.Float64Var(&cfg.Rate, "rate", 0, "signals started per second across all workers; paces first attempts only (retries keep their backoff); 0 sends as fast as --concurrency allows")
	f.IntVar(&cfg.Fingerprints, "fingerprints", storm.DefaultFingerprints, "distinct workloads (incidents); signal i goes to incident i mod this")
	f.StringVar(&payload, "payload", string(storm.PayloadAlert), `signal kind: "alert" (Alertmanager webhook) or "event" (Warning Event)`)
	f.StringVar(&cfg.Cluster, "cluster", storm.DefaultCluster, "cluster name; must equal the gateways' --cluster")
	f.StringVar(&cfg.Namespace, "signal-namespace", storm.DefaultNamespace, "namespace the signals name")
	f.StringVar(&cfg.RunID, "run-id", "", "id in every target name (default: random)")
	f.StringVar(&cfg.Token, "token", "", "bearer token for the gateways")
	f.StringVar(&tokenFile, "token-file", "", "file holding the bearer token")
	f.BoolVar(&cfg.InsecureSkipTLSVerify, "insecure-skip-tls-verify", false, "accept any gateway certificate (self-signed local ones)")
	f.BoolVar(&retry, "retry", true, "retry 429 and 5xx answers (honouring Retry-After) and connection errors")
	f.IntVar(&cfg.MaxRetries, "max-retries", storm.DefaultMaxRetries, "retries per signal after the first attempt")
	f.DurationVar(&cfg.MaxRetryAfter, "max-retry-after", storm.DefaultMaxRetryAfter, "cap on a Retry-After wait")
	f.DurationVar(&cfg.RequestTimeout, "request-timeout", storm.DefaultRequestTimeout, "bound on each attempt")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig for verification and API server request accounting")
	f.StringVar(&cfg.RRNamespace, "rr-namespace", "leasehold-system", "namespace the gateways write RemediationRequests to")
	f.BoolVar(&apiMetrics, "api-metrics", true, "with a kubeconfig, count API server requests from its /metrics")
	f.BoolVar(&idleCorrection, "idle-correction", true, "subtract the background request rate measured over an idle interval after the run")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.BoolVar(&perSignal, "per-signal", false, "with --json, include every signal's result")
	f.BoolVar(&expectExact, "expect-exact", true, "fail unless every occurrence count equals the signals sent")
	f.BoolVar(&showProgress, "progress", true, "show progress on stderr")
	_ = cmd.MarkFlagRequired("target")
	return cmd
}
