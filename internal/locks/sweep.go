package locks

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

const (
	// MinDefaultIdle is the floor of the default idle time.
	MinDefaultIdle = 30 * time.Second
	// MinOlderThan is the smallest SweepOptions.OlderThan accepted. Age is
	// judged on timestamps another host wrote, so the threshold must dwarf
	// any clock skew and any lease duration.
	MinOlderThan = time.Hour
)

// ErrInvalidOptions is matched by the errors of NewSweeper.
var ErrInvalidOptions = errors.New("invalid sweep options")

// Client is what a Sweeper needs from a Lease client of one namespace;
// clientset.CoordinationV1().Leases(ns) is one.
type Client interface {
	Reader
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// SweepOptions configures a Sweeper. Zero values are replaced by the
// defaults documented on each field, in one place (withDefaults).
type SweepOptions struct {
	// Prefix limits the sweep to one lock family. Empty: all our Leases.
	Prefix string

	// Idle is how long a Lease must be seen unchanged (same UID and
	// resourceVersion in two listings that far apart) to be deleted; a
	// Lease is also never deleted before it was seen unchanged for its own
	// leaseDurationSeconds (DefaultLeaseDuration if it declares none).
	// Default: twice the longest duration the listed Leases declare, and
	// at least MinDefaultIdle. Must not be negative.
	Idle time.Duration

	// OlderThan, when set, also deletes at once, without waiting, every
	// Lease whose last activity (Record.LastActivity) is at least this old
	// on this machine's clock. Zero: off. At least MinOlderThan.
	OlderThan time.Duration

	// DryRun reports what would be deleted and deletes nothing.
	DryRun bool

	// Clock measures the idle time. Default clock.RealClock{}.
	Clock clock.Clock

	// OnWatch, if set, is called once the Leases to watch are known,
	// right before the idle wait starts, with their number and the idle
	// time. It is not called when there is nothing to watch.
	OnWatch func(watched int, idle time.Duration)
}

func (o SweepOptions) withDefaults() SweepOptions {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return o
}

func (o SweepOptions) validate() error {
	var errs []error
	if _, err := Selector(o.Prefix); err != nil {
		errs = append(errs, err)
	}
	if o.Idle < 0 {
		errs = append(errs, fmt.Errorf("idle %v is negative", o.Idle))
	}
	if o.OlderThan < 0 {
		errs = append(errs, fmt.Errorf("older-than %v is negative", o.OlderThan))
	} else if o.OlderThan > 0 && o.OlderThan < MinOlderThan {
		errs = append(errs, fmt.Errorf("older-than %v is below %v: ages come from other hosts' clocks, so only a large threshold is safe; for anything shorter, let the idle watch decide", o.OlderThan, MinOlderThan))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
	}
	return nil
}

// Reason says why a sweep deleted or kept a Lease.
type Reason string

const (
	// ReasonIdle: deleted, unchanged for the whole watch.
	ReasonIdle Reason = "idle"
	// ReasonOlderThan: deleted, last activity older than OlderThan.
	ReasonOlderThan Reason = "older-than"
	// ReasonChanged: kept, written (renewed, taken over, handed off or
	// recreated) during the watch or right before the delete.
	ReasonChanged Reason = "changed"
	// ReasonGone: kept, someone else deleted it meanwhile.
	ReasonGone Reason = "gone"
	// ReasonLongDuration: kept, it declares a lease duration longer than
	// the watch lasted, so its holder may still be within it.
	ReasonLongDuration Reason = "long-duration"
)

// Decision is what a sweep did with one Lease. Record is the Lease as last
// seen.
type Decision struct {
	Record Record
	Reason Reason
}

// SweepReport is the outcome of one Sweep.
type SweepReport struct {
	DryRun bool
	// Found is the number of our Leases listed first.
	Found int
	// Idle is the idle time used (zero if nothing was watched); Watched
	// is how many Leases were watched for it, and Elapsed how long the
	// watch lasted between the two listings.
	Idle    time.Duration
	Watched int
	Elapsed time.Duration
	// OlderThan echoes the option.
	OlderThan time.Duration
	// Deleted lists the Leases deleted, or with DryRun those that would
	// have been.
	Deleted []Decision
	// Kept lists the Leases considered for deletion but kept, and why.
	Kept []Decision
}

// Sweeper deletes the Leases that crashed holders left behind; see the
// package documentation for why it never deletes a live one.
type Sweeper struct {
	client Client
	opts   SweepOptions
}

// NewSweeper validates opts (errors match ErrInvalidOptions) and returns a
// Sweeper of client's namespace.
func NewSweeper(client Client, opts SweepOptions) (*Sweeper, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil client", ErrInvalidOptions)
	}
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Sweeper{client: client, opts: opts}, nil
}

