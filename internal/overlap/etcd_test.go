package overlap

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
)

// testPrefix is where the fake etcd keeps the executions the tests watch;
// the fake also holds keys around it that must not be read.
const testPrefix = "/registry/leasehold.dev/workflowexecutions/demo/"

// fakeEtcd serves the part of etcd's JSON gateway that StartEtcd uses
// (range, watch) over an in-memory history of revisions, writing the JSON
// the way etcd does: 64-bit integers as strings, bytes as base64, PUT
// events without a type. It can break open streams, refuse connections,
// compact its history and reject watches.
type fakeEtcd struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	rev       int64
	history   []fakeChange
	compacted int64
	// down refuses every request: "abort" drops the connection, "503"
	// answers Service Unavailable; "" serves.
	down string
	// rejectWatch answers every watch with 400 Bad Request.
	rejectWatch bool
	// generation counts breakStreams calls; a stream opened in an older
	// generation ends, as breakMode says, before it sends anything more.
	generation int
	breakMode  string
	// changed is closed and replaced at every change and break, to wake
	// the open streams.
	changed chan struct{}
	// watchStarts is the start_revision of every watch request, in order.
	watchStarts []int64
	ranges      int
	// afterFirstPage, if set, runs after the first range page is written
	// and before the client can read it.
	afterFirstPage func()
}

type fakeChange struct {
	rev, created int64
	key          string
	value        []byte
	deleted      bool
}

func newFakeEtcd(t *testing.T) *fakeEtcd {
	f := &fakeEtcd{t: t, rev: 1, changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v3/kv/range", f.serveRange)
	mux.HandleFunc("POST /v3/watch", f.serveWatch)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// notify wakes the open streams; f.mu is held.
func (f *fakeEtcd) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// put stores obj's JSON under testPrefix + name and returns its revision.
func (f *fakeEtcd) put(name string, obj client.Object) int64 {
	data, err := json.Marshal(obj)
	if err != nil {
		f.t.Fatal(err)
	}
	return f.putRaw(testPrefix+name, data)
}

func (f *fakeEtcd) putRaw(key string, value []byte) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	created := f.rev
	if cur, ok := f.stateAt(f.rev - 1)[key]; ok {
		created = cur.created
	}
	f.history = append(f.history, fakeChange{rev: f.rev, created: created, key: key, value: value})
	f.notify()
	return f.rev
}

func (f *fakeEtcd) del(name string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	f.history = append(f.history, fakeChange{rev: f.rev, key: testPrefix + name, deleted: true})
	f.notify()
	return f.rev
}

// compact drops the history up to the current revision.
func (f *fakeEtcd) compact() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.compacted = f.rev
	return f.rev
}

// breakStreams ends every open stream (mode "eof": a clean end; "error":
// the error message etcd's gateway sends when its stream to etcd breaks;
// "abort": a dropped connection) and sets what new requests get.
func (f *fakeEtcd) breakStreams(mode, down string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.generation++
	f.breakMode = mode
	f.down = down
	f.notify()
}

func (f *fakeEtcd) setDown(down string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

func (f *fakeEtcd) starts() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.watchStarts)
}

// waitWatches waits until n watches have been asked for.
func (f *fakeEtcd) waitWatches(n int) {
	f.t.Helper()
	eventually(f.t, fmt.Sprintf("%d watch requests", n), func() bool { return len(f.starts()) >= n })
	if got := f.starts(); len(got) != n {
		f.t.Fatalf("watch requests from %v, want %d of them", got, n)
	}
}

// stateAt is every live key at rev; f.mu is held.
func (f *fakeEtcd) stateAt(rev int64) map[string]fakeChange {
	s := map[string]fakeChange{}
	for _, c := range f.history {
		if c.rev > rev {
			break
		}
		if c.deleted {
			delete(s, c.key)
		} else {
			s[c.key] = c
		}
	}
	return s
}

func (f *fakeEtcd) header() map[string]any {
	return map[string]any{"cluster_id": "14841639068965178418", "member_id": "10276657743932975437",
		"revision": strconv.FormatInt(f.rev, 10), "raft_term": "2"}
}

