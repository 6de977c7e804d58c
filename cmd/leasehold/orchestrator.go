package main

import "github.com/spf13/cobra"

func newOrchestratorCommand() *cobra.Command {
	return &cobra.Command{Use: "orchestrator", Short: "not written yet", Hidden: true}
}
