//go:build integration

package lease_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/leasehold/leasehold/lease"
)

// TestIntegrationCrossProcessHandoff passes one key around three processes
// by clean releases while the others wait in Acquire, and measures the
// release -> next acquisition latency.
//
// The lease is 30s and each acquire may take at most 10s, so no waiter can
// ever expire the Lease by observation: every acquisition must be a Create
// after the holder's Delete. The Locker would still get there without its
// watch, by polling on its backoff timer, only slower; the API calls each
// acquisition made show which woke it (see checkClean).
func TestIntegrationCrossProcessHandoff(t *testing.T) {
	const (
		handoffs = 30
		procs    = 3
	)
	key := uniqueKey(t)
	hs := newHarness(t)
	opts := childOptions{leaseDuration: 30 * time.Second, acquireTimeout: 10 * time.Second}

	var cs []*child
	for i := range procs {
		cs = append(cs, hs.start(fmt.Sprintf("proc-%d", i), key, opts))
	}
	holder := cs[0]
	holder.send(t, "acquire")
	first := holder.expect(t, "ACQUIRED", 20*time.Second)
	checkClean(t, holder, first)
	for _, c := range cs[1:] {
		c.send(t, "acquire")
		c.expect(t, "WAITING", 20*time.Second)
	}

	tokens := []lease.Token{first.token(t)}
	wins := map[string]int{holder.name: 1}
	var sinceCall, sinceDeleted, seenByTest []time.Duration
	for range handoffs {
		others := slices.DeleteFunc(slices.Clone(cs), func(c *child) bool { return c == holder })
		sent := time.Now()
		holder.send(t, "release")
		rel := holder.expect(t, "RELEASED", 10*time.Second)
		if e := rel.get(t, "error"); e != "nil" {
			t.Fatalf("%s: Release: %s, want nil", holder.name, e)
		}
		next, acq := expectAny(t, others, "ACQUIRED", 15*time.Second)
		checkClean(t, next, acq)
		tok := acq.token(t)
		newer(t, tokens[len(tokens)-1], tok)
		tokens = append(tokens, tok)
		wins[next.name]++

		at := acq.at(t, "at")
		sinceCall = append(sinceCall, at.Sub(rel.at(t, "start")))
		sinceDeleted = append(sinceDeleted, at.Sub(rel.at(t, "end")))
		seenByTest = append(seenByTest, acq.read.Sub(sent))

		// The released process queues again, so every release has the
		// same number of waiters; only then may the next release happen.
		holder.send(t, "acquire")
		holder.expect(t, "WAITING", 10*time.Second)
		// Another waiter reporting ACQUIRED now would hold the key with
		// next: two holders at once.
		for _, c := range others {
			if c != next && c.has("ACQUIRED") {
				t.Fatalf("%s and %s both acquired after one release", c.name, next.name)
			}
		}
		holder = next
	}

	t.Logf("release -> next acquisition across %d processes, %d hand-offs, lease 30s:", procs, handoffs)
	t.Logf("  from the Release call to Acquire returning: %s", summary(sinceCall))
	t.Logf("  from the Delete's response to Acquire returning: %s", summary(sinceDeleted))
	t.Logf("  as seen by the test (release sent -> ACQUIRED read): %s", summary(seenByTest))
	t.Logf("  acquisitions per process: %v", wins)

	for _, c := range cs {
		c.exit(t)
	}
}

// checkClean asserts that an acquisition after a clean release (or of a
// free key) was a Create, not a takeover, and that only the watch ever
// woke the waiter.
func checkClean(t *testing.T, c *child, acq message) {
	t.Helper()
	// Each acquire starts with a Create (the Locker forgot the Lease when it
	// last acquired it). Woken by its watch (a Deleted event), a waiter
	// goes straight to Create; only a lost Create race is followed by a
	// Get, which re-arms the watch. A waiter woken by a timer (backoff
	// polling after a broken watch, or expiry by observation) does a Get
	// first. So Gets are exactly the lost Creates.
	if creates, gets := acq.int(t, "creates"), acq.int(t, "gets"); gets != creates-1 {
		t.Errorf("%s made %d Creates and %d Gets while acquiring, want one Get per lost Create (%d): a timer, not the watch, woke it: %s",
			c.name, creates, gets, creates-1, acq.raw)
	}
	if p := acq.get(t, "path"); p != "create" {
		t.Errorf("%s acquired by %s, want create: %s", c.name, p, acq.raw)
	}
	if n := acq.int(t, "takeovers"); n != 0 {
		t.Errorf("%s took over %d times: %s", c.name, n, acq.raw)
	}
	if n := acq.int(t, "apierrors"); n != 0 {
		t.Errorf("%s had %d API errors while acquiring (a failed watch means polling): %s", c.name, n, acq.raw)
	}
}

// summary formats p50, p95 and max (nearest rank).
func summary(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return fmt.Sprintf("p50 %v, p95 %v, max %v (n=%d)",
		rank(0.50).Round(10*time.Microsecond), rank(0.95).Round(10*time.Microsecond), s[len(s)-1].Round(10*time.Microsecond), len(s))
}
