package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/internal/kubeclient"
	"github.com/leasehold/leasehold/internal/locks"
)

// locksFlags are the flags all `leasehold locks` commands share.
type locksFlags struct {
	kubeconfig string
	namespace  string
	prefix     string
	output     string
}

// locksEnv is what the locks commands take from outside: a Lease client of
// the namespace and the clock that ages are judged on. Tests replace both.
type locksEnv struct {
	client func(f *locksFlags) (locks.Client, error)
	clock  clock.Clock
}

func newLocksCommand() *cobra.Command {
	return newLocksCommandWith(locksEnv{client: locksClient, clock: clock.RealClock{}})
}

const locksRBAC = `RBAC: in --namespace, on leases.coordination.k8s.io: get and list to list
and show, list and delete to sweep.`

func newLocksCommandWith(env locksEnv) *cobra.Command {
	f := &locksFlags{}
	list := func(cmd *cobra.Command, _ []string) error { return runLocksList(cmd, env, f) }
	cmd := &cobra.Command{
		Use:   "locks",
		Short: "List, show and sweep the Leases that hold leasehold's locks",
		Long: `locks lists the Leases the lock library wrote in --namespace (those labelled
app.kubernetes.io/managed-by=leasehold; --prefix narrows it to one lock family,
such as gw-lock for the gateway or ro-lock for the orchestrator), sorted by
prefix, then key. "locks" alone is "locks list".

Columns:
  KEY          the lock key, from the leasehold.dev/key annotation (the Lease
               name is a hash of it)
  HOLDER       the holder id, "<identity>/<random>": one per acquisition
  TOKEN        the Lease's resourceVersion now; the holder's own fencing token
               is at most this, and every later acquisition's is greater
  ACQUIRED     age of acquireTime (set by the acquisition, takeover or hand-off)
  RENEWED      age of renewTime
  EXPIRES IN   renewTime + leaseDurationSeconds - now, or "expired"
  TRANSITIONS  leaseTransitions: takeovers and hand-offs of the Lease

The times are written by the holder with its own clock and compared here with
this machine's clock: ages and EXPIRES IN are for display only and are off by
any clock skew (a negative age means the holder's clock is ahead). The locks
themselves never judge expiry this way: a contender takes a Lease over only
after seeing it unchanged for its whole duration.

` + locksRBAC,
		Example: `  leasehold locks --kubeconfig /tmp/leasehold/kubeconfig
  leasehold locks --prefix ro-lock -o json
  leasehold locks show Node/worker-1 --prefix ro-lock
  leasehold locks sweep --dry-run`,
		Args: cobra.NoArgs,
		RunE: list,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: KUBECONFIG, ~/.kube/config, or the in-cluster configuration)")
	pf.StringVar(&f.namespace, "namespace", locksEnvOr("POD_NAMESPACE", "leasehold-system"), "namespace of the Leases; the default comes from POD_NAMESPACE when set")
	pf.StringVar(&f.prefix, "prefix", "", "only Leases of this lock family (e.g. gw-lock, ro-lock); empty: all of leasehold's")
	bindLocksOutput(cmd.Flags(), f)

	listCmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the Leases that hold leasehold's locks (the default of locks)",
		Long:    "list is what \"leasehold locks\" does; see its help for the columns.\n\n" + locksRBAC,
		Args:    cobra.NoArgs,
		RunE:    list,
	}
	bindLocksOutput(listCmd.Flags(), f)

	showCmd := &cobra.Command{
		Use:   "show KEY",
		Short: "Show every field of the Lease that holds one lock",
		Long: `show prints every field of the Lease that guards KEY: its name
(<prefix>-<SHA-256 of the key>), UID, holder, token, acquire and renew times,
duration, transitions, labels and annotations, with the same derived ages and
expiry as the list (judged on this machine's clock, for display only).

Without --prefix it searches all of leasehold's Leases for the key and fails
if several lock families lock it; then pass --prefix.

` + locksRBAC,
		Example: `  leasehold locks show Node/worker-1 --prefix ro-lock
  leasehold locks show 3f2a9c... --prefix gw-lock -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLocksShow(cmd, env, f, args[0])
		},
	}
	bindLocksOutput(showCmd.Flags(), f)

	cmd.AddCommand(listCmd, showCmd, newLocksSweepCommand(env, f))
	return cmd
}

func bindLocksOutput(fl *pflag.FlagSet, f *locksFlags) {
	fl.StringVarP(&f.output, "output", "o", "table", `output format: "table" or "json"`)
}

func (f *locksFlags) checkOutput() error {
	switch f.output {
	case "table", "json":
		return nil
	}
	return fmt.Errorf("--output %q: want table or json", f.output)
}

func runLocksList(cmd *cobra.Command, env locksEnv, f *locksFlags) error {
	if err := f.checkOutput(); err != nil {
		return err
	}
	c, err := env.client(f)
	if err != nil {
		return err
	}
	recs, err := locks.List(cmd.Context(), c, f.prefix)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", f.namespace, err)
	}
	now := env.clock.Now()
	if f.output == "json" {
		return locks.WriteJSON(cmd.OutOrStdout(), recs, now)
	}
	if len(recs) == 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "No leasehold locks in namespace %s%s.\n", f.namespace, prefixNote(f.prefix))
		return nil
	}
	return locks.WriteTable(cmd.OutOrStdout(), recs, now)
}

func runLocksShow(cmd *cobra.Command, env locksEnv, f *locksFlags, key string) error {
	if err := f.checkOutput(); err != nil {
		return err
	}
	c, err := env.client(f)
	if err != nil {
		return err
	}
	rec, err := locks.Find(cmd.Context(), c, f.prefix, key)
	if amb, ok := errors.AsType[*locks.AmbiguousError](err); ok {
		return fmt.Errorf("namespace %s: %w: pass --prefix", f.namespace, amb)
	}
	if err != nil {
		return fmt.Errorf("namespace %s: %w", f.namespace, err)
	}
	now := env.clock.Now()
	if f.output == "json" {
		return locks.WriteDetailJSON(cmd.OutOrStdout(), rec, now)
	}
	return locks.WriteDetail(cmd.OutOrStdout(), rec, now)
}

// locksSweepFlags are the flags of `leasehold locks sweep`.
type locksSweepFlags struct {
	idle      time.Duration
	olderThan time.Duration
	dryRun    bool
}

func newLocksSweepCommand(env locksEnv, f *locksFlags) *cobra.Command {
	var sf locksSweepFlags
	cmd := &cobra.Command{
		Use:   "sweep",
		Short: "Delete the Leases that crashed holders left behind (one shot)",
		Long: `sweep deletes stale Leases once and exits. Kubernetes never garbage-collects
Leases without owners, so a holder that crashed leaves its Lease until another
process takes the key over. It never deletes a live lock:

  - It lists the Leases, waits --idle, lists them again, and deletes those whose
    UID and resourceVersion did not change in between (every renewal, takeover
    or hand-off changes the resourceVersion), with UID and resourceVersion
    preconditions, so a Lease written in the last instant is not deleted
    either. A Lease is also never deleted before it was seen unchanged for its
    own leaseDurationSeconds: a holder that could not renew that long has
    already given the lock up. The default --idle is twice the longest lease
    duration found, and at least 30s. Ctrl-C during the wait deletes nothing
    more.
  - With --older-than D (at least 1h) it also deletes, at once and with the
    same preconditions, Leases whose last write (renewTime, else acquireTime,
    else creation) is older than D on this machine's clock. Those times come
    from other hosts' clocks, hence the large minimum.

--dry-run prints what would be deleted and deletes nothing (it still waits).
The table printed says, for each Lease, whether it was deleted or kept and why.

` + locksRBAC,
		Example: `  leasehold locks sweep --dry-run
  leasehold locks sweep --prefix gw-lock --idle 2m
  leasehold locks sweep --older-than 24h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLocksSweep(cmd, env, f, sf)
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&sf.idle, "idle", 0, "how long a Lease must stay unchanged to be deleted (default: 2 x the longest lease duration found, at least 30s)")
	fl.DurationVar(&sf.olderThan, "older-than", 0, "also delete at once Leases last written longer ago than this (at least 1h; default: off)")
	fl.BoolVar(&sf.dryRun, "dry-run", false, "print what would be deleted, delete nothing")
	return cmd
}