func kvJSON(c fakeChange) map[string]any {
	kv := map[string]any{"key": base64.StdEncoding.EncodeToString([]byte(c.key)), "mod_revision": strconv.FormatInt(c.rev, 10)}
	if !c.deleted {
		kv["create_revision"] = strconv.FormatInt(c.created, 10)
		kv["version"] = "1"
		kv["value"] = base64.StdEncoding.EncodeToString(c.value)
	}
	return kv
}

// refuse serves a request while etcd is down; it reports whether it did.
// It is called without f.mu: "abort" unwinds the handler.
func refuse(w http.ResponseWriter, down string) bool {
	switch down {
	case "abort":
		panic(http.ErrAbortHandler)
	case "503":
		http.Error(w, `{"code":14,"message":"etcdserver: not capable"}`, http.StatusServiceUnavailable)
		return true
	}
	return false
}

func (f *fakeEtcd) serveRange(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Key      []byte   `json:"key"`
		RangeEnd []byte   `json:"range_end"`
		Limit    revision `json:"limit"`
		Revision revision `json:"revision"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	down := f.down
	f.mu.Unlock()
	if refuse(w, down) {
		return
	}
	f.mu.Lock()
	f.ranges++
	at := f.rev
	if req.Revision != 0 {
		at = int64(req.Revision)
	}
	var keys []string
	state := f.stateAt(at)
	for k := range state {
		if k >= string(req.Key) && k < string(req.RangeEnd) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	count := len(keys)
	more := req.Limit > 0 && len(keys) > int(req.Limit)
	if more {
		keys = keys[:req.Limit]
	}
	kvs := make([]any, 0, len(keys))
	for _, k := range keys {
		kvs = append(kvs, kvJSON(state[k]))
	}
	resp := map[string]any{"header": f.header(), "count": strconv.Itoa(count)}
	if len(kvs) > 0 {
		resp["kvs"] = kvs
	}
	if more {
		resp["more"] = true
	}
	hook := f.afterFirstPage
	f.mu.Unlock()
	if err := json.NewEncoder(w).Encode(resp); err != nil {
		f.t.Errorf("range response: %v", err)
	}
	// The response stays in the server's buffer until the handler
	// returns, so the hook runs before the client can read the page.
	if hook != nil && req.Revision == 0 {
		hook()
	}
}

func (f *fakeEtcd) serveWatch(w http.ResponseWriter, r *http.Request) {
	var req struct {
		CreateRequest struct {
			Key           []byte   `json:"key"`
			RangeEnd      []byte   `json:"range_end"`
			StartRevision revision `json:"start_revision"`
		} `json:"create_request"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cr := req.CreateRequest
	f.mu.Lock()
	f.watchStarts = append(f.watchStarts, int64(cr.StartRevision))
	down := f.down
	f.mu.Unlock()
	if refuse(w, down) {
		return
	}
	f.mu.Lock()
	if f.rejectWatch {
		f.mu.Unlock()
		http.Error(w, `{"code":3,"message":"bad request"}`, http.StatusBadRequest)
		return
	}
	gen := f.generation
	compacted := f.compacted
	created := map[string]any{"result": map[string]any{"header": f.header(), "created": true}}
	f.mu.Unlock()

	enc := json.NewEncoder(w)
	send := func(msg any) {
		if err := enc.Encode(msg); err != nil {
			return // the client went away; the loop ends with r.Context()
		}
		w.(http.Flusher).Flush()
	}
	send(created)
	next := int64(cr.StartRevision)
	if next < compacted {
		// etcd cancels the watch and leaves the stream open.
		send(map[string]any{"result": map[string]any{"header": map[string]any{"raft_term": "2"}, "canceled": true,
			"compact_revision": strconv.FormatInt(compacted, 10)}})
		<-r.Context().Done()
		return
	}
	for {
		f.mu.Lock()
		broken, mode := f.generation != gen, f.breakMode
		var events []any
		for _, c := range f.history {
			if c.rev >= next && c.key >= string(cr.Key) && c.key < string(cr.RangeEnd) {
				ev := map[string]any{"kv": kvJSON(c)}
				if c.deleted {
					ev["type"] = "DELETE"
				}
				events = append(events, ev)
			}
		}
		next = f.rev + 1
		header := f.header()
		ch := f.changed
		f.mu.Unlock()
		if broken {
			switch mode {
			case "error":
				send(map[string]any{"error": map[string]any{"code": 14, "message": "error reading from server: EOF"}})
			case "abort":
				panic(http.ErrAbortHandler)
			}
			return
		}
		if len(events) > 0 {
			send(map[string]any{"result": map[string]any{"header": header, "events": events}})
		}
		select {
		case <-ch:
		case <-r.Context().Done():
			return
		}
	}
}

