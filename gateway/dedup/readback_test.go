package dedup

import (
	"context"
	"math/rand/v2"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// constantRand is a jitter source that always draws v: a schedule a test
// can state exactly.
func constantRand(v float64) func() float64 { return func() float64 { return v } }

// seededRand is a reproducible jitter source, safe for concurrent use as
// Options.Rand must be.
func seededRand(seed uint64) func() float64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed))
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Float64()
	}
}

// The read-back policy draws its waits from the source it is given (one
// seed, one schedule; two seeds, two schedules), and
// keeps every wait within [readBackMinWait, readBackMaxWait] whatever the
// source returns.
func TestReadBackPolicyIsJittered(t *testing.T) {
	waits := func(rnd func() float64) []time.Duration {
		p, err := newReadBackPolicy(rnd)
		if err != nil {
			t.Fatal(err)
		}
		var ws []time.Duration
		prev := time.Duration(0)
		for attempt := 1; attempt <= 40; attempt++ {
			prev = p.Delay(attempt, prev)
			if prev < readBackMinWait || prev > readBackMaxWait {
				t.Fatalf("wait %d = %v, outside [%v, %v]", attempt, prev, readBackMinWait, readBackMaxWait)
			}
			ws = append(ws, prev)
		}
		return ws
	}
	a, b := waits(seededRand(1)), waits(seededRand(2))
	if slices.Equal(a, b) {
		t.Fatalf("two sources drew the same waits: %v", a)
	}
	if again := waits(seededRand(1)); !slices.Equal(a, again) {
		t.Fatalf("one seed drew %v, then %v: the waits do not come from the source given", a, again)
	}
	for _, v := range []float64{0, 1, -1, 2} {
		waits(constantRand(v))
	}
}

// Two Recorders whose writes are reset by the same failure, at the same
// instant, read back at different instants when their jitter sources
// differ: replicas do not read back in step after one API server restart.
func TestReadsBackAreNotInStep(t *testing.T) {
	readTimes := func(rnd func() float64) []time.Duration {
		e := newEnv(t, Options{Rand: rnd})
		if _, err := e.record(t, incident("A")); err != nil {
			t.Fatal(err)
		}
		var (
			mu      sync.Mutex
			sent    time.Time
			reads   []time.Duration
			failing atomic.Bool
		)
		e.afterUpdate = func(_ client.Client, err error) error {
			mu.Lock()
			sent = e.clock.Now()
			mu.Unlock()
			failing.Store(true)
			return resetErr("Put")
		}
		getRefused := &url.Error{Op: "Get", URL: "https://apiserver/x", Err: refusedErr.Err}
		e.onGetCtx = func(context.Context) error {
			if !failing.Load() {
				return nil
			}
			mu.Lock()
			defer mu.Unlock()
			reads = append(reads, e.clock.Now().Sub(sent))
			// Refused until the tenth read, then served: the write was
			// applied, as the read shows.
			if len(reads) < 10 {
				return getRefused
			}
			return nil
		}
		if _, err, _ := e.recordStepping(t, context.Background(), incident("A")); err != nil {
			t.Fatalf("record: %v", err)
		}
		e.onGetCtx = nil
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(reads)
	}
	a, b := readTimes(seededRand(1)), readTimes(seededRand(2))
	if len(a) != 10 || len(b) != 10 {
		t.Fatalf("reads back %d and %d, want 10 each", len(a), len(b))
	}
	t.Logf("reads back after the write: %v and %v", a, b)
	if slices.Equal(a, b) {
		t.Fatalf("both Recorders read back at %v after their writes", a)
	}
}
