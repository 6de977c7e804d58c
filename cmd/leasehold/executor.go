package main

import "github.com/spf13/cobra"

func newExecutorCommand() *cobra.Command {
	return &cobra.Command{Use: "executor", Short: "not written yet", Hidden: true}
}