// timerClock is a fake clock that records the duration of every timer.
type timerClock struct {
	*clocktesting.FakeClock
	mu     sync.Mutex
	timers []time.Duration
}

func newTimerClock() *timerClock {
	return &timerClock{FakeClock: clocktesting.NewFakeClock(epoch)}
}

func (c *timerClock) NewTimer(d time.Duration) clock.Timer {
	c.mu.Lock()
	c.timers = append(c.timers, d)
	c.mu.Unlock()
	return c.FakeClock.NewTimer(d)
}

func (c *timerClock) durations() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.timers)
}

// waitTimer waits until the n-th timer is set and pending, and returns
// its duration.
func (c *timerClock) waitTimer(t *testing.T, n int) time.Duration {
	t.Helper()
	eventually(t, fmt.Sprintf("timer %d", n), func() bool { return len(c.durations()) >= n && c.HasWaiters() })
	d := c.durations()
	if len(d) != n {
		t.Fatalf("timers %v, want %d of them", d, n)
	}
	return d[n-1]
}

// eventually polls cond until it holds, for what another goroutine does
// in its own time; it fails the test after 10s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func startFake(t *testing.T, f *fakeEtcd, clk clock.Clock) *Watch {
	t.Helper()
	w, err := startEtcd(t.Context(), f.srv.URL, testPrefix, "executions", DecodeExecution, Executions, clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

func addedNames(w *Watch) []string {
	var names []string
	for _, a := range w.AddedAfter(time.Time{}) {
		names = append(names, a.Name)
	}
	slices.Sort(names)
	return names
}

var (
	nodeA = v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "a"}
	nodeB = v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "b"}
	nodeC = v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "c"}
)

// StartEtcd lists the prefix, and only the prefix, then follows every
// change from the next revision: creations as Added, updates, deletions
// known only by their key.
func TestStartEtcdListsAndFollows(t *testing.T) {
	f := newFakeEtcd(t)
	listed := wfeOn("listed", nodeA, v1alpha1.WorkflowRunning)
	f.put("listed", listed)
	f.put("old", wfeOn("old", nodeA, v1alpha1.WorkflowCompleted))
	// Three active on one target in a namespace whose name starts like
	// the one watched, and in another resource: never to be counted.
	for i := range 3 {
		name := fmt.Sprintf("x%d", i)
		data, _ := json.Marshal(wfeOn(name, nodeA, v1alpha1.WorkflowRunning))
		f.putRaw("/registry/leasehold.dev/workflowexecutions/demo2/"+name, data)
		f.putRaw("/registry/leasehold.dev/workflowexecutionz/demo/"+name, data)
	}
	listRev := f.rev

	w := startFake(t, f, newTimerClock())
	if !w.CaughtUp([]client.Object{listed, wfeOn("old", nodeA, v1alpha1.WorkflowCompleted)}) {
		t.Fatal("the listed executions were not recorded by StartEtcd")
	}
	f.waitWatches(1)
	if got := f.starts(); got[0] != listRev+1 {
		t.Fatalf("watch from revision %d, want %d (one past the listing)", got[0], listRev+1)
	}

	second := wfeOn("second", nodeA, v1alpha1.WorkflowPending)
	f.put("second", second)
	listed.Status.Phase = v1alpha1.WorkflowCompleted
	f.put("listed", listed)
	f.del("second")
	third := wfeOn("third", nodeA, v1alpha1.WorkflowRunning)
	f.put("third", third)
	waitCaughtUp(t, w, third)
	if !w.CaughtUp([]client.Object{listed, wfeOn("second", nodeA, v1alpha1.WorkflowCompleted)}) {
		t.Error("not caught up with listed Completed and second deleted")
	}

	r := w.Result([]string{nodeA.LockKey()})
	if r.MaxActive[nodeA.LockKey()] != 2 || r.MaxActiveAny != 2 || len(r.Violations) != 1 ||
		!strings.Contains(r.Violations[0], "listed, second") {
		t.Errorf("result = %+v, want listed and second active at once, nothing from other keys", r)
	}
	if len(r.Gaps) != 0 {
		t.Errorf("gaps = %q, want none", r.Gaps)
	}
	if got := addedNames(w); !slices.Equal(got, []string{"second", "third"}) {
		t.Errorf("Added = %v, want second and third (listed objects excluded, updates not Added)", got)
	}
	if got := f.starts(); len(got) != 1 {
		t.Errorf("watch requests from %v, want one", got)
	}
}

