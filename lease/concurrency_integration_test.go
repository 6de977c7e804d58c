//go:build integration

package lease_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/leasehold/leasehold/lease"
)

// section is one critical section as the test saw it.
type section struct {
	key    string
	seq    int // entry order across all keys
	token  lease.Token
	locker string
	enter  time.Time // monotonic readings
	exit   time.Time
}

// recorder is the shared ledger of critical sections. Its per-key counter
// is the primary exclusion check: it is incremented on entry and
// decremented on exit, so any overlap of two sections of one key is seen
// as a count above one, whatever the clocks say.
type recorder struct {
	mu         sync.Mutex
	inside     map[string]int
	last       map[string]lease.Token
	sections   []*section
	violations []string
}

func newRecorder() *recorder {
	return &recorder{inside: make(map[string]int), last: make(map[string]lease.Token)}
}

func (r *recorder) enter(key, locker string, tok lease.Token) *section {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inside[key]++
	if n := r.inside[key]; n > 1 {
		r.violations = append(r.violations, fmt.Sprintf("key %s: %d holders inside at once (entering: %s token %s)", key, n, locker, tok))
	}
	if prev, ok := r.last[key]; ok {
		c, err := tok.Compare(prev)
		if err != nil || c <= 0 {
			r.violations = append(r.violations, fmt.Sprintf("key %s: token %s entered after %s (compare %d, %v)", key, tok, prev, c, err))
		}
	}
	r.last[key] = tok
	s := &section{key: key, seq: len(r.sections), token: tok, locker: locker, enter: time.Now()}
	r.sections = append(r.sections, s)
	return s
}

func (r *recorder) exit(s *section) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s.exit = time.Now()
	r.inside[s.key]--
}

// TestIntegrationConcurrentLockers runs several Lockers, each with several
// goroutines, against few keys, and checks exclusion, token order and that
// both kinds of hand-off (inside a Locker and between Lockers) happened.
// LEASEHOLD_SOAK=1 runs it at full size.
func TestIntegrationConcurrentLockers(t *testing.T) {
	lockers, goroutines, iterations := 5, 4, 50
	acquireTimeout := time.Minute
	if os.Getenv("LEASEHOLD_SOAK") == "1" {
		lockers, goroutines, iterations = 5, 20, 2000
		acquireTimeout = 10 * time.Minute
	}
	keys := []string{"alpha", "beta", "gamma"}
	const prefix = "it-conc"

	// Ten seconds is short enough that renewals run during the test and
	// long enough that none is missed on a loaded 2-core machine: any
	// loss is a failure.
	opts := lease.Options{Prefix: prefix, LeaseDuration: 10 * time.Second}
	replicas := make([]*replica, lockers)
	for i := range replicas {
		replicas[i] = newReplica(t, fmt.Sprintf("pod-%d", i), opts)
	}

	rec := newRecorder()
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	for _, r := range replicas {
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < iterations; i++ {
					key := keys[rand.IntN(len(keys))]
					actx, cancel := context.WithTimeout(ctx, acquireTimeout)
					lk, err := r.locker.Acquire(actx, key)
					cancel()
					if err != nil {
						t.Errorf("%s: Acquire(%s): %v", r.identity, key, err)
						return
					}
					s := rec.enter(key, r.identity, lk.Token())
					// A little work, so that the scheduler can interleave
					// goroutines inside the section if exclusion is broken.
					for range 3 {
						time.Sleep(0)
					}
					if err := lk.Err(); err != nil {
						t.Errorf("%s: %s: Err before exit: %v", r.identity, key, err)
					}
					rec.exit(s)
					if err := lk.Release(ctx); err != nil {
						t.Errorf("%s: Release(%s): %v", r.identity, key, err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	if t.Failed() {
		return
	}

	for _, v := range rec.violations {
		t.Error(v)
	}
	want := lockers * goroutines * iterations
	if len(rec.sections) != want {
		t.Fatalf("recorded %d sections, want %d", len(rec.sections), want)
	}

	// The same property by the monotonic clock: per key, in entry order,
	// each section ends before the next begins.
	byKey := make(map[string][]*section)
	for _, s := range rec.sections {
		byKey[s.key] = append(byKey[s.key], s)
	}
	crossHandoffs := 0
	for key, ss := range byKey {
		sort.Slice(ss, func(i, j int) bool { return ss[i].seq < ss[j].seq })
		for i := 1; i < len(ss); i++ {
			prev, cur := ss[i-1], ss[i]
			if !prev.exit.Before(cur.enter) {
				t.Errorf("key %s: section %d (%s, token %s) exited at +%v, after section %d (%s, token %s) entered at +%v",
					key, prev.seq, prev.locker, prev.token, prev.exit.Sub(start), cur.seq, cur.locker, cur.token, cur.enter.Sub(start))
			}
			if mustCompare(t, cur.token, prev.token) <= 0 {
				t.Errorf("key %s: token %s after %s", key, cur.token, prev.token)
			}
			if cur.locker != prev.locker {
				crossHandoffs++
			}
		}
	}

	var handoffs, creates, takeovers, losses, lostReleases, renewals float64
	apiCalls := make(calls)
	for _, r := range replicas {
		handoffs += r.metric(t, "local_handoffs_total")
		creates += r.metric(t, "acquisitions_total", "path", "create")
		takeovers += r.metric(t, "takeovers_total")
		losses += r.metric(t, "losses_total")
		lostReleases += r.metric(t, "releases_total", "outcome", "lost") + r.metric(t, "releases_total", "outcome", "error")
		renewals += r.metric(t, "renewals_total")
		for verb, n := range r.calls.snapshot() {
			apiCalls[verb] += n
		}
		if got := r.metric(t, "acquisitions_total"); got != float64(goroutines*iterations) {
			t.Errorf("%s: %v acquisitions counted, want %d", r.identity, got, goroutines*iterations)
		}
	}
	if losses != 0 || lostReleases != 0 || takeovers != 0 {
		t.Errorf("losses=%v lost-or-failed releases=%v takeovers=%v, want all 0: no lock may be lost in normal operation", losses, lostReleases, takeovers)
	}
	if handoffs == 0 {
		t.Error("no local hand-off happened")
	}
	if crossHandoffs == 0 {
		t.Error("no hand-off between Lockers happened")
	}
	t.Logf("%d lockers x %d goroutines x %d acquisitions over %d keys in %v (%.0f acquisitions/s)",
		lockers, goroutines, iterations, len(keys), elapsed.Round(time.Millisecond), float64(want)/elapsed.Seconds())
	t.Logf("acquisitions: create=%v handoff=%v takeover=%v; consecutive sections by different Lockers=%d; renewals=%v",
		creates, handoffs, takeovers, crossHandoffs, renewals)
	t.Logf("API calls: %v total=%d (%.2f per acquisition)", apiCalls, apiCalls.total(), float64(apiCalls.total())/float64(want))
}
