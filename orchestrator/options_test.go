package orchestrator

import (
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/lease/leasetest"
)

func TestOptionsValidate(t *testing.T) {
	locker := leasetest.New(t, lease.Options{})
	valid := Options{Namespace: "ns", Identity: "orchestrator-0", Locker: locker}
	for _, tc := range []struct {
		name   string
		mutate func(*Options)
		want   string
	}{
		{"valid", func(*Options) {}, ""},
		{"no namespace", func(o *Options) { o.Namespace = "" }, "namespace is required"},
		{"bad namespace", func(o *Options) { o.Namespace = "Not_DNS" }, "namespace"},
		{"no identity", func(o *Options) { o.Identity = "" }, "identity is required"},
		{"no locker", func(o *Options) { o.Locker = nil }, "locker is required"},
		{"negative requeue", func(o *Options) { o.RequeueDelay = -time.Second }, "requeue delay"},
		{"negative hook delay", func(o *Options) { o.CheckToCreateDelay = -time.Second }, "check-to-create"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := valid
			tc.mutate(&o)
			err := o.withDefaults().validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestOptionsDefaults(t *testing.T) {
	o := Options{}.withDefaults()
	if o.RequeueDelay != 100*time.Millisecond || o.BlockedResync != 30*time.Second || o.DefaultTimeout != 10*time.Minute ||
		o.Retention != 24*time.Hour || o.RetentionInterval != time.Minute || o.ControllerName != "remediationrequest" ||
		o.Clock == nil || o.Rand == nil || o.MaxConcurrentReconciles != 4 {
		t.Fatalf("defaults: %+v", o)
	}
	if o.Identity != "" {
		t.Fatal("identity must never be defaulted")
	}
	// Retention stays negative (disabled).
	if got := (Options{Retention: -1}).withDefaults().Retention; got >= 0 {
		t.Fatalf("negative retention became %v", got)
	}
}

func TestExecutionName(t *testing.T) {
	n := ExecutionName(worker1, 12)
	// The whole target hash, not a prefix of it: targets whose hashes
	// share a prefix must not share execution names.
	if want := "wfe-" + v1alpha1.TargetLabelValue(worker1) + "-12"; n != want {
		t.Fatalf("ExecutionName = %q, want %q", n, want)
	}
	other := worker1
	other.Name = "worker-2"
	if ExecutionName(other, 12) == n {
		t.Fatal("two targets share an execution name")
	}
	// The API version does not matter, as for the lock key.
	v2 := worker1
	v2.APIVersion = "v2"
	if ExecutionName(v2, 12) != n {
		t.Fatal("the execution name depends on the API version")
	}
}

// Setup validates its options before it touches the manager.
func TestSetupRejectsInvalidOptions(t *testing.T) {
	err := Setup(nil, Options{Namespace: "ns", Locker: leasetest.New(t, lease.Options{})})
	if err == nil || !strings.Contains(err.Error(), "identity is required") {
		t.Fatalf("Setup without identity: %v", err)
	}
}
