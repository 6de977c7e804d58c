package locks

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/leasehold/leasehold/lease"
)

// WriteTable writes recs as a table, one row per lock, with ages and the
// time left before expiry computed against now (this machine's clock).
func WriteTable(w io.Writer, recs []Record, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tPREFIX\tHOLDER\tTOKEN\tACQUIRED\tRENEWED\tEXPIRES IN\tTRANSITIONS")
	for _, r := range recs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n",
			cell(r.Key), cell(r.Prefix), cell(r.Holder), cell(r.Token),
			age(now, r.AcquireTime), age(now, r.RenewTime), expiresIn(r, now), r.Transitions)
	}
	return tw.Flush()
}

// JSONRecord is the machine-readable form of a Record. Times are RFC 3339
// in UTC; ExpiresAt and Expired are absent when the Lease lacks renewTime
// or leaseDurationSeconds. Expired is judged against the observer's clock.
type JSONRecord struct {
	Name                 string     `json:"name"`
	Namespace            string     `json:"namespace"`
	UID                  string     `json:"uid"`
	Key                  string     `json:"key"`
	Prefix               string     `json:"prefix"`
	Holder               string     `json:"holder"`
	Token                string     `json:"token"`
	AcquireTime          *time.Time `json:"acquireTime,omitempty"`
	RenewTime            *time.Time `json:"renewTime,omitempty"`
	LeaseDurationSeconds *int32     `json:"leaseDurationSeconds,omitempty"`
	LeaseTransitions     int32      `json:"leaseTransitions"`
	ExpiresAt            *time.Time `json:"expiresAt,omitempty"`
	Expired              *bool      `json:"expired,omitempty"`
}

// JSONList is what WriteJSON writes.
type JSONList struct {
	// ObservedAt is the observer's clock reading the derived fields use.
	ObservedAt time.Time    `json:"observedAt"`
	Items      []JSONRecord `json:"items"`
}

// JSONDetail is what WriteDetailJSON writes: the derived view and the
// Lease object as read.
type JSONDetail struct {
	ObservedAt time.Time             `json:"observedAt"`
	Lock       JSONRecord            `json:"lock"`
	Lease      *coordinationv1.Lease `json:"lease"`
}

// ToJSON returns the machine-readable form of r, judged at now.
func (r Record) ToJSON(now time.Time) JSONRecord {
	j := JSONRecord{
		Name:             r.Name,
		Namespace:        r.Namespace,
		UID:              r.UID,
		Key:              r.Key,
		Prefix:           r.Prefix,
		Holder:           r.Holder,
		Token:            r.Token,
		AcquireTime:      utcPtr(r.AcquireTime),
		RenewTime:        utcPtr(r.RenewTime),
		LeaseTransitions: r.Transitions,
	}
	if r.Duration > 0 {
		secs := int32(r.Duration / time.Second)
		j.LeaseDurationSeconds = &secs
	}
	if at, ok := r.ExpiresAt(); ok {
		expired := !now.Before(at)
		j.ExpiresAt = utcPtr(at)
		j.Expired = &expired
	}
	return j
}

// WriteJSON writes recs as one indented JSONList.
func WriteJSON(w io.Writer, recs []Record, now time.Time) error {
	out := JSONList{ObservedAt: now.UTC(), Items: make([]JSONRecord, 0, len(recs))}
	for _, r := range recs {
		out.Items = append(out.Items, r.ToJSON(now))
	}
	return writeJSON(w, out)
}

