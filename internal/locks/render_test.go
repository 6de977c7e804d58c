package locks_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"

	"github.com/leasehold/leasehold/internal/locks"
	"github.com/leasehold/leasehold/lease"
)

// withMeta sets what the API server would have set.
func withMeta(l *coordinationv1.Lease, rv, uid string) *coordinationv1.Lease {
	l.ResourceVersion = rv
	l.UID = k8stypes.UID("uid-" + uid)
	l.CreationTimestamp = metav1.NewTime(t0.Add(-time.Hour))
	return l
}

// renderRecords covers a healthy lock, an expired one with a key that
// needs quoting, a Lease with every optional field missing, and one whose
// holder's clock is ahead of ours.
func renderRecords() []locks.Record {
	healthy := withMeta(stamped("ro-lock", "Node/worker-1", "orchestrator-0/0123456789abcdef", 30, t0.Add(-5*time.Minute), t0.Add(-2*time.Second), 2), "1234", "a")
	expired := withMeta(stamped("gw-lock", "fp with space", "gateway-1/fedcba9876543210", 30, t0.Add(-2*time.Minute), t0.Add(-2*time.Minute), 0), "1100", "b")
	bare := withMeta(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
		Name: "lock-bare", Namespace: ns,
		Labels: map[string]string{lease.LabelManagedBy: lease.ManagedByValue, lease.LabelPrefix: "lock"},
	}}, "1300", "c")
	ahead := withMeta(stamped("ro-lock", "Node/worker-2", "orchestrator-1/00000000000000ff", 30, t0.Add(10*time.Second), t0.Add(10*time.Second), 0), "1400", "d")
	return []locks.Record{locks.FromLease(healthy), locks.FromLease(expired), locks.FromLease(bare), locks.FromLease(ahead)}
}

func TestWriteTable(t *testing.T) {
	var buf bytes.Buffer
	if err := locks.WriteTable(&buf, renderRecords(), t0); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		`KEY              PREFIX   HOLDER                           TOKEN  ACQUIRED  RENEWED  EXPIRES IN  TRANSITIONS`,
		`Node/worker-1    ro-lock  orchestrator-0/0123456789abcdef  1234   5m        2s       28s         2`,
		`"fp with space"  gw-lock  gateway-1/fedcba9876543210       1100   2m        2m       expired     0`,
		`<none>           lock     <none>                           1300   <none>    <none>   <unknown>   0`,
		`Node/worker-2    ro-lock  orchestrator-1/00000000000000ff  1400   -10s      -10s     40s         0`,
		``,
	}, "\n")
	if got := buf.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteTableEmpty(t *testing.T) {
	var buf bytes.Buffer
	if err := locks.WriteTable(&buf, nil, t0); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(buf.String()); !strings.HasPrefix(got, "KEY") || strings.Contains(got, "\n") {
		t.Errorf("empty table = %q, want the header only", got)
	}
}

