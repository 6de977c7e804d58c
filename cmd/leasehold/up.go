package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/leasehold/leasehold/internal/stack"
)

func newUpCommand() *cobra.Command {
	var (
		opts   stack.Options
		once   bool
		noDemo bool
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the whole system locally: control plane, gateways, orchestrators, simulated executor, and a demo storm",
		Long: `up starts a real kube-apiserver and etcd on this machine, built from pinned
modules the first time (10 to 30 minutes on 2 cores; what is building, how
long the last build took and the elapsed time are shown on stderr), installs
the CRDs and creates the services' namespace. Run outside a source tree, it
takes them from the per-user cache that a build in a clone fills (see
LEASEHOLD_CACHE_DIR in the README), or from LEASEHOLD_ASSETS_DIR. It then starts --gateways gateway and
--orchestrators orchestrator replicas and one simulated executor as processes
of this binary, on loopback ports, waits until all are ready, and prints the
gateway URLs, the kubeconfig, a curl that sends an alert and an Alertmanager
receiver for the gateways. The gateways accept signals without
authentication: this is a local stack.

Unless --no-demo, it then sends a demo storm (100 identical alerts over the
gateways, then 50 alerts about 5 workloads), waits until every
RemediationRequest it caused has run through the executor, and prints a
summary: signals, RemediationRequests, occurrence counts, executions per
target, duplicates, latency.

It stays up until Ctrl-C, then stops every process it started and removes
the data folder (unless --keep-data or --data-dir). A service that exits
meanwhile is reported with the end of its log.

With --once it exits after the demo: non-zero if a service was not ready or
exited, or a check failed (duplicates, inexact counts, a request not
finished in time, two active executions on one target).`,
		Example: `  leasehold up
  leasehold up --once            # the smoke test CI runs
  leasehold up --no-demo --keep-data`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Gateways < 1 || opts.Orchestrators < 1 {
				return fmt.Errorf("--gateways %d and --orchestrators %d: each must be at least 1", opts.Gateways, opts.Orchestrators)
			}
			return runUp(cmd, opts, once, noDemo)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Namespace, "namespace", stack.DefaultNamespace, "namespace the services live in")
	f.StringVar(&opts.Dir, "data-dir", "", "folder for control plane data, kubeconfig and logs, kept after stopping (default: a new temporary folder, removed after stopping)")
	f.BoolVar(&opts.KeepData, "keep-data", false, "keep the data folder after stopping")
	f.IntVar(&opts.Gateways, "gateways", stack.DefaultGateways, "gateway replicas")
	f.IntVar(&opts.Orchestrators, "orchestrators", stack.DefaultOrchestrators, "orchestrator replicas")
	f.BoolVar(&noDemo, "no-demo", false, "do not send the demo storm")
	f.BoolVar(&once, "once", false, "exit after the demo instead of staying up; non-zero if a check failed")
	return cmd
}

func runUp(cmd *cobra.Command, opts stack.Options, once, noDemo bool) (err error) {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	start := time.Now()
	fmt.Fprintln(out, "starting the control plane (kube-apiserver and etcd)")
	s, err := stack.Up(ctx, opts)
	if err != nil {
		return err
	}
	// Stop on every path, Ctrl-C included: no process outlives the command.
	defer func() {
		fmt.Fprintln(out, "stopping")
		if serr := s.Stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("stop: %w", serr))
		}
		if _, statErr := os.Stat(s.DataDir()); statErr == nil {
			fmt.Fprintf(out, "stopped; data kept in %s\n", s.DataDir())
		} else {
			fmt.Fprintln(out, "stopped; data removed")
		}
	}()
	fmt.Fprintf(out, "control plane up in %s\n", time.Since(start).Round(time.Millisecond))
	if err := s.StartServices(ctx); err != nil {
		return err
	}
	fmt.Fprintf(out, "%d service processes ready in %s\n", len(s.Services()), time.Since(start).Round(time.Millisecond))
	if err := s.PrintAccess(out); err != nil {
		return err
	}

	var (
		checkErr error
		// reported is how many service exits checkErr already includes:
		// the summary's Check covers those until the end of the demo.
		reported int
	)
	if !noDemo {
		fmt.Fprintln(out)
		sum, err := s.Demo(ctx, out)
		if err != nil {
			if ctx.Err() != nil && !once {
				fmt.Fprintln(out, "demo interrupted")
				return nil
			}
			return fmt.Errorf("demo: %w", err)
		}
		if err := sum.WriteText(out); err != nil {
			return err
		}
		checkErr, reported = sum.Check(), len(sum.Exits)
	}
	if once {
		exited := s.Exited()
		for _, e := range exited {
			printExit(cmd, e)
		}
		fmt.Fprintf(out, "done in %s\n", time.Since(start).Round(time.Millisecond))
		return errors.Join(checkErr, exitsError(exited[reported:]))
	}

	fmt.Fprintf(out, "\ngateways: %s\nkubeconfig: %s\n", strings.Join(s.GatewayURLs(), " "), s.KubeconfigPath)
	fmt.Fprintln(out, "running; press Ctrl-C to stop")
	exits := s.Exits()
	for {
		select {
		case <-ctx.Done():
			return errors.Join(checkErr, exitsError(s.Exited()[reported:]))
		case e := <-exits:
			printExit(cmd, e)
		}
	}
}

// printExit reports a service that exited, with the end of its log.
func printExit(cmd *cobra.Command, e stack.Exit) {
	fmt.Fprintf(cmd.ErrOrStderr(), "%v\n--- end of %s ---\n%s\n---\n", e, e.LogPath, e.Tail)
}

func exitsError(exits []stack.Exit) error {
	if len(exits) == 0 {
		return nil
	}
	errs := make([]error, len(exits))
	for i, e := range exits {
		errs[i] = e
	}
	return fmt.Errorf("%d service process(es) exited while up: %w", len(exits), errors.Join(errs...))
}
