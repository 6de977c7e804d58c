package main

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/spf13/cobra"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// Running any command gives controller-runtime a logger before the command
// runs: its log reaches the command's stderr, and it never falls back to
// printing "log.SetLogger(...) was never called" with a stack trace.
func TestCommandsSetControllerRuntimeLogger(t *testing.T) {
	// A logger derived before the command runs, as controller-runtime's
	// packages derive theirs at init.
	early := ctrllog.Log.WithName("early")

	root := newRootCommand()
	var stderr bytes.Buffer
	root.SetOut(io.Discard)
	root.SetErr(&stderr)
	// Fails in RunE, after the persistent pre-run.
	root.SetArgs([]string{"up", "--gateways", "0"})
	if err := root.ExecuteContext(t.Context()); err == nil || !strings.Contains(err.Error(), "--gateways 0") {
		t.Fatalf("up --gateways 0: error %v, want the flag check's", err)
	}
	ctrllog.Log.WithName("client").Info("probe-late", "k", "v")
	early.Error(nil, "probe-early")
	got := stderr.String()
	for _, want := range []string{`"logger":"up/client"`, `"msg":"probe-late"`, `"k":"v"`, `"logger":"up/early"`, `"msg":"probe-early"`} {
		if !strings.Contains(got, want) {
			t.Errorf("controller-runtime's log on stderr lacks %s:\n%s", want, got)
		}
	}

	// Only the root may define the persistent pre-run: cobra runs only the
	// nearest one, so a subcommand's own would skip the logger.
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.PersistentPreRun != nil || sub.PersistentPreRunE != nil {
				t.Errorf("%s defines its own PersistentPreRun, which replaces the root's", sub.CommandPath())
			}
			walk(sub)
		}
	}
	walk(root)
}

// A command's own logger, set after the default, takes over every logger
// derived from controller-runtime's, those derived before the switch too.
func TestControllerRuntimeLoggerSwitches(t *testing.T) {
	var first, second bytes.Buffer
	jsonTo := func(b *bytes.Buffer) logr.Logger {
		return funcr.NewJSON(func(obj string) { b.WriteString(obj + "\n") }, funcr.Options{})
	}
	useControllerRuntimeLogger(jsonTo(&first).WithName("default"))
	derived := ctrllog.Log.WithName("manager").WithValues("controller", "rr")
	derived.Info("one")
	useControllerRuntimeLogger(jsonTo(&second).WithName("orchestrator").WithValues("identity", "o-0"))
	derived.Info("two")
	derived.V(1).Info("debug")

	if got := first.String(); !strings.Contains(got, `"logger":"default/manager","level":0,"msg":"one","controller":"rr"`) || strings.Contains(got, "two") {
		t.Errorf("default logger got:\n%s", got)
	}
	got := second.String()
	if !strings.Contains(got, `"logger":"orchestrator/manager","level":0,"msg":"two","identity":"o-0","controller":"rr"`) || strings.Contains(got, "one") {
		t.Errorf("the command's own logger got:\n%s", got)
	}
	if strings.Contains(got, "debug") {
		t.Errorf("verbosity 1 logged at verbosity 0:\n%s", got)
	}
}