func TestExpiresInBoundary(t *testing.T) {
	r := locks.FromLease(stamped("ro-lock", "k", "h/0", 30, t0, t0, 0))
	for _, tc := range []struct {
		now  time.Time
		want string
	}{
		{t0.Add(29 * time.Second), "1s"},
		{t0.Add(29*time.Second + 500*time.Millisecond), "<1s"},
		{t0.Add(30 * time.Second), "expired"}, // renewTime + duration is the expiry itself
		{t0.Add(time.Hour), "expired"},
	} {
		var buf bytes.Buffer
		if err := locks.WriteTable(&buf, []locks.Record{r}, tc.now); err != nil {
			t.Fatal(err)
		}
		row := strings.Fields(strings.Split(buf.String(), "\n")[1])
		if got := row[len(row)-2]; got != tc.want {
			t.Errorf("at renew+%v: EXPIRES IN = %q, want %q", tc.now.Sub(t0), got, tc.want)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	var buf bytes.Buffer
	if err := locks.WriteJSON(&buf, renderRecords(), t0); err != nil {
		t.Fatal(err)
	}
	var got locks.JSONList
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, buf.String())
	}
	if !got.ObservedAt.Equal(t0) || len(got.Items) != 4 {
		t.Fatalf("observedAt %v, %d items; want %v, 4", got.ObservedAt, len(got.Items), t0)
	}
	healthy, expired, bare := got.Items[0], got.Items[1], got.Items[2]
	if healthy.Key != "Node/worker-1" || healthy.Prefix != "ro-lock" || healthy.Token != "1234" ||
		healthy.Holder != "orchestrator-0/0123456789abcdef" || healthy.LeaseTransitions != 2 ||
		healthy.Name != lease.LeaseName("ro-lock", "Node/worker-1") || healthy.Namespace != ns || healthy.UID != "uid-a" {
		t.Errorf("healthy item: %+v", healthy)
	}
	if healthy.LeaseDurationSeconds == nil || *healthy.LeaseDurationSeconds != 30 {
		t.Errorf("healthy leaseDurationSeconds = %v, want 30", healthy.LeaseDurationSeconds)
	}
	if healthy.ExpiresAt == nil || !healthy.ExpiresAt.Equal(t0.Add(28*time.Second)) || healthy.Expired == nil || *healthy.Expired {
		t.Errorf("healthy expiry: at %v expired %v, want %v false", healthy.ExpiresAt, healthy.Expired, t0.Add(28*time.Second))
	}
	if healthy.RenewTime == nil || !healthy.RenewTime.Equal(t0.Add(-2*time.Second)) {
		t.Errorf("healthy renewTime = %v", healthy.RenewTime)
	}
	if expired.Expired == nil || !*expired.Expired {
		t.Errorf("expired item: expired = %v, want true", expired.Expired)
	}
	if bare.ExpiresAt != nil || bare.Expired != nil || bare.AcquireTime != nil || bare.RenewTime != nil || bare.LeaseDurationSeconds != nil || bare.Holder != "" {
		t.Errorf("bare item has fields its Lease lacks: %+v", bare)
	}
	// Absent fields are absent, not null or zero times.
	raw := buf.String()
	if strings.Contains(raw, "null") || strings.Contains(raw, "0001-01-01") {
		t.Errorf("JSON carries null or zero times:\n%s", raw)
	}
}

