package main

import "github.com/spf13/cobra"

func newGatewayCommand() *cobra.Command {
	return &cobra.Command{Use: "gateway", Short: "not written yet", Hidden: true}
}
