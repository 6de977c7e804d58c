// Command lockholder is the child process of the multi-process lease tests:
// one OS process with one lease.Locker, driven by the test over stdin and
// reporting over stdout, one line per event.
//
// Commands (stdin, one per line):
//
//	acquire  start Acquire(key) bounded by -acquire-timeout; answers ACQUIRED or FAILED
//	try      TryAcquire(key); answers ACQUIRED or HELD
//	step     check Lock.Err (answers ERR), then post a record to the recorder
//	         whatever Err said, as a stale in-flight write would (answers RECORD)
//	release  Lock.Release; answers RELEASED
//	exit     Locker.Close, then exit 0
//
// Events (stdout, "VERB key=value ..."):
//
//	READY identity=I
//	WAITING                  the running acquire opened its first watch on the Lease: it is waiting
//	ACQUIRED token=T holder=H path=create|takeover|handoff at=NS
//	         creates= updates= gets= watches= deletes=   API calls made by this acquire
//	         takeovers= contention= apierrors=           metric increments during this acquire
//	FAILED error=CLASS msg=...
//	HELD
//	RENEWED n=N              the N-th successful renewal of the current lock
//	ENDED cause=CLASS        the current lock's Context ended (lost, released, ...)
//	ERR err=CLASS context=live|done
//	                         Lock.Err before a step, and whether Context was
//	                         already done when read just before
//	RECORD result=accepted|rejected status=CODE step=N
//	RELEASED error=CLASS start=NS end=NS
//	FATAL msg=...            a protocol or setup error; the process exits 1
//
// CLASS is nil, lost, released, held, closed, deadline or other. Times (NS)
// are wall-clock Unix nanoseconds, comparable between processes on one host.
// On stdin EOF (the test went away) the process exits at once, so a crashed
// test leaves no child behind.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/leasehold/leasehold/internal/kubeclient"
	"github.com/leasehold/leasehold/lease"
)

func main() {
	var (
		kubeconfig     = flag.String("kubeconfig", "", "path of the kubeconfig file (required)")
		identity       = flag.String("identity", os.Getenv("POD_NAME"), "Locker identity (default $POD_NAME)")
		namespace      = flag.String("namespace", "leasehold-system", "namespace of the Leases")
		prefix         = flag.String("prefix", "mp", "Lease name prefix")
		key            = flag.String("key", "", "the key to lock (required)")
		leaseDuration  = flag.Duration("lease-duration", 5*time.Second, "Options.LeaseDuration")
		acquireTimeout = flag.Duration("acquire-timeout", 30*time.Second, "deadline of each acquire command")
		recorder       = flag.String("recorder", "", "URL the step command posts records to")
		verbose        = flag.Int("v", 1, "verbosity of the library's log on stderr")
	)
	flag.Parse()
	if *kubeconfig == "" || *identity == "" || *key == "" {
		fatal("-kubeconfig, -identity (or POD_NAME) and -key are required")
	}

	base, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fatal("load kubeconfig: " + err.Error())
	}
	cfg, err := kubeclient.Configure(base, kubeclient.Options{
		QPS: 100, Burst: 200, RequestTimeout: 5 * time.Second, UserAgent: "lockholder/" + *identity,
	})
	if err != nil {
		fatal(err.Error())
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fatal(err.Error())
	}

	h := &holder{key: *key, recorder: *recorder, acquireTimeout: *acquireTimeout}
	h.calls = &countingClient{next: cs.CoordinationV1(), h: h}
	h.reg = prometheus.NewRegistry()
	h.locker, err = lease.New(h.calls, lease.Options{
		Namespace:     *namespace,
		Identity:      *identity,
		Prefix:        *prefix,
		LeaseDuration: *leaseDuration,
		Registerer:    h.reg,
	})
	if err != nil {
		fatal(err.Error())
	}
	// The library's own log (takeovers, failed renewals) goes to stderr,
	// which the test shows when it fails.
	h.log = funcr.New(func(prefix, args string) {
		fmt.Fprintf(os.Stderr, "%s %s %s\n", time.Now().Format("15:04:05.000000"), prefix, args)
	}, funcr.Options{Verbosity: *verbose})
	h.run(*identity)
}