// WriteDetailJSON writes r as one indented JSONDetail.
func WriteDetailJSON(w io.Writer, r Record, now time.Time) error {
	return writeJSON(w, JSONDetail{ObservedAt: now.UTC(), Lock: r.ToJSON(now), Lease: r.Lease})
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// WriteDetail writes every field of r's Lease, one per line, with the
// derived ages and expiry judged against now (this machine's clock).
func WriteDetail(w io.Writer, r Record, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	line := func(label, format string, args ...any) {
		fmt.Fprintf(tw, "%s:\t%s\n", label, fmt.Sprintf(format, args...))
	}
	line("Key", "%s", cell(r.Key))
	line("Prefix", "%s", cell(r.Prefix))
	line("Lease", "%s/%s", r.Namespace, r.Name)
	if r.Key != "" && r.Prefix != "" {
		if want := lease.LeaseName(r.Prefix, r.Key); want != r.Name {
			line("Warning", "the name is not lease.LeaseName(prefix, key) = %s: the key annotation was changed, or not written by a Locker", want)
		}
	}
	line("UID", "%s", cell(r.UID))
	line("Holder", "%s", cell(r.Holder))
	line("Token", "%s (the Lease's resourceVersion: the holder's own token is at most this)", cell(r.Token))
	line("Acquired", "%s", stamp(now, r.AcquireTime))
	line("Renewed", "%s", stamp(now, r.RenewTime))
	if r.Duration > 0 {
		line("Lease duration", "%s", r.Duration)
	} else {
		line("Lease duration", "<none> (treated as %s)", DefaultLeaseDuration)
	}
	if at, ok := r.ExpiresAt(); ok {
		line("Expires in", "%s (at %s; judged on this machine's clock)", expiresIn(r, now), at.UTC().Format(time.RFC3339Nano))
	} else {
		line("Expires in", "<unknown> (renewTime or leaseDurationSeconds missing)")
	}
	line("Transitions", "%d", r.Transitions)
	line("Created", "%s", stamp(now, r.Created))
	if l := r.Lease; l != nil {
		if l.Spec.Strategy != nil {
			line("Strategy", "%s", *l.Spec.Strategy)
		}
		if l.Spec.PreferredHolder != nil {
			line("Preferred holder", "%s", cell(*l.Spec.PreferredHolder))
		}
		writeMap(tw, "Labels", l.Labels)
		writeMap(tw, "Annotations", l.Annotations)
		for _, ref := range l.OwnerReferences {
			line("Owner", "%s %s (uid %s)", ref.Kind, ref.Name, ref.UID)
		}
	}
	return tw.Flush()
}

// writeMap writes m sorted by key, the first entry on the label's line.
func writeMap(tw io.Writer, label string, m map[string]string) {
	if len(m) == 0 {
		fmt.Fprintf(tw, "%s:\t<none>\n", label)
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i == 0 {
			fmt.Fprintf(tw, "%s:\t%s=%s\n", label, k, cell(m[k]))
		} else {
			fmt.Fprintf(tw, "\t%s=%s\n", k, cell(m[k]))
		}
	}
}

// cell makes s safe for one table cell: "<none>" when empty, quoted when
// it holds spaces or control characters (a key may hold anything).
func cell(s string) string {
	if s == "" {
		return "<none>"
	}
	if strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// age is how long ago t was on now's clock, kubectl style. A negative age
// (the writer's clock is ahead of this one) is shown with a minus sign.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "<none>"
	}
	d := now.Sub(t)
	if d < 0 {
		if d > -time.Second {
			return "0s"
		}
		return "-" + duration.HumanDuration(-d)
	}
	return duration.HumanDuration(d)
}

// expiresIn is RenewTime + Duration - now, or "expired" once past.
func expiresIn(r Record, now time.Time) string {
	at, ok := r.ExpiresAt()
	if !ok {
		return "<unknown>"
	}
	rem := at.Sub(now)
	switch {
	case rem <= 0:
		return "expired"
	case rem < time.Second:
		return "<1s"
	}
	return duration.HumanDuration(rem)
}

// stamp is an absolute time with its age.
func stamp(now, t time.Time) string {
	if t.IsZero() {
		return "<none>"
	}
	abs := t.UTC().Format(time.RFC3339Nano)
	if d := now.Sub(t); d <= -time.Second {
		return fmt.Sprintf("%s (%s ahead of this machine's clock)", abs, duration.HumanDuration(-d))
	}
	return fmt.Sprintf("%s (%s ago)", abs, age(now, t))
}

func utcPtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// WriteSweepReport writes what a sweep deleted (or, in a dry run, would
// have deleted) and kept, one row per Lease, then a summary line. Ages are
// judged against now.
func WriteSweepReport(w io.Writer, rep SweepReport, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	if len(rep.Deleted)+len(rep.Kept) > 0 {
		fmt.Fprintln(tw, "ACTION\tKEY\tPREFIX\tHOLDER\tRENEWED\tWHY")
		deleted := "deleted"
		if rep.DryRun {
			deleted = "would delete"
		}
		row := func(action string, d Decision) {
			r := d.Record
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", action, cell(r.Key), cell(r.Prefix), cell(r.Holder), age(now, r.RenewTime), rep.why(d, now))
		}
		for _, d := range rep.Deleted {
			row(deleted, d)
		}
		for _, d := range rep.Kept {
			row("kept", d)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var err error
	if rep.DryRun {
		_, err = fmt.Fprintf(w, "dry run: %d of %d Leases would be deleted, %d kept; nothing was deleted\n", len(rep.Deleted), rep.Found, len(rep.Kept))
	} else {
		_, err = fmt.Fprintf(w, "%d of %d Leases deleted, %d kept\n", len(rep.Deleted), rep.Found, len(rep.Kept))
	}
	return err
}

// why explains a decision in words.
func (rep SweepReport) why(d Decision, now time.Time) string {
	switch d.Reason {
	case ReasonIdle:
		return fmt.Sprintf("unchanged for the %s watched", rep.Elapsed.Round(time.Millisecond))
	case ReasonOlderThan:
		return fmt.Sprintf("last written %s ago, over the %s threshold", age(now, d.Record.LastActivity()), rep.OlderThan)
	case ReasonChanged:
		return "written meanwhile: renewed, taken over or recreated"
	case ReasonGone:
		return "deleted by someone else meanwhile"
	case ReasonLongDuration:
		return fmt.Sprintf("declares a %s lease duration, longer than the %s watched", d.Record.EffectiveDuration(), rep.Elapsed.Round(time.Millisecond))
	}
	return string(d.Reason)
}
