// Command bench compares leasehold with the original design's algorithm and
// with a create-only floor on this machine, and writes the JSON of the run,
// docs/benchmarks.md and its latency plot. See package bench/runner.
//
//	go run ./bench/cmd/bench                      # everything, S1 x 10
//	go run ./bench/cmd/bench --scenarios S1,S2 --reps 5
//	go run ./bench/cmd/bench --quick --markdown /tmp/b.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/leasehold/leasehold/bench/runner"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(1)
	}
}

// run parses its own flag set: the global one carries flags that imported
// packages register (a --kubeconfig this command does not use).
func run(args []string) error {
	var (
		o         runner.Options
		scenarios string
		out       runner.Outputs
		timeout   time.Duration
		render    string
		fl        = flag.NewFlagSet("bench", flag.ContinueOnError)
	)
	fl.IntVar(&o.Reps, "reps", 0, fmt.Sprintf("repetitions of S1 per strategy (default %d, %d with --quick)", runner.DefaultReps, runner.DefaultQuickReps))
	fl.IntVar(&o.OtherReps, "other-reps", 0, fmt.Sprintf("repetitions of S2, S3 and S4 (default %d)", runner.DefaultOtherReps))
	fl.StringVar(&scenarios, "scenarios", strings.Join(runner.ScenarioIDs, ","), "scenarios to run, comma-separated")
	fl.BoolVar(&o.Quick, "quick", false, "small sizes, for a smoke test; writes the page only if --markdown is given")
	fl.IntVar(&o.LockIterations, "lock-iterations", 0, fmt.Sprintf("iterations of each S5 benchmark (default %d, %d with --quick)", runner.DefaultLockIterations, runner.QuickLockIterations))
	fl.StringVar(&out.JSONDir, "out", filepath.Join(os.TempDir(), "leasehold-bench"), "folder for the run's JSON")
	fl.StringVar(&out.Markdown, "markdown", "docs/benchmarks.md", "page to write (empty: none)")
	fl.StringVar(&out.SVG, "svg", "", "latency plot to write (default: benchmarks-latency.svg next to --markdown)")
	fl.StringVar(&o.WorkDir, "work-dir", "", "folder for binaries, kubeconfigs and logs (default: a temporary folder)")
	fl.BoolVar(&o.KeepWorkDir, "keep-work-dir", false, "keep the work folder (logs of every service)")
	fl.StringVar(&o.GatewayBinary, "gateway-binary", "", "bench gateway to run instead of building ./bench/cmd/bench-gateway")
	fl.StringVar(&o.LeaseholdBinary, "leasehold-binary", "", "leasehold binary to run instead of building ./cmd/leasehold")
	fl.DurationVar(&timeout, "timeout", time.Hour, "bound on the whole run (0: none)")
	fl.StringVar(&render, "render", "", "run nothing: write the page and plot of this JSON report again")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("bench: unexpected arguments %q", fl.Args())
	}

	markdownSet := false
	fl.Visit(func(f *flag.Flag) {
		if f.Name == "markdown" {
			markdownSet = true
		}
	})
	// A smoke run must not overwrite the committed page by accident.
	if o.Quick && !markdownSet {
		out.Markdown = ""
	}
	if out.SVG == "" && out.Markdown != "" {
		out.SVG = filepath.Join(filepath.Dir(out.Markdown), "benchmarks-latency.svg")
	}
	for _, s := range strings.Split(scenarios, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.Scenarios = append(o.Scenarios, s)
		}
	}
	o.Command = command(args)
	o.Progress = os.Stderr
	// envtest logs through controller-runtime's global logger, which
	// otherwise complains with a stack trace that nobody set it.
	ctrllog.SetLogger(logr.Discard())

	var err error
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}

	var rep *runner.Report
	if render != "" {
		if rep, err = runner.ReadReport(render); err != nil {
			return err
		}
		out.JSONDir = "" // the report is already there
	} else if rep, err = runner.Run(ctx, o); err != nil {
		return err
	}
	jsonPath, err := runner.WriteOutputs(rep, out)
	if err != nil {
		return err
	}
	for _, g := range rep.Goals {
		fmt.Printf("%-3s %-12s %s: %s\n", g.Scenario, g.Status, g.Goal, g.Measured)
	}
	for _, p := range []string{jsonPath, out.Markdown, out.SVG} {
		if p != "" {
			fmt.Println("wrote", p)
		}
	}
	var failed []string
	for _, sc := range rep.Scenarios {
		if sc.Error != "" {
			failed = append(failed, sc.ID)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("bench: scenario(s) %s did not complete; see the report", strings.Join(failed, ", "))
	}
	return nil
}

// command is the command line as a person would type it again.
func command(args []string) string {
	parts := []string{"go run ./bench/cmd/bench"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}
