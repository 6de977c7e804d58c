//go:build integration

package dedup_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/dedup"
	"github.com/leasehold/leasehold/lease"
)

// TestAPIServerKilledUnderStorm kills the API server with SIGKILL while
// three replicas count a storm of signals, as senders that resend every
// signal answered 5xx until it is acknowledged (Alertmanager does), and
// starts it again on the same port and data 3s after it is gone. Writes in flight at the kill
// lose their connections and are read back; the server is back well
// within MaxOutcomeWait, so each of them becomes learnable and none may
// be answered 504 (ErrUnknownOutcome). Then every signal is acknowledged
// in the end, and each incident has exactly one request whose count is
// exactly its acknowledged signals.
//
// The replicas' clients are built from the control plane's configuration,
// through internal/kubeclient, as the gateway builds its own.
func TestAPIServerKilledUnderStorm(t *testing.T) {
	ns := newNamespace(t)
	var (
		replicas []*dedup.Recorder
		settled  atomic.Int64 // ambiguous writes whose read back settled them
	)
	for i := range 3 {
		replicas = append(replicas, newKubeclientRecorder(t, ns, fmt.Sprintf("gw-%d", i), &settled))
	}
	const (
		incidents = 12
		senders   = 24
		// The port refuses connections this long after the killed
		// process is gone, until the supervisor (kubelet, systemd)
		// starts the server again.
		restartDelay = 3 * time.Second
		// A signal whose every answer in this long is 5xx fails the test:
		// the outage lasts seconds.
		resendFor = 2 * time.Minute
	)
	type answer struct {
		at   time.Time
		code int
	}
	var (
		mu       sync.Mutex
		answers  []answer
		acked    = make([]int64, incidents)
		sent     = make([]int64, incidents)
		stop     = make(chan struct{})
		storming sync.WaitGroup
	)
	for s := range senders {
		storming.Go(func() {
			inc := s % incidents
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				until := time.Now().Add(resendFor)
				for a := 0; ; a++ {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					_, err := replicas[(s+a)%len(replicas)].Record(ctx, incidentFor(inc))
					cancel()
					mu.Lock()
					sent[inc]++
					answers = append(answers, answer{at: time.Now(), code: httpCode(err)})
					if err == nil {
						acked[inc]++
					}
					mu.Unlock()
					if err == nil {
						break
					}
					if time.Now().After(until) {
						t.Errorf("incident %d: a signal was not acknowledged in %v: %v", inc, resendFor, err)
						return
					}
					<-time.After(min(100*time.Millisecond<<a, time.Second))
				}
			}
		})
	}

	<-time.After(2 * time.Second)
	pid := apiServerPID(t)
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		close(stop)
		storming.Wait()
		t.Fatalf("kill kube-apiserver %d: %v", pid, err)
	}
	readyAt := make(chan time.Time, 1)
	go func() { readyAt <- waitReady(t, killed) }()
	gone := restartAfterKill(t, pid, restartDelay)
	ready := <-readyAt
	// Keep the storm going past the time a read stalled by the starting
	// server's Retry-After: 5 would have failed.
	<-time.After(8 * time.Second)
	close(stop)
	storming.Wait()

	var (
		fiveXX, fiveXXAfter, timeouts, timeoutsAfter, total int
		last5xx, lastAny5xx                                 time.Time
	)
	mu.Lock()
	for _, a := range answers {
		total++
		if a.code == 504 {
			timeouts++
		}
		if a.code >= 500 {
			fiveXX++
			if a.at.After(lastAny5xx) {
				lastAny5xx = a.at
			}
		}
		if a.code >= 500 && a.at.After(ready) {
			fiveXXAfter++
			if a.code == 504 {
				timeoutsAfter++
			}
			if a.at.After(last5xx) {
				last5xx = a.at
			}
		}
	}
	mu.Unlock()
	late := time.Duration(0)
	if !last5xx.IsZero() {
		late = last5xx.Sub(ready)
	}
	t.Logf("API server killed, gone %.1fs later, started again %v after that, ready again (/readyz) %.1fs after the kill; the last 5xx answered %.1fs after the kill",
		gone.Sub(killed).Seconds(), restartDelay, ready.Sub(killed).Seconds(), max(lastAny5xx.Sub(killed), 0).Seconds())
	t.Logf("%d answers: %d were 5xx, %d of them 504 (%d after ready); %d were 5xx after ready, the last %.2fs after ready",
		total, fiveXX, timeouts, timeoutsAfter, fiveXXAfter, late.Seconds())
	t.Logf("%d ambiguous writes settled by reading them back", settled.Load())
	if settled.Load() == 0 && timeouts == 0 {
		t.Error("no write was in flight at the kill: the test proved nothing")
	}

	if timeoutsAfter > 0 {
		t.Errorf("%d signals answered 504 after the API server was ready again", timeoutsAfter)
	}
	// Every write in flight at the kill was sent less than a write's
	// deadline before it, so its read back lasts past kill + budget.
	if outage := ready.Sub(killed); outage < dedup.MaxOutcomeWait-10*time.Second {
		if timeouts > 0 {
			t.Errorf("%d signals answered 504 although the API server was back %.1fs after the kill, within the read back's budget",
				timeouts, outage.Seconds())
		}
	} else {
		t.Logf("the outage (%v) outlasted the read back's budget: 504s are allowed", outage)
	}
	checkCounts(t, ns, acked, sent)
}

