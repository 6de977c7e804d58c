//go:build integration

package controlplane_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/leasehold/leasehold/internal/controlplane"
)

const ns = "leasehold-system"

var cp *controlplane.ControlPlane

func TestMain(m *testing.M) {
	os.Exit(controlplane.Run(m, controlplane.Options{Namespaces: []string{ns}}, func(c *controlplane.ControlPlane) error {
		cp = c
		return nil
	}))
}

// getAfterRestart waits, bounded, until the API answers again and returns
// the lease: a restarted process needs a moment before it serves.
func getAfterRestart(t *testing.T, cs kubernetes.Interface, name string) *coordinationv1.Lease {
	t.Helper()
	var got *coordinationv1.Lease
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := cs.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil // not serving yet
		}
		got = l
		return true, nil
	})
	if err != nil {
		t.Fatalf("lease %s not readable after restart: %v", name, err)
	}
	return got
}

// TestRestartKeepsPortsCertificatesAndData proves what the fault-injection
// suites rely on: a client made before a restart works after it, and the
// data written before it is still there.
func TestRestartKeepsPortsCertificatesAndData(t *testing.T) {
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	created, err := cs.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{GenerateName: "survivor-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	url := cp.APIServerURL()

	if err := cp.RestartAPIServer(); err != nil {
		t.Fatalf("restart API server: %v", err)
	}
	if cp.APIServerURL() != url {
		t.Fatalf("API server moved from %s to %s", url, cp.APIServerURL())
	}
	if got := getAfterRestart(t, cs, created.Name); got.UID != created.UID {
		t.Fatalf("after API server restart: UID %s, want %s", got.UID, created.UID)
	}

	if err := cp.RestartEtcd(); err != nil {
		t.Fatalf("restart etcd: %v", err)
	}
	if got := getAfterRestart(t, cs, created.Name); got.UID != created.UID {
		t.Fatalf("after etcd restart: UID %s, want %s", got.UID, created.UID)
	}
}

func TestKubeconfigIsUsable(t *testing.T) {
	if len(cp.Kubeconfig()) == 0 {
		t.Fatal("empty kubeconfig")
	}
	if _, err := os.Stat(cp.Dir()); err != nil {
		t.Fatalf("control plane folder: %v", err)
	}
}

// createAfterRestart creates a lease, retrying until the API answers again
// (bounded); an AlreadyExists after a retry means an earlier attempt
// succeeded without its answer arriving.
func createAfterRestart(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		return err == nil || apierrors.IsAlreadyExists(err), nil
	})
	if err != nil {
		t.Fatalf("create lease %s after restart: %v", name, err)
	}
}

// uniqueName makes names differ between runs on one control plane
// (go test -count).
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
}

// watchLeases opens a watch on the namespace's leases, stopped at the end of
// the test.
func watchLeases(t *testing.T, cs kubernetes.Interface) watch.Interface {
	t.Helper()
	w, err := cs.CoordinationV1().Leases(ns).Watch(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	t.Cleanup(w.Stop)
	return w
}

// TestRestartAPIServerWithOpenWatch: an open watch used to hold the API
// server's graceful shutdown for its full request timeout (1m), longer than
// the stop timeout, so the restart failed. Now the server ends the watch
// and the restart succeeds.
func TestRestartAPIServerWithOpenWatch(t *testing.T) {
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	w := watchLeases(t, cs)
	if err := cp.RestartAPIServer(); err != nil {
		t.Fatalf("restart API server with a watch open: %v", err)
	}
	timeout := time.After(60 * time.Second)
	for ended := false; !ended; {
		select {
		case _, ok := <-w.ResultChan(): // an error event may come first
			ended = !ok
		case <-timeout:
			t.Fatal("the watch did not end with the API server that served it")
		}
	}
	createAfterRestart(t, cs, uniqueName("after-apiserver-restart"))
}

// TestRestartEtcdWithOpenWatch: etcd's restart does not end a client's
// watch. The API server's own watch on etcd reconnects and resumes, so the
// client's watch stays open and delivers what is written after the restart.
func TestRestartEtcdWithOpenWatch(t *testing.T) {
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	w := watchLeases(t, cs)
	if err := cp.RestartEtcd(); err != nil {
		t.Fatalf("restart etcd with a watch open: %v", err)
	}
	name := uniqueName("after-etcd-restart")
	createAfterRestart(t, cs, name)
	timeout := time.After(60 * time.Second)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("the watch ended across an etcd restart")
			}
			if l, isLease := ev.Object.(*coordinationv1.Lease); isLease && ev.Type == watch.Added && l.Name == name {
				return
			}
		case <-timeout:
			t.Fatalf("the open watch did not deliver the creation of %s", name)
		}
	}
}