// holder is the state of one child: its Locker and at most one Lock.
type holder struct {
	key            string
	recorder       string
	acquireTimeout time.Duration
	locker         *lease.Locker
	calls          *countingClient
	reg            *prometheus.Registry
	log            logr.Logger

	out sync.Mutex // serialises stdout lines

	lk        atomic.Pointer[lease.Lock] // the lock held, if any
	acquiring atomic.Bool                // an acquire command is running
	waiting   atomic.Bool                // WAITING not yet reported for the running acquire
	renewals  atomic.Int64               // successful renewals of the current lock
	steps     int
}

func (h *holder) emit(format string, args ...any) {
	h.out.Lock()
	defer h.out.Unlock()
	fmt.Printf(format+"\n", args...)
}

func fatal(msg string) {
	fmt.Printf("FATAL msg=%s\n", strconv.Quote(msg))
	os.Exit(1)
}

func (h *holder) run(identity string) {
	cmds := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- sc.Text()
		}
		close(cmds)
	}()
	h.emit("READY identity=%s", identity)
	for cmd := range cmds {
		switch cmd {
		case "acquire":
			h.startAcquire(true)
		case "try":
			h.startAcquire(false)
		case "step":
			h.step()
		case "release":
			h.release()
		case "exit":
			if err := h.locker.Close(); err != nil {
				fatal("close: " + err.Error())
			}
			os.Exit(0)
		default:
			fatal("unknown command " + strconv.Quote(cmd))
		}
	}
	os.Exit(2) // stdin closed: the test is gone
}

// startAcquire runs Acquire (or TryAcquire) in the background, so the
// process keeps reading commands while it waits.
func (h *holder) startAcquire(wait bool) {
	if h.lk.Load() != nil || !h.acquiring.CompareAndSwap(false, true) {
		fatal("acquire while holding or acquiring")
	}
	h.waiting.Store(wait)
	go func() {
		defer h.acquiring.Store(false)
		ctx, cancel := context.WithTimeout(logr.NewContext(context.Background(), h.log), h.acquireTimeout)
		defer cancel()
		calls0, m0 := h.calls.snapshot(), h.metrics()
		var lk *lease.Lock
		var err error
		if wait {
			lk, err = h.locker.Acquire(ctx, h.key)
		} else {
			lk, err = h.locker.TryAcquire(ctx, h.key)
		}
		at := time.Now().UnixNano()
		h.waiting.Store(false)
		if err != nil {
			if !wait && errors.Is(err, lease.ErrHeld) {
				h.emit("HELD")
				return
			}
			h.emit("FAILED error=%s msg=%s", class(err), strconv.Quote(err.Error()))
			return
		}
		calls, m := h.calls.snapshot().minus(calls0), h.metrics().minus(m0)
		path := "unknown"
		for _, p := range []string{"create", "takeover", "handoff"} {
			if m["acquisitions_total/"+p] == 1 {
				path = p
			}
		}
		h.renewals.Store(0)
		h.lk.Store(lk)
		h.emit("ACQUIRED token=%s holder=%s path=%s at=%d creates=%d updates=%d gets=%d watches=%d deletes=%d takeovers=%d contention=%d apierrors=%d",
			lk.Token(), lk.Holder(), path, at, calls.creates, calls.updates, calls.gets, calls.watches, calls.deletes,
			int(m["takeovers_total"]), int(m["contention_total"]), int(m["api_errors_total"]))
		go func() {
			<-lk.Context().Done()
			h.emit("ENDED cause=%s", class(context.Cause(lk.Context())))
		}()
	}()
}

// step is one protected write: check Err, then write with the token. The
// write is sent even when Err reports a loss, because that is what a write
// already in flight when the process was paused does; the recorder's token
// check is what must stop it.
func (h *holder) step() {
	lk := h.lk.Load()
	if lk == nil {
		fatal("step without a lock")
	}
	// Whether Context was already done, read just before Err: it must
	// never lag behind Err, even before the renewer's timer has fired.
	ctxState := "live"
	if lk.Context().Err() != nil {
		ctxState = "done"
	}
	h.emit("ERR err=%s context=%s", class(lk.Err()), ctxState)
	h.steps++
	body, _ := json.Marshal(map[string]any{
		"key": h.key, "token": lk.Token().String(), "holder": lk.Holder(), "step": h.steps,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.recorder+"/record", bytes.NewReader(body))
	if err != nil {
		fatal(err.Error())
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fatal("record: " + err.Error())
	}
	_ = resp.Body.Close()
	result := "rejected"
	if resp.StatusCode == http.StatusOK {
		result = "accepted"
	}
	h.emit("RECORD result=%s status=%d step=%d", result, resp.StatusCode, h.steps)
}

func (h *holder) release() {
	lk := h.lk.Load()
	if lk == nil {
		fatal("release without a lock")
	}
	start := time.Now().UnixNano()
	err := lk.Release(context.Background())
	end := time.Now().UnixNano()
	h.lk.Store(nil)
	h.emit("RELEASED error=%s start=%d end=%d", class(err), start, end)
}

// class names an error by the sentinel it matches, for the protocol.
func class(err error) string {
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, lease.ErrLost):
		return "lost"
	case errors.Is(err, lease.ErrClosed):
		return "closed"
	case errors.Is(err, lease.ErrReleased):
		return "released"
	case errors.Is(err, lease.ErrHeld):
		return "held"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	default:
		return "other"
	}
}

