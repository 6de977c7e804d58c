package lease

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// Sweep deletes Leases of this Locker's prefix that it has observed
// unchanged for at least idle (and at least their own declared duration):
// Leases left behind by holders that crashed, which Kubernetes never
// garbage-collects. Deletes carry UID and resourceVersion preconditions, so
// a Lease renewed or taken over since it was observed is never deleted.
// Leases of keys owned by this Locker are skipped.
//
// Observation starts at the first Sweep, so a Lease can only be deleted by
// a later call: run it periodically (RunSweeper). idle must be at least
// Options.LeaseDuration. One List per call, plus one Delete per stale Lease.
func (l *Locker) Sweep(ctx context.Context, idle time.Duration) (deleted int, err error) {
	if idle < l.opts.LeaseDuration {
		return 0, fmt.Errorf("sweep: idle %v is shorter than the lease duration %v", idle, l.opts.LeaseDuration)
	}
	sel := labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedByValue, LabelPrefix: l.opts.Prefix})
	lctx, cancel := context.WithTimeout(ctx, l.opts.RequestTimeout)
	list, err := l.leases.List(lctx, metav1.ListOptions{LabelSelector: sel.String()})
	cancel()
	if err != nil {
		l.metrics.apiErrors.WithLabelValues("list").Inc()
		return 0, fmt.Errorf("sweep: list leases: %w", err)
	}

	now := l.clock.Now()
	var stale []observation
	var names []string
	l.mu.Lock()
	local := make(map[string]bool, len(l.slots))
	for _, s := range l.slots {
		local[s.name] = true
	}
	seen := make(map[string]bool, len(list.Items))
	for i := range list.Items {
		item := &list.Items[i]
		seen[item.Name] = true
		if local[item.Name] {
			delete(l.sweepObserved, item.Name)
			continue
		}
		o, ok := l.sweepObserved[item.Name]
		if !ok || o.rv != item.ResourceVersion || o.uid != string(item.UID) {
			l.sweepObserved[item.Name] = observation{rv: item.ResourceVersion, uid: string(item.UID), at: now}
			continue
		}
		if age := now.Sub(o.at); age >= idle && age >= recordDuration(item, l.opts.LeaseDuration) {
			stale = append(stale, o)
			names = append(names, item.Name)
		}
	}
	for name := range l.sweepObserved {
		if !seen[name] {
			delete(l.sweepObserved, name)
		}
	}
	l.mu.Unlock()

	var errs []error
	for i, o := range stale {
		name := names[i]
		dctx, cancel := context.WithTimeout(ctx, l.opts.RequestTimeout)
		uid := types.UID(o.uid)
		err := l.leases.Delete(dctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &o.rv}})
		cancel()
		switch {
		case err == nil:
			deleted++
			l.metrics.swept.Inc()
			l.mu.Lock()
			delete(l.sweepObserved, name)
			l.mu.Unlock()
			logr.FromContextOrDiscard(ctx).V(1).Info("swept stale lease", "lease", name)
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
			// Changed or gone since observed: not stale.
		default:
			l.metrics.apiErrors.WithLabelValues("delete").Inc()
			errs = append(errs, fmt.Errorf("sweep: delete lease %s: %w", name, err))
		}
	}
	return deleted, errors.Join(errs...)
}

// RunSweeper calls Sweep every interval until ctx ends, then returns nil.
// Sweep errors are logged (through the logger in ctx) and counted, not
// returned: the next round retries.
func (l *Locker) RunSweeper(ctx context.Context, interval, idle time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("sweeper: interval %v must be positive", interval)
	}
	if idle < l.opts.LeaseDuration {
		return fmt.Errorf("sweeper: idle %v is shorter than the lease duration %v", idle, l.opts.LeaseDuration)
	}
	log := logr.FromContextOrDiscard(ctx)
	for {
		if _, err := l.Sweep(ctx, idle); err != nil && ctx.Err() == nil {
			log.Error(err, "sweep failed")
		}
		t := l.clock.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}