// The listing is read in pages at one revision: a change made between
// pages is not in it, and comes through the watch instead.
func TestStartEtcdListsPagesAtOneRevision(t *testing.T) {
	f := newFakeEtcd(t)
	const n = 2*rangePageSize + 1
	for i := range n {
		// Each on its own target, so that none overlaps.
		target := nodeA
		target.Name = fmt.Sprintf("n%04d", i)
		f.put(fmt.Sprintf("obj-%04d", i), wfeOn(fmt.Sprintf("obj-%04d", i), target, v1alpha1.WorkflowCompleted))
	}
	late := wfeOn("zz-late", nodeB, v1alpha1.WorkflowRunning)
	// Set by the server's goroutine.
	var lateRev atomic.Int64
	f.afterFirstPage = func() { lateRev.Store(f.put("zz-late", late)) }

	w := startFake(t, f, newTimerClock())
	f.mu.Lock()
	ranges := f.ranges
	f.mu.Unlock()
	if ranges != 3 {
		t.Errorf("%d range requests for %d keys, want 3 pages of %d", ranges, n, rangePageSize)
	}
	last := wfeOn(fmt.Sprintf("obj-%04d", n-1), nodeA, v1alpha1.WorkflowCompleted)
	last.Spec.Target.Name = fmt.Sprintf("n%04d", n-1)
	if !w.CaughtUp([]client.Object{last}) {
		t.Error("the last page was not applied")
	}
	f.waitWatches(1)
	if got := f.starts(); got[0] != lateRev.Load() {
		t.Errorf("watch from revision %d, want %d (the first page's revision + 1)", got[0], lateRev.Load())
	}
	waitCaughtUp(t, w, late)
	if got := addedNames(w); !slices.Equal(got, []string{"zz-late"}) {
		t.Errorf("Added = %v, want only zz-late, created after the first page", got)
	}
}