func runLocksSweep(cmd *cobra.Command, env locksEnv, f *locksFlags, sf locksSweepFlags) error {
	c, err := env.client(f)
	if err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	sw, err := locks.NewSweeper(c, locks.SweepOptions{
		Prefix:    f.prefix,
		Idle:      sf.idle,
		OlderThan: sf.olderThan,
		DryRun:    sf.dryRun,
		Clock:     env.clock,
		OnWatch: func(n int, idle time.Duration) {
			then := "deleted"
			if sf.dryRun {
				then = "reported (dry run)"
			}
			fmt.Fprintf(stderr, "Watching %d Leases in namespace %s for %s: those unchanged by then will be %s. Ctrl-C stops without deleting them.\n",
				n, f.namespace, idle, then)
		},
	})
	if err != nil {
		return err
	}
	rep, err := sw.Sweep(cmd.Context())
	if rep.Found == 0 {
		if err == nil {
			fmt.Fprintf(stderr, "No leasehold locks in namespace %s%s.\n", f.namespace, prefixNote(f.prefix))
		}
		return err
	}
	// An interrupted or failed sweep still says what it did, if anything.
	if err != nil && len(rep.Deleted)+len(rep.Kept) == 0 {
		return err
	}
	if werr := locks.WriteSweepReport(cmd.OutOrStdout(), rep, env.clock.Now()); werr != nil {
		return errors.Join(err, werr)
	}
	return err
}

func prefixNote(prefix string) string {
	if prefix == "" {
		return ""
	}
	return " with prefix " + prefix
}

// locksClient builds the Lease client of f.namespace with client-go's
// standard loading rules (the explicit file, else KUBECONFIG, else
// ~/.kube/config, else the in-cluster configuration).
func locksClient(f *locksFlags) (locks.Client, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	cfg, err = kubeclient.Configure(cfg, kubeclient.Options{UserAgent: "leasehold-locks"})
	if err != nil {
		return nil, err
	}
	cs, err := coordinationv1client.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return cs.Leases(f.namespace), nil
}

func locksEnvOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
