package main

import (
	"errors"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/leasehold/leasehold/executor"
)

// executorFlags are the flags of `leasehold executor`.
type executorFlags struct {
	controllerFlags
	simulate    bool
	duration    time.Duration
	failureRate float64
}

// errNoRealExecutor is what `leasehold executor` says without --simulate.
var errNoRealExecutor = errors.New("only the simulated executor exists: pass --simulate (a real execution engine is out of scope for leasehold)")

func newExecutorCommand() *cobra.Command {
	var f executorFlags
	cmd := &cobra.Command{
		Use:   "executor --simulate",
		Short: "Run the simulated executor: move WorkflowExecutions to Running, then Completed or Failed",
		Long: `executor --simulate stands in for a workflow engine in local runs and tests.
It runs no workflow: each WorkflowExecution of --namespace goes from Pending
to Running, and after --duration to Completed, or to Failed (reason
SimulatedFailure) with probability --failure-rate. Executions the
orchestrator has already ended (timed out, cancelled) are never touched.

Run one per namespace. Its status writes are conditional on the
resourceVersion, so a second one would not corrupt anything, but there is
no reason to run it.

It serves /metrics on --metrics-bind-address and /healthz, /readyz on
--health-probe-bind-address, and stops cleanly on SIGTERM or SIGINT.`,
		Example: `  leasehold executor --simulate --kubeconfig /tmp/leasehold/kubeconfig --duration 5s --failure-rate 0.1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runExecutor(cmd, f)
		},
	}
	fl := cmd.Flags()
	f.controllerFlags.bind(fl, ":8083", ":8084")
	fl.BoolVar(&f.simulate, "simulate", false, "run the simulator (required: it is the only executor)")
	fl.DurationVar(&f.duration, "duration", executor.DefaultDuration, "how long each execution stays Running")
	fl.Float64Var(&f.failureRate, "failure-rate", 0, "probability in [0, 1] that an execution ends Failed")
	return cmd
}

func runExecutor(cmd *cobra.Command, f executorFlags) error {
	if !f.simulate {
		return errNoRealExecutor
	}
	if f.duration <= 0 {
		// 0 would mean "the default" to executor.Options; on the command
		// line it is more likely a mistake.
		return errors.New("--duration must be positive")
	}
	log, err := f.logger(cmd, "executor")
	if err != nil {
		return err
	}
	restCfg, err := f.restConfig("leasehold-executor")
	if err != nil {
		return err
	}
	mgr, err := f.newManager(restCfg, log)
	if err != nil {
		return err
	}
	sim, err := executor.New(mgr.GetClient(), executor.Options{
		Namespace:   f.namespace,
		Duration:    f.duration,
		FailureRate: f.failureRate,
		Registerer:  metrics.Registry,
	})
	if err != nil {
		return err
	}
	if err := sim.SetupWithManager(mgr); err != nil {
		return err
	}
	f.printStartup(cmd, "executor (simulated)")
	return mgr.Start(cmd.Context())
}
