package controlplane

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// Run starts one control plane for a test package, hands it to setup, runs
// the package's tests and stops it. Call it from TestMain:
//
//	func TestMain(m *testing.M) {
//		os.Exit(controlplane.Run(m, Options{}, func(c *ControlPlane) error { cp = c; return nil }))
//	}
//
// A control plane per package, not per test: starting one takes seconds.
func Run(m *testing.M, opts Options, setup func(*ControlPlane) error) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	start := time.Now()
	cp, err := Start(ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "controlplane: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "controlplane: started in %s at %s\n", time.Since(start).Round(time.Millisecond), cp.APIServerURL())
	code := 1
	if err := setup(cp); err != nil {
		fmt.Fprintf(os.Stderr, "controlplane: setup: %v\n", err)
	} else {
		code = m.Run()
	}
	if err := cp.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "controlplane: stop: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}
