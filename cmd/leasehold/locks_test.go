package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/leasehold/leasehold/internal/locks"
	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/lease/leasetest"
)

var locksT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// locksFixture is a fake API server with Lease semantics and a fake clock,
// wired into the locks commands in place of a kubeconfig.
type locksFixture struct {
	cs  *fake.Clientset
	clk *clocktesting.FakeClock
	env locksEnv
}

func newLocksFixture() *locksFixture {
	fx := &locksFixture{cs: leasetest.NewClientset(), clk: clocktesting.NewFakeClock(locksT0)}
	fx.env = locksEnv{
		client: func(f *locksFlags) (locks.Client, error) { return fx.cs.CoordinationV1().Leases(f.namespace), nil },
		clock:  fx.clk,
	}
	return fx
}

func (fx *locksFixture) create(t *testing.T, prefix, key, holder string, renewed time.Time) *coordinationv1.Lease {
	t.Helper()
	at := metav1.NewMicroTime(renewed)
	l, err := fx.cs.CoordinationV1().Leases("leasehold-system").Create(context.Background(), &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name:        lease.LeaseName(prefix, key),
			Labels:      map[string]string{lease.LabelManagedBy: lease.ManagedByValue, lease.LabelPrefix: prefix},
			Annotations: map[string]string{lease.AnnotationKey: key},
		},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To(holder), LeaseDurationSeconds: ptr.To[int32](30),
			AcquireTime: &at, RenewTime: &at, LeaseTransitions: ptr.To[int32](0),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// run executes `leasehold <args>` with the fixture's environment.
func (fx *locksFixture) run(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	root := &cobra.Command{Use: "leasehold", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newLocksCommandWith(fx.env))
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err = root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

func TestLocksListTable(t *testing.T) {
	fx := newLocksFixture()
	fx.create(t, "ro-lock", "Node/worker-1", "orchestrator-0/0123456789abcdef", locksT0.Add(-2*time.Second))
	fx.create(t, "gw-lock", "3f2a", "gateway-1/fedcba9876543210", locksT0.Add(-time.Minute))
	for _, args := range [][]string{{"locks"}, {"locks", "list"}, {"locks", "ls"}} {
		out, _, err := fx.run(context.Background(), args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "KEY ") ||
			!strings.HasPrefix(lines[1], "3f2a ") || !strings.Contains(lines[1], "expired") ||
			!strings.HasPrefix(lines[2], "Node/worker-1 ") || !strings.Contains(lines[2], " 28s ") {
			t.Errorf("%v printed:\n%s", args, out)
		}
	}
	out, _, err := fx.run(context.Background(), "locks", "--prefix", "ro-lock")
	if err != nil || strings.Contains(out, "3f2a") || !strings.Contains(out, "Node/worker-1") {
		t.Errorf("--prefix ro-lock: %v\n%s", err, out)
	}
}

func TestLocksListJSON(t *testing.T) {
	fx := newLocksFixture()
	fx.create(t, "ro-lock", "Node/worker-1", "orchestrator-0/0123456789abcdef", locksT0)
	out, _, err := fx.run(context.Background(), "locks", "list", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got locks.JSONList
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(got.Items) != 1 || got.Items[0].Key != "Node/worker-1" || !got.ObservedAt.Equal(locksT0) {
		t.Errorf("JSON: %+v", got)
	}
}

func TestLocksListEmptyAndOtherNamespace(t *testing.T) {
	fx := newLocksFixture()
	fx.create(t, "ro-lock", "Node/worker-1", "o/1", locksT0)
	out, errOut, err := fx.run(context.Background(), "locks", "--namespace", "elsewhere")
	if err != nil || out != "" || errOut != "No leasehold locks in namespace elsewhere.\n" {
		t.Errorf("empty namespace: %v, stdout %q, stderr %q", err, out, errOut)
	}
}

func TestLocksNamespaceDefault(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "from-env")
	cmd := newLocksCommandWith(newLocksFixture().env)
	if got := cmd.PersistentFlags().Lookup("namespace").DefValue; got != "from-env" {
		t.Errorf("--namespace default %q, want POD_NAMESPACE", got)
	}
	t.Setenv("POD_NAMESPACE", "")
	cmd = newLocksCommandWith(newLocksFixture().env)
	if got := cmd.PersistentFlags().Lookup("namespace").DefValue; got != "leasehold-system" {
		t.Errorf("--namespace default %q, want leasehold-system", got)
	}
}

func TestLocksShow(t *testing.T) {
	fx := newLocksFixture()
	fx.create(t, "ro-lock", "shared", "orchestrator-0/0123456789abcdef", locksT0)
	fx.create(t, "gw-lock", "shared", "gateway-0/0123456789abcdef", locksT0)

	_, _, err := fx.run(context.Background(), "locks", "show", "shared")
	if _, ok := errors.AsType[*locks.AmbiguousError](err); !ok || !strings.Contains(err.Error(), "pass --prefix") {
		t.Errorf("ambiguous show: %v", err)
	}
	out, _, err := fx.run(context.Background(), "locks", "show", "shared", "--prefix", "gw-lock")
	if err != nil || !strings.Contains(out, "Holder:          gateway-0/0123456789abcdef\n") ||
		!strings.Contains(out, "Lease:           leasehold-system/"+lease.LeaseName("gw-lock", "shared")+"\n") {
		t.Errorf("show --prefix gw-lock: %v\n%s", err, out)
	}
	out, _, err = fx.run(context.Background(), "locks", "show", "shared", "--prefix", "ro-lock", "-o", "json")
	var detail locks.JSONDetail
	if err != nil || json.Unmarshal([]byte(out), &detail) != nil || detail.Lock.Holder != "orchestrator-0/0123456789abcdef" {
		t.Errorf("show -o json: %v\n%s", err, out)
	}
	if _, _, err := fx.run(context.Background(), "locks", "show", "absent"); !errors.Is(err, locks.ErrNotFound) {
		t.Errorf("show of an absent key: %v, want ErrNotFound", err)
	}
	if _, _, err := fx.run(context.Background(), "locks", "show"); err == nil {
		t.Error("show without a key succeeded")
	}
}

func TestLocksRejectsUnknownOutput(t *testing.T) {
	fx := newLocksFixture()
	for _, args := range [][]string{{"locks", "-o", "yaml"}, {"locks", "show", "k", "-o", "wide"}} {
		if _, _, err := fx.run(context.Background(), args...); err == nil || !strings.Contains(err.Error(), "--output") {
			t.Errorf("%v: %v", args, err)
		}
	}
	if n := len(fx.cs.Actions()); n != 0 {
		t.Errorf("%d API calls before the flags were checked", n)
	}
}

func TestLocksSweepRefusesOlderThanBelowAnHour(t *testing.T) {
	fx := newLocksFixture()
	fx.create(t, "ro-lock", "Node/worker-1", "o/1", locksT0.Add(-48*time.Hour))
	before := len(fx.cs.Actions())
	_, _, err := fx.run(context.Background(), "locks", "sweep", "--older-than", "30m")
	if !errors.Is(err, locks.ErrInvalidOptions) {
		t.Errorf("--older-than 30m: %v, want ErrInvalidOptions", err)
	}
	if n := len(fx.cs.Actions()) - before; n != 0 {
		t.Errorf("%d API calls after the refusal", n)
	}
}

// TestLocksSweepDryRun runs the sweep command to the end on the fake
// clock: it prints what it watches, then what it would delete, and
// deletes nothing.
func TestLocksSweepDryRun(t *testing.T) {
	fx := newLocksFixture()
	stale := fx.create(t, "ro-lock", "Node/worker-1", "o-dead/1", locksT0.Add(-time.Hour))
	type res struct {
		out, errOut string
		err         error
	}
	done := make(chan res, 1)
	go func() {
		out, errOut, err := fx.run(context.Background(), "locks", "sweep", "--dry-run")
		done <- res{out, errOut, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !fx.clk.HasWaiters() {
		if time.Now().After(deadline) {
			t.Fatal("the sweep never started waiting")
		}
		time.Sleep(time.Millisecond)
	}
	fx.clk.Step(time.Minute) // the default idle: 2 x 30 s
	var r res
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("sweep did not return")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !strings.Contains(r.errOut, "Watching 1 Leases in namespace leasehold-system for 1m0s") {
		t.Errorf("stderr: %q", r.errOut)
	}
	if !strings.Contains(r.out, "would delete  Node/worker-1") || !strings.HasSuffix(r.out, "nothing was deleted\n") {
		t.Errorf("stdout:\n%s", r.out)
	}
	if _, err := fx.cs.CoordinationV1().Leases("leasehold-system").Get(context.Background(), stale.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		t.Error("dry run deleted the Lease")
	}
}
