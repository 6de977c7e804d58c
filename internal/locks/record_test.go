package locks_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leasehold/leasehold/internal/locks"
	"github.com/leasehold/leasehold/lease"
)

// keysOf returns "prefix/key" for each record, in order.
func keysOf(recs []locks.Record) []string {
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.Prefix+"|"+r.Key)
	}
	return out
}

func TestListSelectsOursSortedByPrefixThenKey(t *testing.T) {
	api := newFakeAPI()
	ctx := context.Background()
	for _, l := range []*coordinationv1.Lease{
		stamped("ro-lock", "Node/worker-2", "o-1/1", 30, t0, t0, 0),
		stamped("gw-lock", "zzz", "g-0/2", 30, t0, t0, 0),
		stamped("ro-lock", "Node/worker-1", "o-0/3", 30, t0, t0, 0),
		stamped("gw-lock", "aaa", "g-1/4", 30, t0, t0, 0),
	} {
		api.create(t, l)
	}
	// Not ours: no managed-by label (a leader-election Lease, say), and a
	// Lease of ours in another namespace.
	api.create(t, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "kube-scheduler", Namespace: ns}})
	other := stamped("ro-lock", "Node/elsewhere", "o-9/5", 30, t0, t0, 0)
	other.Namespace = "elsewhere"
	if _, err := api.cs.CoordinationV1().Leases("elsewhere").Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	all, err := locks.List(ctx, api.leases, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keysOf(all), []string{"gw-lock|aaa", "gw-lock|zzz", "ro-lock|Node/worker-1", "ro-lock|Node/worker-2"}; !slices.Equal(got, want) {
		t.Errorf("List all = %v, want %v", got, want)
	}
	if all[2].Holder != "o-0/3" || all[2].Token == "" || all[2].Name != lease.LeaseName("ro-lock", "Node/worker-1") {
		t.Errorf("record: %+v", all[2])
	}

	ro, err := locks.List(ctx, api.leases, "ro-lock")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keysOf(ro), []string{"ro-lock|Node/worker-1", "ro-lock|Node/worker-2"}; !slices.Equal(got, want) {
		t.Errorf("List ro-lock = %v, want %v", got, want)
	}
}

func TestListRejectsABadPrefixWithoutACall(t *testing.T) {
	api := newFakeAPI()
	if _, err := locks.List(context.Background(), api.leases, "GW_LOCK"); err == nil {
		t.Fatal("List accepted prefix GW_LOCK")
	}
	if n := len(api.cs.Actions()); n != 0 {
		t.Errorf("%d API calls for an invalid prefix", n)
	}
}

func TestFind(t *testing.T) {
	api := newFakeAPI()
	ctx := context.Background()
	worker := api.create(t, stamped("ro-lock", "Node/worker-1", "o-0/1", 30, t0, t0, 0))
	api.create(t, stamped("gw-lock", "shared", "g-0/2", 30, t0, t0, 0))
	api.create(t, stamped("ro-lock", "shared", "o-0/3", 30, t0, t0, 0))
	// A Lease at the name the key hashes to, but not labelled as ours.
	api.create(t, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: lease.LeaseName("ro-lock", "impostor"), Namespace: ns}})

	t.Run("by prefix", func(t *testing.T) {
		before := len(api.cs.Actions())
		r, err := locks.Find(ctx, api.leases, "ro-lock", "Node/worker-1")
		if err != nil {
			t.Fatal(err)
		}
		if r.UID != string(worker.UID) || r.Holder != "o-0/1" {
			t.Errorf("found %+v, want the Lease %s", r, worker.Name)
		}
		acts := api.cs.Actions()[before:]
		if len(acts) != 1 || acts[0].GetVerb() != "get" {
			t.Errorf("calls %v, want one get", acts)
		}
	})
	t.Run("without prefix, unique", func(t *testing.T) {
		r, err := locks.Find(ctx, api.leases, "", "Node/worker-1")
		if err != nil || r.UID != string(worker.UID) {
			t.Errorf("Find = %+v, %v; want the Lease %s", r, err, worker.Name)
		}
	})
	t.Run("without prefix, ambiguous", func(t *testing.T) {
		_, err := locks.Find(ctx, api.leases, "", "shared")
		amb, ok := errors.AsType[*locks.AmbiguousError](err)
		if !ok {
			t.Fatalf("Find = %v, want *AmbiguousError", err)
		}
		if amb.Key != "shared" || !slices.Equal(amb.Prefixes, []string{"gw-lock", "ro-lock"}) {
			t.Errorf("ambiguity %+v, want key shared in gw-lock and ro-lock", amb)
		}
	})
	t.Run("ambiguity resolved by prefix", func(t *testing.T) {
		r, err := locks.Find(ctx, api.leases, "gw-lock", "shared")
		if err != nil || r.Holder != "g-0/2" {
			t.Errorf("Find = %+v, %v; want the gw-lock Lease", r, err)
		}
	})
	for name, tc := range map[string]struct{ prefix, key string }{
		"absent key":            {"", "Node/nowhere"},
		"absent key, by prefix": {"ro-lock", "Node/nowhere"},
		"wrong prefix":          {"gw-lock", "Node/worker-1"},
		"not labelled as ours":  {"ro-lock", "impostor"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := locks.Find(ctx, api.leases, tc.prefix, tc.key); !errors.Is(err, locks.ErrNotFound) {
				t.Errorf("Find(%q, %q) = %v, want ErrNotFound", tc.prefix, tc.key, err)
			}
		})
	}
}

func TestRecordDerivedTimes(t *testing.T) {
	l := stamped("ro-lock", "k", "h/0", 45, t0.Add(-time.Hour), t0.Add(-time.Minute), 0)
	l.CreationTimestamp = metav1.NewTime(t0.Add(-2 * time.Hour))
	r := locks.FromLease(l)
	if at, ok := r.ExpiresAt(); !ok || !at.Equal(t0.Add(-15*time.Second)) {
		t.Errorf("ExpiresAt = %v, %v; want renewTime + 45s", at, ok)
	}
	if got := r.LastActivity(); !got.Equal(t0.Add(-time.Minute)) {
		t.Errorf("LastActivity = %v, want the renewTime", got)
	}
	if got := r.EffectiveDuration(); got != 45*time.Second {
		t.Errorf("EffectiveDuration = %v", got)
	}

	bare := locks.FromLease(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(t0)}})
	if _, ok := bare.ExpiresAt(); ok {
		t.Error("ExpiresAt known for a Lease without renewTime")
	}
	if got := bare.LastActivity(); !got.Equal(t0) {
		t.Errorf("LastActivity of a bare Lease = %v, want its creation", got)
	}
	if got := bare.EffectiveDuration(); got != locks.DefaultLeaseDuration {
		t.Errorf("EffectiveDuration of a bare Lease = %v, want the default", got)
	}
}