// After a broken stream StartEtcd waits 100ms doubling to 1s and watches
// again from one past the last revision it applied, as often as it takes;
// a watch that etcd accepted resets the wait. Every way a stream can
// break is covered: a clean end, the gateway's error message, a dropped
// connection, and, while etcd is down, dropped connections and 503s.
func TestStartEtcdReconnects(t *testing.T) {
	f := newFakeEtcd(t)
	clk := newTimerClock()
	a := wfeOn("a", nodeA, v1alpha1.WorkflowRunning)
	aRev := f.put("a", a)
	w := startFake(t, f, clk)
	f.waitWatches(1)
	b := wfeOn("b", nodeB, v1alpha1.WorkflowPending)
	bRev := f.put("b", b)
	waitCaughtUp(t, w, b)

	// The stream breaks and etcd refuses connections; the changes made
	// next are not sent on the broken stream, so only a watch from bRev+1
	// finds them.
	f.breakStreams("eof", "abort")
	a.Status.Phase = v1alpha1.WorkflowCompleted
	f.put("a", a)
	c := wfeOn("c", nodeA, v1alpha1.WorkflowRunning)
	cRev := f.put("c", c)

	wants := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
		800 * time.Millisecond, time.Second, time.Second}
	for i, want := range wants {
		if got := clk.waitTimer(t, i+1); got != want {
			t.Fatalf("wait %d = %v, want %v", i+1, got, want)
		}
		clk.Step(want - time.Millisecond)
		if !clk.HasWaiters() {
			t.Fatalf("wait %d ended before its %v", i+1, want)
		}
		switch i {
		case 2:
			f.setDown("503")
		case len(wants) - 1:
			f.setDown("")
		}
		clk.Step(time.Millisecond)
		f.waitWatches(i + 2)
	}
	waitCaughtUp(t, w, a)
	waitCaughtUp(t, w, c)

	// Broken again after a watch etcd accepted: the wait starts over.
	f.breakStreams("error", "")
	d := wfeOn("d", nodeC, v1alpha1.WorkflowRunning)
	dRev := f.put("d", d)
	if got := clk.waitTimer(t, len(wants)+1); got != 100*time.Millisecond {
		t.Fatalf("wait after an accepted watch = %v, want 100ms", got)
	}
	clk.Step(100 * time.Millisecond)
	waitCaughtUp(t, w, d)

	f.breakStreams("abort", "")
	e := wfeOn("e", nodeB, v1alpha1.WorkflowCompleted)
	f.put("e", e)
	if got := clk.waitTimer(t, len(wants)+2); got != 100*time.Millisecond {
		t.Fatalf("wait after an accepted watch = %v, want 100ms", got)
	}
	clk.Step(100 * time.Millisecond)
	waitCaughtUp(t, w, e)

	wantStarts := []int64{aRev + 1}
	for range wants {
		wantStarts = append(wantStarts, bRev+1)
	}
	wantStarts = append(wantStarts, cRev+1, dRev+1)
	if got := f.starts(); !slices.Equal(got, wantStarts) {
		t.Errorf("watches from revisions %v, want %v", got, wantStarts)
	}
	r := w.Result([]string{nodeA.LockKey(), nodeB.LockKey()})
	if r.MaxActive[nodeA.LockKey()] != 1 || r.MaxActive[nodeB.LockKey()] != 1 || len(r.Violations) != 0 || len(r.Gaps) != 0 {
		t.Errorf("result = %+v, want one active at a time, no violation, no gap", r)
	}
	if got := addedNames(w); !slices.Equal(got, []string{"b", "c", "d", "e"}) {
		t.Errorf("Added = %v, want b, c, d, e", got)
	}
}

// A watch from a compacted revision is cancelled: the changes in between
// are lost, which is a gap, and the watch ends instead of asking again.
func TestStartEtcdCompactedIsAGap(t *testing.T) {
	f := newFakeEtcd(t)
	clk := newTimerClock()
	a := wfeOn("a", nodeA, v1alpha1.WorkflowRunning)
	aRev := f.put("a", a)
	w := startFake(t, f, clk)
	f.waitWatches(1)

	f.breakStreams("eof", "abort")
	a.Status.Phase = v1alpha1.WorkflowCompleted
	f.put("a", a)
	f.put("b", wfeOn("b", nodeA, v1alpha1.WorkflowRunning))
	compacted := f.compact()
	clk.waitTimer(t, 1)
	f.setDown("")
	clk.Step(100 * time.Millisecond)
	eventually(t, "a gap", func() bool { return len(w.Result(nil).Gaps) > 0 })
	w.Close()

	gaps := w.Result(nil).Gaps
	if len(gaps) != 1 || !strings.Contains(gaps[0], fmt.Sprintf("compacted up to revision %d", compacted)) ||
		!strings.Contains(gaps[0], fmt.Sprintf("from revision %d", aRev+1)) {
		t.Errorf("gaps = %q, want one naming the compaction and the revision asked for", gaps)
	}
	if got := f.starts(); len(got) != 2 {
		t.Errorf("watch requests from %v, want two: none after the cancelled one", got)
	}
	if got := clk.durations(); len(got) != 1 {
		t.Errorf("waits %v, want only the one before the cancelled watch", got)
	}
}