func TestWriteJSONEmptyIsAnEmptyList(t *testing.T) {
	var buf bytes.Buffer
	if err := locks.WriteJSON(&buf, nil, t0); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"items": []`) {
		t.Errorf("empty list = %s, want items: []", buf.String())
	}
}

func TestWriteDetail(t *testing.T) {
	r := renderRecords()[0]
	var buf bytes.Buffer
	if err := locks.WriteDetail(&buf, r, t0); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	want := strings.Join([]string{
		"Key:             Node/worker-1",
		"Prefix:          ro-lock",
		"Lease:           " + ns + "/" + lease.LeaseName("ro-lock", "Node/worker-1"),
		"UID:             uid-a",
		"Holder:          orchestrator-0/0123456789abcdef",
		"Token:           1234 (the Lease's resourceVersion: the holder's own token is at most this)",
		"Acquired:        2026-01-02T02:59:05Z (5m ago)",
		"Renewed:         2026-01-02T03:04:03Z (2s ago)",
		"Lease duration:  30s",
		"Expires in:      28s (at 2026-01-02T03:04:33Z; judged on this machine's clock)",
		"Transitions:     2",
		"Created:         2026-01-02T02:04:05Z (60m ago)",
		"Labels:          " + lease.LabelManagedBy + "=leasehold",
		"                 " + lease.LabelPrefix + "=ro-lock",
		"Annotations:     " + lease.AnnotationKey + "=Node/worker-1",
		"",
	}, "\n")
	if out != want {
		t.Errorf("detail:\n%s\nwant:\n%s", out, want)
	}
	if strings.Contains(out, "Warning") {
		t.Errorf("warning on a consistent Lease:\n%s", out)
	}
}

func TestWriteDetailFlagsInconsistentName(t *testing.T) {
	l := stamped("ro-lock", "Node/worker-1", "h/0", 30, t0, t0, 0)
	l.Annotations[lease.AnnotationKey] = "Node/worker-9" // edited by hand
	var buf bytes.Buffer
	if err := locks.WriteDetail(&buf, locks.FromLease(l), t0); err != nil {
		t.Fatal(err)
	}
	if want := "lease.LeaseName(prefix, key) = " + lease.LeaseName("ro-lock", "Node/worker-9"); !strings.Contains(buf.String(), want) {
		t.Errorf("detail lacks the warning %q:\n%s", want, buf.String())
	}
}

func TestWriteDetailMissingFields(t *testing.T) {
	var buf bytes.Buffer
	if err := locks.WriteDetail(&buf, renderRecords()[2], t0); err != nil {
		t.Fatal(err)
	}
	for label, want := range map[string]string{
		"Holder":         "<none>",
		"Acquired":       "<none>",
		"Renewed":        "<none>",
		"Lease duration": "<none> (treated as 30s)",
		"Expires in":     "<unknown> (renewTime or leaseDurationSeconds missing)",
		"Annotations":    "<none>",
	} {
		if got := field(buf.String(), label); got != want {
			t.Errorf("%s: %q, want %q in:\n%s", label, got, want, buf.String())
		}
	}
}

// field returns the value on the line of a detail that starts with label.
func field(detail, label string) string {
	for _, line := range strings.Split(detail, "\n") {
		if rest, ok := strings.CutPrefix(line, label+":"); ok {
			return strings.TrimSpace(rest)
		}
	}
	return "<absent>"
}

func TestWriteDetailJSON(t *testing.T) {
	var buf bytes.Buffer
	if err := locks.WriteDetailJSON(&buf, renderRecords()[0], t0); err != nil {
		t.Fatal(err)
	}
	var got struct {
		ObservedAt time.Time            `json:"observedAt"`
		Lock       locks.JSONRecord     `json:"lock"`
		Lease      coordinationv1.Lease `json:"lease"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, buf.String())
	}
	if got.Lock.Key != "Node/worker-1" || got.Lease.Name != lease.LeaseName("ro-lock", "Node/worker-1") ||
		got.Lease.ResourceVersion != "1234" || got.Lease.Spec.HolderIdentity == nil || *got.Lease.Spec.HolderIdentity != got.Lock.Holder {
		t.Errorf("detail JSON: lock %+v, lease %+v", got.Lock, got.Lease)
	}
}

func TestWriteSweepReport(t *testing.T) {
	recs := renderRecords()
	rep := locks.SweepReport{
		Found:     3,
		Idle:      time.Minute,
		Watched:   2,
		Elapsed:   time.Minute + 3*time.Millisecond,
		OlderThan: 90 * time.Minute,
		Deleted: []locks.Decision{
			{Record: recs[1], Reason: locks.ReasonIdle},
			{Record: recs[2], Reason: locks.ReasonOlderThan},
		},
		Kept: []locks.Decision{{Record: recs[0], Reason: locks.ReasonChanged}},
	}
	var buf bytes.Buffer
	if err := locks.WriteSweepReport(&buf, rep, t0); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		`ACTION   KEY              PREFIX   HOLDER                           RENEWED  WHY`,
		`deleted  "fp with space"  gw-lock  gateway-1/fedcba9876543210       2m       unchanged for the 1m0.003s watched`,
		`deleted  <none>           lock     <none>                           <none>   last written 60m ago, over the 1h30m0s threshold`,
		`kept     Node/worker-1    ro-lock  orchestrator-0/0123456789abcdef  2s       written meanwhile: renewed, taken over or recreated`,
		`2 of 3 Leases deleted, 1 kept`,
		``,
	}, "\n")
	if got := buf.String(); got != want {
		t.Errorf("report:\n%s\nwant:\n%s", got, want)
	}

	rep.DryRun = true
	buf.Reset()
	if err := locks.WriteSweepReport(&buf, rep, t0); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); strings.Count(got, "would delete  ") != 2 || !strings.HasSuffix(got, "dry run: 2 of 3 Leases would be deleted, 1 kept; nothing was deleted\n") || strings.Contains(got, "deleted  ") {
		t.Errorf("dry-run report:\n%s", got)
	}
}