// Sweep runs one sweep: list, delete what is older than OlderThan, wait
// the idle time, list again, delete what did not change. Every delete
// carries the UID and resourceVersion of the first listing as
// preconditions. If ctx ends during the wait, it returns what it did so
// far and an error matching ctx's cause; nothing is deleted by
// observation then. Failed deletes do not stop the others; they are
// joined into the error.
func (s *Sweeper) Sweep(ctx context.Context) (SweepReport, error) {
	rep := SweepReport{DryRun: s.opts.DryRun, OlderThan: s.opts.OlderThan}
	first, err := List(ctx, s.client, s.opts.Prefix)
	if err != nil {
		return rep, fmt.Errorf("sweep: %w", err)
	}
	// Observation starts once the listing has returned: the state it
	// shows held no later than that.
	start := s.opts.Clock.Now()
	rep.Found = len(first)

	var errs []error
	var watched []Record
	for _, r := range first {
		if s.opts.OlderThan > 0 && start.Sub(r.LastActivity()) >= s.opts.OlderThan {
			errs = appendErr(errs, s.remove(ctx, r, ReasonOlderThan, &rep))
			continue
		}
		watched = append(watched, r)
	}
	if len(watched) == 0 {
		return rep, errors.Join(errs...)
	}

	idle := s.opts.Idle
	if idle == 0 {
		idle = MinDefaultIdle
		for _, r := range first {
			idle = max(idle, 2*r.EffectiveDuration())
		}
	}
	rep.Idle, rep.Watched = idle, len(watched)
	if s.opts.OnWatch != nil {
		s.opts.OnWatch(len(watched), idle)
	}
	t := s.opts.Clock.NewTimer(idle)
	select {
	case <-ctx.Done():
		t.Stop()
		return rep, errors.Join(append(errs, fmt.Errorf("sweep: watch interrupted, nothing deleted by observation: %w", context.Cause(ctx)))...)
	case <-t.C():
	}
	// Read before the second listing is sent: the state it shows held no
	// earlier than that, so an unchanged Lease was unchanged this long.
	rep.Elapsed = s.opts.Clock.Since(start)

	second, err := List(ctx, s.client, s.opts.Prefix)
	if err != nil {
		return rep, errors.Join(append(errs, fmt.Errorf("sweep: %w", err))...)
	}
	now := make(map[string]Record, len(second))
	for _, r := range second {
		now[r.Name] = r
	}
	for _, r := range watched {
		cur, ok := now[r.Name]
		switch {
		case !ok:
			rep.Kept = append(rep.Kept, Decision{Record: r, Reason: ReasonGone})
		case cur.UID != r.UID || cur.Token != r.Token:
			rep.Kept = append(rep.Kept, Decision{Record: cur, Reason: ReasonChanged})
		case rep.Elapsed < r.EffectiveDuration():
			rep.Kept = append(rep.Kept, Decision{Record: cur, Reason: ReasonLongDuration})
		default:
			errs = appendErr(errs, s.remove(ctx, r, ReasonIdle, &rep))
		}
	}
	return rep, errors.Join(errs...)
}

// remove deletes r on the condition that it is still exactly as read, and
// records the decision. A Lease that changed or vanished meanwhile is
// kept; any other failure is returned.
func (s *Sweeper) remove(ctx context.Context, r Record, reason Reason, rep *SweepReport) error {
	if s.opts.DryRun {
		rep.Deleted = append(rep.Deleted, Decision{Record: r, Reason: reason})
		return nil
	}
	uid, rv := types.UID(r.UID), r.Token
	err := s.client.Delete(ctx, r.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
	switch {
	case err == nil:
		rep.Deleted = append(rep.Deleted, Decision{Record: r, Reason: reason})
	case apierrors.IsNotFound(err):
		rep.Kept = append(rep.Kept, Decision{Record: r, Reason: ReasonGone})
	case apierrors.IsConflict(err):
		rep.Kept = append(rep.Kept, Decision{Record: r, Reason: ReasonChanged})
	default:
		return fmt.Errorf("sweep: delete Lease %s (key %q): %w", r.Name, r.Key, err)
	}
	return nil
}

func appendErr(errs []error, err error) []error {
	if err != nil {
		errs = append(errs, err)
	}
	return errs
}
