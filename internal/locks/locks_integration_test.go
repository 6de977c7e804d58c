//go:build integration

package locks_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/leasehold/leasehold/internal/locks"
	"github.com/leasehold/leasehold/lease"
)

// TestIntegrationInspectAndSweep takes a real lock with a live Locker,
// leaves a Lease behind the way a holder that crashed without Release
// does, lists and shows both, then sweeps with a short idle time: first as
// a dry run, then for real. Only the abandoned Lease goes, and the live
// lock never notices.
func TestIntegrationInspectAndSweep(t *testing.T) {
	const (
		prefix = "ro-lock"
		idle   = 3 * time.Second
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	leases := admin.CoordinationV1().Leases(ns)
	liveName, abandonedName := lease.LeaseName(prefix, "Node/worker-1"), lease.LeaseName(prefix, "Node/worker-2")
	t.Cleanup(func() {
		// Whatever a failed run left, so that -count=N starts clean.
		for _, name := range []string{liveName, abandonedName, "kube-scheduler-like"} {
			if err := leases.Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("cleanup %s: %v", name, err)
			}
		}
	})

	// The live holder declares 2 s and renews about every 0.7 s: it never
	// stays unchanged for the 3 s idle time.
	live, err := lease.New(admin.CoordinationV1(), lease.Options{
		Namespace: ns, Identity: "orchestrator-live", Prefix: prefix, LeaseDuration: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := live.Close(); err != nil {
			t.Errorf("close the live Locker: %v", err)
		}
	}()
	lk, err := live.TryAcquire(ctx, "Node/worker-1")
	if err != nil {
		t.Fatalf("TryAcquire: %v", err)
	}
	// The abandoned one is stamped exactly as a Locker stamps it, declares
	// 1 s, and nobody will ever renew it.
	now := time.Now()
	abandoned, err := leases.Create(ctx, stamped(prefix, "Node/worker-2", "orchestrator-crashed/0123456789abcdef", 1, now, now, 0), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Not ours: it must be neither listed nor swept, however stale.
	foreign, err := leases.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-scheduler-like", Namespace: ns},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("someone"), LeaseDurationSeconds: ptr.To[int32](1)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// list
	recs, err := locks.List(ctx, leases, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if got, want := keysOf(recs), []string{prefix + "|Node/worker-1", prefix + "|Node/worker-2"}; !slices.Equal(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	if recs[0].Holder != lk.Holder() || recs[1].Holder != "orchestrator-crashed/0123456789abcdef" || recs[1].UID != string(abandoned.UID) {
		t.Errorf("holders %q, %q; want %q and the crashed one", recs[0].Holder, recs[1].Holder, lk.Holder())
	}
	// The Lease's resourceVersion is at least the holder's token (equal
	// until the first renewal).
	shown, err := lease.ParseToken(recs[0].Token)
	if err != nil {
		t.Fatalf("token %q: %v", recs[0].Token, err)
	}
	if c, err := shown.Compare(lk.Token()); err != nil || c < 0 {
		t.Errorf("shown token %s vs the holder's %s: %d, %v; want >= 0", shown, lk.Token(), c, err)
	}
	var table bytes.Buffer
	if err := locks.WriteTable(&table, recs, time.Now()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), lk.Holder()) || !strings.Contains(table.String(), "Node/worker-2") {
		t.Errorf("table lacks a lock:\n%s", table.String())
	}
	t.Logf("locks:\n%s", table.String())

	// show, without a prefix and with one
	for _, p := range []string{"", prefix} {
		rec, err := locks.Find(ctx, leases, p, "Node/worker-1")
		if err != nil {
			t.Fatalf("Find(%q): %v", p, err)
		}
		if rec.Name != liveName || rec.Holder != lk.Holder() || rec.Duration != 2*time.Second {
			t.Errorf("Find(%q) = %+v", p, rec)
		}
	}
	if _, err := locks.Find(ctx, leases, prefix, "Node/nowhere"); !errors.Is(err, locks.ErrNotFound) {
		t.Errorf("Find of an absent key: %v", err)
	}

	// sweep, dry run: reports the abandoned Lease, deletes nothing
	dry, err := locks.NewSweeper(leases, locks.SweepOptions{Idle: idle, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := dry.Sweep(ctx)
	if err != nil {
		t.Fatalf("dry-run Sweep: %v", err)
	}
	if got, want := decisions(rep.Deleted), []string{"idle:Node/worker-2"}; !slices.Equal(got, want) {
		t.Errorf("dry run would delete %v, want %v", got, want)
	}
	if got, want := decisions(rep.Kept), []string{"changed:Node/worker-1"}; !slices.Equal(got, want) {
		t.Errorf("dry run keeps %v, want %v", got, want)
	}
	if l, err := leases.Get(ctx, abandonedName, metav1.GetOptions{}); err != nil || l.ResourceVersion != abandoned.ResourceVersion {
		t.Fatalf("dry run touched the abandoned Lease: %v, %v", l, err)
	}

	// sweep
	sw, err := locks.NewSweeper(leases, locks.SweepOptions{Idle: idle})
	if err != nil {
		t.Fatal(err)
	}
	rep, err = sw.Sweep(ctx)
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if got, want := decisions(rep.Deleted), []string{"idle:Node/worker-2"}; !slices.Equal(got, want) {
		t.Errorf("deleted %v, want %v", got, want)
	}
	if got, want := decisions(rep.Kept), []string{"changed:Node/worker-1"}; !slices.Equal(got, want) {
		t.Errorf("kept %v, want %v", got, want)
	}
	if rep.Elapsed < idle {
		t.Errorf("watched for %v, less than the idle time %v", rep.Elapsed, idle)
	}
	if _, err := leases.Get(ctx, abandonedName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the abandoned Lease is still there: %v", err)
	}
	if l, err := leases.Get(ctx, liveName, metav1.GetOptions{}); err != nil || ptr.Deref(l.Spec.HolderIdentity, "") != lk.Holder() {
		t.Errorf("the live Lease: %v, %v; want held by %s", l, err, lk.Holder())
	}
	if err := lk.Err(); err != nil {
		t.Errorf("the live lock was lost: %v", err)
	}
	if l, err := leases.Get(ctx, foreign.Name, metav1.GetOptions{}); err != nil || l.ResourceVersion != foreign.ResourceVersion {
		t.Errorf("a Lease not ours was touched: %v, %v", l, err)
	}
	after, err := locks.List(ctx, leases, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keysOf(after), []string{prefix + "|Node/worker-1"}; !slices.Equal(got, want) {
		t.Errorf("after the sweep: %v, want %v", got, want)
	}
}
