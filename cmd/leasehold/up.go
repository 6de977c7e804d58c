package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/leasehold/leasehold/internal/stack"
)

func newUpCommand() *cobra.Command {
	var (
		opts stack.Options
		once bool
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a local control plane with the CRDs and keep it running until Ctrl-C",
		Long: `up starts a real kube-apiserver and etcd on this machine, built from pinned
modules the first time (minutes; progress is shown), installs the CRDs,
creates the services' namespace and prints how to reach it.

With --once it runs a smoke check and exits: non-zero if the check fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			start := time.Now()
			s, err := stack.Up(ctx, opts)
			if err != nil {
				return err
			}
			// Stop on every path, Ctrl-C included: no process outlives the command.
			defer func() {
				if err := s.Stop(); err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "stop:", err)
				}
			}()
			fmt.Fprintf(out, "control plane up in %s\n", time.Since(start).Round(time.Millisecond))
			s.PrintAccess(out)
			checkCtx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := s.SmokeCheck(checkCtx, out); err != nil {
				return fmt.Errorf("smoke check: %w", err)
			}
			if once {
				return nil
			}
			fmt.Fprintln(out, "running; press Ctrl-C to stop")
			<-ctx.Done()
			fmt.Fprintln(out, "stopping")
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.Namespace, "namespace", "leasehold-system", "namespace the services live in")
	cmd.Flags().StringVar(&opts.Dir, "data-dir", "", "folder for control plane data and the kubeconfig (default: a new temporary folder)")
	cmd.Flags().BoolVar(&opts.KeepData, "keep-data", false, "keep the data folder after stopping")
	cmd.Flags().BoolVar(&once, "once", false, "run the smoke check and exit instead of staying up")
	return cmd
}
