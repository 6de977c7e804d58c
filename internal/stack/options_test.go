package stack

import (
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/clock"
)

func TestOptionsDefaults(t *testing.T) {
	o, err := Options{Executable: "/bin/leasehold"}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	want := Options{
		Namespace: DefaultNamespace, Gateways: 3, Orchestrators: 2, Executable: "/bin/leasehold",
		LeaseDuration: 5 * time.Second, ExecutionDuration: 500 * time.Millisecond,
		ReadyTimeout: time.Minute, StopGrace: 10 * time.Second, DemoTimeout: time.Minute,
		Clock: clock.RealClock{},
	}
	if o != want {
		t.Errorf("resolve() = %+v, want %+v", o, want)
	}
}

func TestOptionsDefaultExecutableIsThisProgram(t *testing.T) {
	o, err := Options{}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(o.Executable, ".test") {
		t.Errorf("Executable = %q, want this test binary", o.Executable)
	}
}

func TestOptionsInvalid(t *testing.T) {
	_, err := Options{
		Namespace: "Not_A_Label", Gateways: -1, Orchestrators: -2, Executable: "/x",
		LeaseDuration: -time.Second, StopGrace: -1,
	}.resolve()
	if !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("resolve() error = %v, want ErrInvalidOptions", err)
	}
	// Every problem is reported at once.
	for _, want := range []string{"namespace", "gateways -1", "orchestrators -2", "lease duration -1s", "stop grace -1ns"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestPlan(t *testing.T) {
	o, err := Options{Executable: "/bin/leasehold", Gateways: 2, Orchestrators: 1, LeaseDuration: 7 * time.Second, ExecutionDuration: 250 * time.Millisecond}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	s := &Stack{opts: o, KubeconfigPath: "/data/kubeconfig", Namespace: "ns1"}
	svcs := s.plan()
	common := "--kubeconfig /data/kubeconfig --namespace ns1"
	want := []struct {
		name, role, args string
		ports            int
	}{
		{"gw-0", "gateway", "gateway --insecure-no-auth --lease-duration 7s " + common + " --identity gw-0", 1},
		{"gw-1", "gateway", "gateway --insecure-no-auth --lease-duration 7s " + common + " --identity gw-1", 1},
		{"orchestrator-0", "orchestrator", "orchestrator --lease-duration 7s " + common + " --identity orchestrator-0", 2},
		{"executor-0", "executor", "executor --simulate --duration 250ms " + common + " --identity executor-0", 2},
	}
	if len(svcs) != len(want) {
		t.Fatalf("plan has %d services, want %d", len(svcs), len(want))
	}
	for i, w := range want {
		svc := svcs[i]
		if svc.Name != w.name || string(svc.Role) != w.role || strings.Join(svc.args, " ") != w.args || svc.ports != w.ports {
			t.Errorf("service %d = %s %s %q ports %d, want %s %s %q ports %d", i, svc.Name, svc.Role, strings.Join(svc.args, " "), svc.ports, w.name, w.role, w.args, w.ports)
		}
	}

	gw := svcs[0].listenArgs([]string{"127.0.0.1:1001"})
	if got := strings.Join(gw[len(gw)-2:], " "); got != "--listen 127.0.0.1:1001" {
		t.Errorf("gateway listen args = %q", got)
	}
	if svcs[0].URL != "http://127.0.0.1:1001" || svcs[0].ReadyURL != "http://127.0.0.1:1001/readyz" || svcs[0].MetricsURL != "http://127.0.0.1:1001/metrics" {
		t.Errorf("gateway URLs = %q %q %q", svcs[0].URL, svcs[0].ReadyURL, svcs[0].MetricsURL)
	}
	ex := svcs[3].listenArgs([]string{"127.0.0.1:2001", "127.0.0.1:2002"})
	if got := strings.Join(ex[len(ex)-4:], " "); got != "--metrics-bind-address 127.0.0.1:2001 --health-probe-bind-address 127.0.0.1:2002" {
		t.Errorf("executor listen args = %q", got)
	}
	if svcs[3].URL != "" || svcs[3].ReadyURL != "http://127.0.0.1:2002/readyz" || svcs[3].MetricsURL != "http://127.0.0.1:2001/metrics" {
		t.Errorf("executor URLs = %q %q %q", svcs[3].URL, svcs[3].ReadyURL, svcs[3].MetricsURL)
	}
	// listenArgs never changes the stored arguments: a restart on new
	// ports gets exactly one set of addresses.
	again := svcs[3].listenArgs([]string{"127.0.0.1:3001", "127.0.0.1:3002"})
	if strings.Contains(strings.Join(again, " "), "2001") {
		t.Errorf("restart arguments still hold the old ports: %q", again)
	}
}

func TestFreeAddrsAreDistinctLoopback(t *testing.T) {
	addrs, err := freeAddrs(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if !strings.HasPrefix(a, "127.0.0.1:") || seen[a] {
			t.Errorf("address %q is not a distinct loopback address (all: %v)", a, addrs)
		}
		seen[a] = true
	}
}