// A watch etcd rejects as malformed would be rejected again: a gap, and no
// retry.
func TestStartEtcdRejectedIsAGap(t *testing.T) {
	f := newFakeEtcd(t)
	f.rejectWatch = true
	clk := newTimerClock()
	w := startFake(t, f, clk)
	eventually(t, "a gap", func() bool { return len(w.Result(nil).Gaps) > 0 })
	w.Close()
	if gaps := w.Result(nil).Gaps; len(gaps) != 1 || !strings.Contains(gaps[0], "HTTP 400") {
		t.Errorf("gaps = %q, want one saying HTTP 400", gaps)
	}
	if got := f.starts(); len(got) != 1 {
		t.Errorf("watch requests from %v, want one", got)
	}
	if got := clk.durations(); len(got) != 0 {
		t.Errorf("waits %v, want none", got)
	}
}

// A value that cannot be decoded is a gap for that change; the watch goes
// on with the others. In the listing it fails StartEtcd.
func TestStartEtcdUndecodable(t *testing.T) {
	f := newFakeEtcd(t)
	w := startFake(t, f, newTimerClock())
	f.waitWatches(1)
	badRev := f.putRaw(testPrefix+"bad", []byte("not json"))
	good := wfeOn("good", nodeA, v1alpha1.WorkflowRunning)
	f.put("good", good)
	waitCaughtUp(t, w, good)
	gaps := w.Result(nil).Gaps
	if len(gaps) != 1 || !strings.Contains(gaps[0], fmt.Sprintf("revision %d could not be read", badRev)) {
		t.Errorf("gaps = %q, want one about revision %d", gaps, badRev)
	}

	if _, err := startEtcd(t.Context(), f.srv.URL, testPrefix, "executions", DecodeExecution, Executions, newTimerClock()); err == nil ||
		!strings.Contains(err.Error(), "decode "+testPrefix+"bad") {
		t.Errorf("StartEtcd over an undecodable value: %v, want an error naming its key", err)
	}
}

func TestStartEtcdValidates(t *testing.T) {
	f := newFakeEtcd(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	cases := []struct {
		name     string
		url, key string
		decode   func([]byte) (client.Object, error)
		classify Classifier
		want     string
	}{
		{"not a URL", "://", testPrefix, DecodeExecution, Executions, "etcd URL"},
		{"not http", "unix:///run/etcd.sock", testPrefix, DecodeExecution, Executions, "not an http(s) address"},
		{"key not a prefix", f.srv.URL, strings.TrimSuffix(testPrefix, "/"), DecodeExecution, Executions, "does not end in /"},
		{"no decode", f.srv.URL, testPrefix, nil, Executions, "nil decode"},
		{"no classifier", f.srv.URL, testPrefix, DecodeExecution, nil, "nil classifier"},
		{"etcd unreachable", closed.URL, testPrefix, DecodeExecution, Executions, "range executions in etcd"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, err := StartEtcd(t.Context(), tc.url, tc.key, "executions", tc.decode, tc.classify)
			if err == nil || w != nil || !strings.Contains(err.Error(), tc.want) {
				if w != nil {
					w.Close()
				}
				t.Errorf("StartEtcd = %v, %v; want nil and an error saying %q", w, err, tc.want)
			}
		})
	}
}

