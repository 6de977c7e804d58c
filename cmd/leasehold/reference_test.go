package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

var update = flag.Bool("update", false, "rewrite docs/cli.md from the commands")

const referencePath = "../../docs/cli.md"

// TestCLIReference keeps docs/cli.md, the configuration reference the
// README points to, equal to what the commands accept: a flag added, renamed
// or re-documented fails this test until the file is regenerated with
// `go test ./cmd/leasehold -run TestCLIReference -update`.
func TestCLIReference(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("# Command-line reference\n\n")
	b.WriteString("Generated from the commands by `go test ./cmd/leasehold -run TestCLIReference -update`; do not edit.\n")
	b.WriteString("Every command also reads the usual environment: `POD_NAME` (identity) and `POD_NAMESPACE`\n")
	b.WriteString("(namespace) from the downward API, `KUBECONFIG`, and in a pod the in-cluster configuration.\n")
	b.WriteString("The control plane helper reads `LEASEHOLD_CACHE_DIR` (where built binaries are cached, default\n")
	b.WriteString("`${XDG_CACHE_HOME:-~/.cache}/leasehold`) and `LEASEHOLD_ASSETS_DIR` (use these kube-apiserver and etcd binaries).\n")
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		if c.HasParent() {
			fmt.Fprintf(&b, "\n## %s\n\n%s\n", c.CommandPath(), c.Short)
			if flags := c.NonInheritedFlags().FlagUsages(); strings.TrimSpace(flags) != "" {
				fmt.Fprintf(&b, "\n```\n%s```\n", flags)
			}
			if c.HasParent() && c.Parent().HasParent() {
				if inherited := c.InheritedFlags().FlagUsages(); strings.TrimSpace(inherited) != "" {
					fmt.Fprintf(&b, "\nInherited from `%s`:\n\n```\n%s```\n", c.Parent().CommandPath(), inherited)
				}
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	root := newRootCommand()
	root.InitDefaultHelpCmd()
	walk(root)
	// Defaults that depend on the machine would make the file differ
	// between hosts.
	got := hostname.Replace(b.String())

	if *update {
		if err := os.WriteFile(referencePath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatalf("%v (generate it with -update)", err)
	}
	if string(want) != got {
		t.Fatalf("docs/cli.md is stale: regenerate it with `go test ./cmd/leasehold -run TestCLIReference -update`")
	}
}

var hostname = func() *strings.Replacer {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return strings.NewReplacer()
	}
	return strings.NewReplacer(fmt.Sprintf("(default %q)", h), "(default: the hostname)")
}()
