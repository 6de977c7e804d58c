package locks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/leasehold/leasehold/lease"
)

// DefaultLeaseDuration is the duration assumed for a Lease that declares
// none: the lock library's default. The library always writes the field,
// so only a Lease written by something else lacks it.
const DefaultLeaseDuration = 30 * time.Second

// ErrNotFound means no Lease of ours guards the key.
var ErrNotFound = errors.New("no lock found")

// AmbiguousError means the key is locked in several lock families: the
// caller must name the prefix.
type AmbiguousError struct {
	Key      string
	Prefixes []string // sorted
}

func (e *AmbiguousError) Error() string {
	return fmt.Sprintf("key %q has Leases under several prefixes (%s)", e.Key, strings.Join(e.Prefixes, ", "))
}

// Reader is what listing and showing need from a Lease client of one
// namespace; clientset.CoordinationV1().Leases(ns) is one.
type Reader interface {
	List(ctx context.Context, opts metav1.ListOptions) (*coordinationv1.LeaseList, error)
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error)
}

// Record is one of our Leases as an operator reads it. The times are the
// ones the holder wrote, on its own clock; zero when the Lease lacks them.
type Record struct {
	Name      string
	Namespace string
	UID       string
	// Key is the raw lock key (lease.AnnotationKey); empty if missing.
	Key string
	// Prefix is the lock family (lease.LabelPrefix).
	Prefix string
	// Holder is spec.holderIdentity, "<identity>/<16 hex digits>" when a
	// Locker wrote it.
	Holder string
	// Token is the Lease's resourceVersion now. The holder's own fencing
	// token is at most this; every later acquisition's token is greater.
	Token       string
	AcquireTime time.Time
	RenewTime   time.Time
	// Duration is spec.leaseDurationSeconds; zero if missing.
	Duration    time.Duration
	Transitions int32
	Created     time.Time
	// Lease is the object as read. Do not modify it.
	Lease *coordinationv1.Lease
}

// FromLease reads a Record out of l. It does not check that l is ours.
func FromLease(l *coordinationv1.Lease) Record {
	r := Record{
		Name:      l.Name,
		Namespace: l.Namespace,
		UID:       string(l.UID),
		Key:       l.Annotations[lease.AnnotationKey],
		Prefix:    l.Labels[lease.LabelPrefix],
		Token:     l.ResourceVersion,
		Created:   l.CreationTimestamp.Time,
		Lease:     l,
	}
	if l.Spec.HolderIdentity != nil {
		r.Holder = *l.Spec.HolderIdentity
	}
	if l.Spec.AcquireTime != nil {
		r.AcquireTime = l.Spec.AcquireTime.Time
	}
	if l.Spec.RenewTime != nil {
		r.RenewTime = l.Spec.RenewTime.Time
	}
	if l.Spec.LeaseDurationSeconds != nil && *l.Spec.LeaseDurationSeconds > 0 {
		r.Duration = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	if l.Spec.LeaseTransitions != nil {
		r.Transitions = *l.Spec.LeaseTransitions
	}
	return r
}

// ExpiresAt is RenewTime + Duration, the moment the holder's Lease would
// expire if this machine's clock agreed with the holder's. ok is false
// when either field is missing.
func (r Record) ExpiresAt() (t time.Time, ok bool) {
	if r.RenewTime.IsZero() || r.Duration == 0 {
		return time.Time{}, false
	}
	return r.RenewTime.Add(r.Duration), true
}

// EffectiveDuration is Duration, or DefaultLeaseDuration if the Lease
// declares none: how long a Lease must be seen unchanged before its holder
// has certainly given up.
func (r Record) EffectiveDuration() time.Duration {
	if r.Duration > 0 {
		return r.Duration
	}
	return DefaultLeaseDuration
}

// LastActivity is the latest of RenewTime, AcquireTime and Created: the
// last time anything is known to have written the Lease, on the writer's
// clock.
func (r Record) LastActivity() time.Time {
	t := r.Created
	for _, c := range []time.Time{r.AcquireTime, r.RenewTime} {
		if c.After(t) {
			t = c
		}
	}
	return t
}

// Selector selects our Leases, of one prefix if prefix is not empty.
func Selector(prefix string) (labels.Selector, error) {
	set := labels.Set{lease.LabelManagedBy: lease.ManagedByValue}
	if prefix != "" {
		if msgs := validation.IsDNS1123Label(prefix); len(msgs) > 0 {
			return nil, fmt.Errorf("prefix %q: %s", prefix, strings.Join(msgs, "; "))
		}
		set[lease.LabelPrefix] = prefix
	}
	return labels.SelectorFromValidatedSet(set), nil
}

// List returns our Leases (of one prefix if prefix is not empty), sorted
// by prefix, then key, then name. One List call.
func List(ctx context.Context, c Reader, prefix string) ([]Record, error) {
	sel, err := Selector(prefix)
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	list, err := c.List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	recs := make([]Record, 0, len(list.Items))
	for i := range list.Items {
		recs = append(recs, FromLease(&list.Items[i]))
	}
	sort.Slice(recs, func(i, j int) bool {
		a, b := recs[i], recs[j]
		if a.Prefix != b.Prefix {
			return a.Prefix < b.Prefix
		}
		if a.Key != b.Key {
			return a.Key < b.Key
		}
		return a.Name < b.Name
	})
	return recs, nil
}

// Find returns the Lease that guards key. With a prefix it is one Get of
// lease.LeaseName(prefix, key); without one, a List of all our Leases
// filtered by the key annotation, which fails with *AmbiguousError when
// several families lock the same key. Either way it fails with an error
// matching ErrNotFound if there is none.
func Find(ctx context.Context, c Reader, prefix, key string) (Record, error) {
	if key == "" {
		return Record{}, errors.New("find lock: empty key")
	}
	if prefix != "" {
		if _, err := Selector(prefix); err != nil {
			return Record{}, fmt.Errorf("find lock: %w", err)
		}
		name := lease.LeaseName(prefix, key)
		l, err := c.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return Record{}, fmt.Errorf("lock %q with prefix %q (Lease %s): %w", key, prefix, name, ErrNotFound)
		}
		if err != nil {
			return Record{}, fmt.Errorf("find lock %q: %w", key, err)
		}
		// A Lease of that name that is not labelled as ours is not one of
		// our locks, whatever its name says.
		if l.Labels[lease.LabelManagedBy] != lease.ManagedByValue || l.Labels[lease.LabelPrefix] != prefix {
			return Record{}, fmt.Errorf("lock %q with prefix %q: Lease %s exists but is not labelled as leasehold's: %w", key, prefix, name, ErrNotFound)
		}
		return FromLease(l), nil
	}
	recs, err := List(ctx, c, "")
	if err != nil {
		return Record{}, fmt.Errorf("find lock %q: %w", key, err)
	}
	var found []Record
	for _, r := range recs {
		if r.Key == key {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 0:
		return Record{}, fmt.Errorf("lock %q: %w", key, ErrNotFound)
	case 1:
		return found[0], nil
	}
	prefixes := make([]string, len(found))
	for i, r := range found {
		prefixes[i] = r.Prefix
	}
	sort.Strings(prefixes)
	return Record{}, &AmbiguousError{Key: key, Prefixes: slices.Compact(prefixes)}
}
