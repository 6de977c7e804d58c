package overlap

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Replay rebuilds, from the changes of one resource fed to it in commit
// order, which objects of each exclusion group are active, and keeps per
// group the most active at once, a description of every moment with more
// than one, and the gaps its source reports. It does not know where the
// changes come from: Start feeds it from an API server watch, StartEtcd
// from a watch on etcd itself, and another source may feed it directly.
//
// Its conclusions hold only if the source feeds every change, in commit
// order: a source that skipped changes, or cannot tell whether it did,
// must say so with Gap. A Replay is safe for concurrent use, so that one
// goroutine feeds it while others read it.
type Replay struct {
	// what names the objects in messages, such as "executions".
	what     string
	classify Classifier
	// clock stamps Added.At.
	clock clock.PassiveClock

	mu sync.Mutex
	// objects is, per object name, its group and whether it was active at
	// its last change (not active once deleted: a deleted object keeps
	// nothing busy). An object's group is kept so that a deletion known
	// only by name can free it.
	objects map[string]state
	// active holds, per group, its active objects. Invariant: name is in
	// active[g] exactly when objects[name] is {g, true}.
	active map[string]map[string]bool
	// maxActive is, per group, the most objects active at once.
	maxActive map[string]int
	// maxActiveAny is the largest value in maxActive.
	maxActiveAny int
	// added is, per object name, when the source first delivered it as
	// Added; objects applied with ApplyListed are not in it.
	added map[string]Added
	// violations describe each moment a group had more than one active
	// object.
	violations []string
	// gaps say when the source ended early or lost changes: what happened
	// after went unchecked.
	gaps []string
}

// state is what a Replay remembers of one object.
type state struct {
	group  string
	active bool
}

// Added is an object the source delivered as Added after its initial
// list.
type Added struct {
	Name  string
	Group string
	// At is when this process received the change, on the Replay's clock.
	At time.Time
}

// NewReplay returns an empty Replay. what names the objects in messages
// (such as "executions"), classify puts them in groups, and clk stamps
// Added.At: clock.RealClock{} outside tests.
func NewReplay(what string, classify Classifier, clk clock.PassiveClock) (*Replay, error) {
	var errs []error
	if what == "" {
		errs = append(errs, errors.New("overlap: empty name for the objects"))
	}
	if classify == nil {
		errs = append(errs, errors.New("overlap: nil classifier"))
	}
	if clk == nil {
		errs = append(errs, errors.New("overlap: nil clock"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Replay{
		what:      what,
		classify:  classify,
		clock:     clk,
		objects:   map[string]state{},
		active:    map[string]map[string]bool{},
		maxActive: map[string]int{},
		added:     map[string]Added{},
	}, nil
}

// ApplyListed records an object that existed when the source started, as
// its initial list showed it: it counts as active like any other, but is
// never reported by AddedAfter.
func (r *Replay) ApplyListed(obj client.Object) {
	group, active, ok := r.classify(obj)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record(obj.GetName(), group, active)
}

// Apply records one change after the initial list. A Deleted object is not
// active whatever its content says; types other than Added, Modified and
// Deleted (bookmarks, errors) change nothing.
func (r *Replay) Apply(typ watch.EventType, obj client.Object) {
	switch typ {
	case watch.Added, watch.Modified, watch.Deleted:
	default:
		return
	}
	group, active, ok := r.classify(obj)
	if !ok {
		return
	}
	if typ == watch.Deleted {
		active = false
	}
	name := obj.GetName()
	r.mu.Lock()
	defer r.mu.Unlock()
	if typ == watch.Added {
		if _, found := r.added[name]; !found {
			r.added[name] = Added{Name: name, Group: group, At: r.clock.Now()}
		}
	}
	r.record(name, group, active)
}

// ApplyDelete records the deletion of the object with this name, for a
// source that learns of a deletion without the object's content (etcd
// keeps none for a deleted key). The object leaves the group it was last
// seen in. A name never seen is ignored: it belongs to an object the
// Classifier did not know, or to one deleted before the source started.
func (r *Replay) ApplyDelete(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, found := r.objects[name]
	if !found {
		return
	}
	r.record(name, s.group, false)
}

// Gap records that the source ended early or lost changes; msg says which
// and is reported in Result.Gaps.
func (r *Replay) Gap(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gaps = append(r.gaps, msg)
}

// record sets one object's state and updates the counts; r.mu is held.
func (r *Replay) record(name, group string, active bool) {
	// An object that moved to another group no longer counts in the old
	// one; the types checked today never move (their group is in an
	// immutable spec), but the counts must not depend on that.
	if prev, found := r.objects[name]; found && prev.group != group {
		delete(r.active[prev.group], name)
	}
	r.objects[name] = state{group: group, active: active}
	if r.active[group] == nil {
		r.active[group] = map[string]bool{}
	}
	if active {
		r.active[group][name] = true
	} else {
		delete(r.active[group], name)
	}
	n := len(r.active[group])
	r.maxActive[group] = max(r.maxActive[group], n)
	r.maxActiveAny = max(r.maxActiveAny, n)
	if n > 1 {
		names := make([]string, 0, n)
		for name := range r.active[group] {
			names = append(names, name)
		}
		slices.Sort(names)
		r.violations = append(r.violations, fmt.Sprintf("%s: %d %s active at once after a change of %s: %s",
			group, n, r.what, name, strings.Join(names, ", ")))
	}
}

// CaughtUp reports whether the Replay has seen each of objs as active or
// not as the object itself says. Objects the Classifier does not know are
// skipped.
func (r *Replay) CaughtUp(objs []client.Object) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, obj := range objs {
		_, active, ok := r.classify(obj)
		if !ok {
			continue
		}
		if s, found := r.objects[obj.GetName()]; !found || s.active != active {
			return false
		}
	}
	return true
}

// Result is what a Replay saw up to the call of Result.
type Result struct {
	// MaxActive is, per group asked for, the most objects active at once;
	// 0 for a group never seen.
	MaxActive map[string]int
	// Violations and Gaps are those seen anywhere in the namespace: two
	// active objects in one group are a violation whichever group it is.
	Violations []string
	Gaps       []string
	// MaxActiveAny is the largest number active at once in any group of
	// the namespace, asked for or not.
	MaxActiveAny int
}

// Result reports on the groups asked for; groups may be nil, for a caller
// that needs only the namespace-wide fields.
func (r *Replay) Result(groups []string) Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := Result{
		MaxActive:    make(map[string]int, len(groups)),
		Violations:   slices.Clone(r.violations),
		Gaps:         slices.Clone(r.gaps),
		MaxActiveAny: r.maxActiveAny,
	}
	for _, g := range groups {
		res.MaxActive[g] = r.maxActive[g]
	}
	return res
}

// AddedAfter returns the objects first delivered as Added strictly after
// t, in the order of their At (then by name). Objects of the initial list
// are never included; an object Added again under a name already seen
// Added keeps its first time.
func (r *Replay) AddedAfter(t time.Time) []Added {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Added
	for _, a := range r.added {
		if a.At.After(t) {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b Added) int {
		return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.Name, b.Name))
	})
	return out
}