// checkCounts asserts one request per incident, with acknowledged <=
// occurrenceCount <= sent; all acknowledged here, so that is exact.
func checkCounts(t *testing.T, ns string, acked, sent []int64) {
	t.Helper()
	c, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	var list v1alpha1.RemediationRequestList
	if err := c.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	per := map[string][]v1alpha1.RemediationRequest{}
	for _, rr := range list.Items {
		per[rr.Spec.Fingerprint] = append(per[rr.Spec.Fingerprint], rr)
	}
	if len(list.Items) != len(acked) {
		t.Errorf("%d requests, want %d (one per incident)", len(list.Items), len(acked))
	}
	for i := range acked {
		rrs := per[incidentFor(i).Fingerprint]
		if len(rrs) != 1 {
			t.Errorf("incident %d: %d requests, want 1", i, len(rrs))
			continue
		}
		got := rrs[0].EffectiveDeduplication().OccurrenceCount
		t.Logf("incident %d: sent %d, acknowledged %d, occurrenceCount %d", i, sent[i], acked[i], got)
		if got < acked[i] || got > sent[i] {
			t.Errorf("incident %d: occurrenceCount %d outside [acknowledged %d, sent %d]", i, got, acked[i], sent[i])
		} else if got != acked[i] {
			t.Errorf("incident %d: occurrenceCount %d, want exactly the %d acknowledged signals", i, got, acked[i])
		}
	}
}

// httpCode is the gateway's answer to a Record error: 504 when the signal
// may have been counted, 503 (send again) for every other failure.
func httpCode(err error) int {
	switch {
	case err == nil:
		return 200
	case errors.Is(err, dedup.ErrUnknownOutcome):
		return 504
	}
	return 503
}

// newKubeclientRecorder is one replica's Recorder on clients configured
// as the gateway's are (cp.Config went through kubeclient.Configure).
// Each ambiguous write that its read back settled adds one to settled.
func newKubeclientRecorder(t *testing.T, ns, identity string, settled *atomic.Int64) *dedup.Recorder {
	t.Helper()
	cfg := rest.CopyConfig(cp.Config)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	locker, err := lease.New(cs.CoordinationV1(), lease.Options{Namespace: ns, Identity: identity, Prefix: "gw-lock"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { locker.Close() })
	// The Recorder logs each settled read back at V(1).
	log := funcr.New(func(_, args string) {
		if strings.Contains(args, " failed but was applied") || strings.Contains(args, " failed and was not applied") {
			settled.Add(1)
		}
	}, funcr.Options{Verbosity: 1})
	rec, err := dedup.New(c, locker, dedup.Options{Namespace: ns, Identity: identity, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dedup.MaxOutcomeWait)
		defer cancel()
		if err := rec.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return rec
}

// apiServerPID finds the control plane's kube-apiserver: the one process
// of that name whose command line names the control plane's folder (its
// certificate folder is inside).
func apiServerPID(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if filepath.Base(args[0]) == "kube-apiserver" && slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, cp.Dir()) }) {
			pids = append(pids, pid)
		}
	}
	if len(pids) != 1 {
		t.Fatalf("kube-apiserver processes of this control plane: %v, want one", pids)
	}
	return pids[0]
}

// restartAfterKill waits until the killed process is gone (on a loaded
// machine that can take a while, and its connections stay open until
// then), waits delay more, and starts the API server again; it returns
// when the process was gone. RestartAPIServer's stop is a no-op for an
// exited process, but it may see the process as running an instant after
// it was reaped, and then fails to signal it: that is tried again.
func restartAfterKill(t *testing.T, pid int, delay time.Duration) time.Time {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver %d still there 30s after SIGKILL", pid)
		}
		<-time.After(10 * time.Millisecond)
	}
	gone := time.Now()
	<-time.After(delay)
	var err error
	for range 3 {
		if err = cp.RestartAPIServer(); err == nil {
			return gone
		}
		<-time.After(200 * time.Millisecond)
	}
	t.Fatalf("restart kube-apiserver: %v", err)
	return gone
}

// waitReady polls the API server's /readyz from since until it answers
// ok, and returns when it first did.
func waitReady(t *testing.T, since time.Time) time.Time {
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Error(err)
		return since
	}
	for deadline := since.Add(2 * time.Minute); time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && string(body) == "ok" {
			return time.Now()
		}
		<-time.After(50 * time.Millisecond)
	}
	t.Error("the API server was not ready 2 minutes after the kill")
	return since
}