// metrics returns the current value of every counter, keyed by name
// without the namespace prefix and, for labelled counters, also by
// "name/label value"; unlabelled sums are under the bare name.
func (h *holder) metrics() counters {
	mfs, err := h.reg.Gather()
	if err != nil {
		fatal("gather metrics: " + err.Error())
	}
	c := counters{}
	for _, mf := range mfs {
		name := mf.GetName()
		const ns = "leasehold_lock_"
		if len(name) > len(ns) && name[:len(ns)] == ns {
			name = name[len(ns):]
		}
		for _, m := range mf.GetMetric() {
			if m.GetCounter() == nil {
				continue
			}
			v := m.GetCounter().GetValue()
			c[name] += v
			for _, lp := range m.GetLabel() {
				c[name+"/"+lp.GetValue()] += v
			}
		}
	}
	return c
}

type counters map[string]float64

func (c counters) minus(o counters) counters {
	d := counters{}
	for k, v := range c {
		d[k] = v - o[k]
	}
	return d
}

// countingClient counts the API calls the Locker makes, so the test can
// assert how many writes an acquisition took, and reports watches and
// renewals as events.
type countingClient struct {
	next coordinationv1client.LeasesGetter
	h    *holder

	creates, updates, gets, watches, deletes atomic.Int64
}

type callCounts struct{ creates, updates, gets, watches, deletes int64 }

func (c *countingClient) snapshot() callCounts {
	return callCounts{c.creates.Load(), c.updates.Load(), c.gets.Load(), c.watches.Load(), c.deletes.Load()}
}

func (a callCounts) minus(b callCounts) callCounts {
	return callCounts{a.creates - b.creates, a.updates - b.updates, a.gets - b.gets, a.watches - b.watches, a.deletes - b.deletes}
}

func (c *countingClient) Leases(namespace string) coordinationv1client.LeaseInterface {
	return &countingLeases{LeaseInterface: c.next.Leases(namespace), c: c}
}

type countingLeases struct {
	coordinationv1client.LeaseInterface
	c *countingClient
}

func (l *countingLeases) Create(ctx context.Context, obj *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error) {
	l.c.creates.Add(1)
	return l.LeaseInterface.Create(ctx, obj, opts)
}

func (l *countingLeases) Update(ctx context.Context, obj *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	l.c.updates.Add(1)
	got, err := l.LeaseInterface.Update(ctx, obj, opts)
	// A successful Update naming the holder of the lock we already hold is
	// a renewal; the takeover Update happens before the lock is stored.
	if lk := l.c.h.lk.Load(); err == nil && lk != nil && got.Spec.HolderIdentity != nil && *got.Spec.HolderIdentity == lk.Holder() {
		l.c.h.emit("RENEWED n=%d", l.c.h.renewals.Add(1))
	}
	return got, err
}

func (l *countingLeases) Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error) {
	l.c.gets.Add(1)
	return l.LeaseInterface.Get(ctx, name, opts)
}

func (l *countingLeases) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	l.c.deletes.Add(1)
	return l.LeaseInterface.Delete(ctx, name, opts)
}

func (l *countingLeases) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	l.c.watches.Add(1)
	w, err := l.LeaseInterface.Watch(ctx, opts)
	// The watch call returns once the API server has accepted it: from
	// here on a change of the Lease wakes the waiter.
	if err == nil && l.c.h.waiting.CompareAndSwap(true, false) {
		l.c.h.emit("WAITING")
	}
	return w, err
}
