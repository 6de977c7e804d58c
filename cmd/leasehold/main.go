// Command leasehold runs the project's services and tools; see `leasehold --help`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "leasehold",
		Short:         "Safe check-then-act for Kubernetes services that run as several replicas",
		SilenceUsage:  true,
		SilenceErrors: true,
		// Before any command runs: see controllerRuntimeLog. No
		// subcommand may define its own PersistentPreRun(E), which would
		// replace this one.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			useControllerRuntimeLogger(defaultLogger(cmd))
			return nil
		},
	}
	root.AddCommand(
		newUpCommand(),
		newGatewayCommand(),
		newStormCommand(),
		newOrchestratorCommand(),
		newExecutorCommand(),
		newLocksCommand(),
	)
	return root
}
