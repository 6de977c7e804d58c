//go:build integration

package controlplane_test

import (
	"context"
	"os"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
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
	created, err := cs.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "survivor"}}, metav1.CreateOptions{})
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
	if got := getAfterRestart(t, cs, "survivor"); got.UID != created.UID {
		t.Fatalf("after API server restart: UID %s, want %s", got.UID, created.UID)
	}

	if err := cp.RestartEtcd(); err != nil {
		t.Fatalf("restart etcd: %v", err)
	}
	if got := getAfterRestart(t, cs, "survivor"); got.UID != created.UID {
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
