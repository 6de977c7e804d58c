package main

import "github.com/spf13/cobra"

func newStormCommand() *cobra.Command {
	return &cobra.Command{Use: "storm", Short: "not written yet", Hidden: true}
}
