package runner

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/utils/clock"
)

// ErrInvalidOptions is wrapped by every error Run returns for Options it
// cannot use. Invalid values are reported, never replaced by defaults.
var ErrInvalidOptions = errors.New("bench: invalid options")

// ScenarioIDs are the scenarios, in the order Run runs them by default.
var ScenarioIDs = []string{"S1", "S2", "S3", "S4", "S5"}

// Defaults applied to zero fields of Options.
const (
	DefaultReps           = 10
	DefaultQuickReps      = 2
	DefaultOtherReps      = 1
	DefaultReplicas       = 3
	DefaultReadyTimeout   = 60 * time.Second
	DefaultStopGrace      = 15 * time.Second
	DefaultSettleTimeout  = 5 * time.Minute
	DefaultLockIterations = 200
	QuickLockIterations   = 10
)

// Options configures Run. Zero values take the defaults documented on each
// field; they are filled in one place, resolve.
type Options struct {
	// Scenarios to run, by ID ("S1" ... "S5"); they always run in
	// ScenarioIDs order. Default: all.
	Scenarios []string
	// Reps is the number of repetitions of S1 per strategy. Default 10, or
	// 2 with Quick.
	Reps int
	// OtherReps is the number of repetitions of S2, S3 and S4. Default 1.
	OtherReps int
	// Quick runs every scenario with small sizes, for a smoke test: the
	// numbers it gives are no benchmark.
	Quick bool
	// LockIterations is the -benchtime of S5's benchmarks. Default 200, or
	// 10 with Quick.
	LockIterations int

	// RepoDir is the module's root, where the binaries are built from and
	// S5's benchmarks run. Default: the nearest folder holding go.mod at or
	// above the working directory.
	RepoDir string
	// WorkDir holds the built binaries, kubeconfigs and process logs.
	// Default: a new temporary folder, removed when Run returns unless
	// KeepWorkDir. A folder given here is never removed.
	WorkDir     string
	KeepWorkDir bool
	// GatewayBinary is the bench gateway (flags --listen, --kubeconfig,
	// --namespace, --identity, --cluster, --insecure-no-auth, --strategy).
	// Default: built from ./bench/cmd/bench-gateway.
	GatewayBinary string
	// LeaseholdBinary runs S4's orchestrators and executor. Default: built
	// from ./cmd/leasehold.
	LeaseholdBinary string

	// ReadyTimeout bounds the wait for each service's /readyz. Default 60s.
	ReadyTimeout time.Duration
	// StopGrace is how long a service may take to exit after SIGTERM.
	// Default 15s.
	StopGrace time.Duration
	// SettleTimeout bounds S4's wait for every request to finish. Default
	// 5m.
	SettleTimeout time.Duration

	// Command is recorded in the report as the command that ran.
	Command string
	// Progress receives one line per step; nil shows none.
	Progress io.Writer
	// Clock measures the run. Default clock.RealClock{}.
	Clock clock.WithTicker
}

// resolve fills defaults and validates, and reports every problem at once.
func (o Options) resolve() (Options, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...))
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = slices.Clone(ScenarioIDs)
	}
	var ids []string
	for _, s := range o.Scenarios {
		id := strings.ToUpper(strings.TrimSpace(s))
		if !slices.Contains(ScenarioIDs, id) {
			bad("unknown scenario %q (known: %s)", s, strings.Join(ScenarioIDs, ", "))
			continue
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b string) int { return slices.Index(ScenarioIDs, a) - slices.Index(ScenarioIDs, b) })
	o.Scenarios = ids

	if o.Reps == 0 {
		o.Reps = DefaultReps
		if o.Quick {
			o.Reps = DefaultQuickReps
		}
	}
	if o.OtherReps == 0 {
		o.OtherReps = DefaultOtherReps
	}
	if o.LockIterations == 0 {
		o.LockIterations = DefaultLockIterations
		if o.Quick {
			o.LockIterations = QuickLockIterations
		}
	}
	if o.Reps < 0 || o.OtherReps < 0 || o.LockIterations < 0 {
		bad("reps %d, other reps %d and lock iterations %d must not be negative", o.Reps, o.OtherReps, o.LockIterations)
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if o.StopGrace == 0 {
		o.StopGrace = DefaultStopGrace
	}
	if o.SettleTimeout == 0 {
		o.SettleTimeout = DefaultSettleTimeout
	}
	if o.ReadyTimeout < 0 || o.StopGrace < 0 || o.SettleTimeout < 0 {
		bad("timeouts must not be negative")
	}
	if o.RepoDir == "" {
		dir, err := moduleRoot()
		if err != nil {
			bad("find the module root: %v", err)
		}
		o.RepoDir = dir
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return o, errors.Join(errs...)
}

// moduleRoot walks up from the working directory to the folder holding
// go.mod: `go run` runs in the caller's folder, `go test` in the package's.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod in any parent folder")
		}
		dir = parent
	}
}