// The JSON exactly as etcd 3.6's gateway wrote it (recorded from a running
// etcd, values replaced): several events in one message, a progress
// notification with no events, 64-bit integers as strings.
func TestStartEtcdDecodesEtcdJSON(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	value := func(name, phase string) string {
		return b64(`{"apiVersion":"leasehold.dev/v1alpha1","kind":"WorkflowExecution","metadata":{"name":"` + name +
			`","namespace":"demo"},"spec":{"target":{"cluster":"local","apiVersion":"v1","kind":"Node","name":"a"},"sequence":1},"status":{"phase":"` + phase + `"}}`)
	}
	hdr := `"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"%d","raft_term":"2"}`
	rangeBody := fmt.Sprintf(`{`+hdr+`,"kvs":[{"key":"%s","create_revision":"2","mod_revision":"3","version":"2","value":"%s"}],"count":"1"}`,
		3, b64(testPrefix+"one"), value("one", "Running"))
	stream := []string{
		fmt.Sprintf(`{"result":{`+hdr+`,"created":true}}`, 3),
		fmt.Sprintf(`{"result":{`+hdr+`,"events":[{"kv":{"key":"%s","create_revision":"4","mod_revision":"4","version":"1","value":"%s"}},`+
			`{"kv":{"key":"%s","create_revision":"2","mod_revision":"5","version":"3","value":"%s"}}]}}`,
			5, b64(testPrefix+"two"), value("two", "Pending"), b64(testPrefix+"one"), value("one", "Completed")),
		fmt.Sprintf(`{"result":{`+hdr+`}}`, 6),
		fmt.Sprintf(`{"result":{`+hdr+`,"events":[{"type":"DELETE","kv":{"key":"%s","mod_revision":"7"}}]}}`, 7, b64(testPrefix+"two")),
	}
	var (
		mu     sync.Mutex
		starts []string
	)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v3/kv/range", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, rangeBody) })
	mux.HandleFunc("POST /v3/watch", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			CreateRequest struct {
				StartRevision string `json:"start_revision"`
			} `json:"create_request"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		starts = append(starts, req.CreateRequest.StartRevision)
		first := len(starts) == 1
		mu.Unlock()
		if first {
			for _, line := range stream {
				fmt.Fprintln(w, line)
			}
			return
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	clk := newTimerClock()
	w, err := startEtcd(t.Context(), srv.URL, testPrefix, "executions", DecodeExecution, Executions, clk)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// The stream ends after its last message; the watch asks again from
	// one past the last event.
	clk.waitTimer(t, 1)
	clk.Step(100 * time.Millisecond)
	eventually(t, "a second watch", func() bool { mu.Lock(); defer mu.Unlock(); return len(starts) == 2 })
	mu.Lock()
	if !slices.Equal(starts, []string{"4", "8"}) {
		t.Errorf("watches from revisions %q, want 4 (after the range) and 8 (after the deletion)", starts)
	}
	mu.Unlock()

	one := wfeOn("one", nodeA, v1alpha1.WorkflowCompleted)
	two := wfeOn("two", nodeA, v1alpha1.WorkflowCompleted) // deleted: not active
	if !w.CaughtUp([]client.Object{one, two}) {
		t.Error("not caught up with one Completed and two deleted")
	}
	r := w.Result([]string{nodeA.LockKey()})
	if r.MaxActive[nodeA.LockKey()] != 2 || len(r.Violations) != 1 || len(r.Gaps) != 0 {
		t.Errorf("result = %+v, want one and two active at once, no gap", r)
	}
	if got := addedNames(w); !slices.Equal(got, []string{"two"}) {
		t.Errorf("Added = %v, want two (one was listed)", got)
	}
}

func TestPrefixEnd(t *testing.T) {
	cases := []struct{ in, want string }{
		{"/registry/x/ns/", "/registry/x/ns0"},
		{"a\xff", "b"},
		{"\xff\xff", "\x00"},
	}
	for _, tc := range cases {
		if got := string(prefixEnd([]byte(tc.in))); got != tc.want {
			t.Errorf("prefixEnd(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRevisionJSON(t *testing.T) {
	for _, in := range []string{`"42"`, `42`} {
		var r revision
		if err := json.Unmarshal([]byte(in), &r); err != nil || r != 42 {
			t.Errorf("unmarshal %s = %d, %v; want 42", in, r, err)
		}
	}
	var r revision
	if err := json.Unmarshal([]byte(`"x"`), &r); err == nil {
		t.Error(`unmarshal "x": no error`)
	}
}
