//go:build integration

package stack

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/proc"
	"github.com/leasehold/leasehold/internal/storm"
)

// A service killed while the stack is up is reported once, with its log;
// the demo still completes over the surviving gateways but its summary
// fails for that exit alone; Stop does not report it again, stops the
// rest and removes the data folder.
func TestStackReportsExitedService(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "leasehold")
	if err := proc.Build(t.Context(), "../..", "./cmd/leasehold", bin, proc.RaceEnabled()); err != nil {
		t.Fatal(err)
	}
	s, err := Up(t.Context(), Options{Executable: bin, Namespace: "stack-exit", Gateways: 2, Orchestrators: 1})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = s.Stop()
		}
	})
	if err := s.StartServices(t.Context()); err != nil {
		t.Fatal(err)
	}
	svcs := s.Services()
	var names []string
	for _, svc := range svcs {
		names = append(names, svc.Name)
	}
	if got := strings.Join(names, " "); got != "gw-0 gw-1 orchestrator-0 executor-0" {
		t.Fatalf("services = %s", got)
	}

	victim := svcs[1]
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-s.Exits():
		if e.Name != "gw-1" || e.PID != victim.PID || e.Status == nil || !strings.Contains(e.Status.Error(), "killed") || e.LogPath != victim.LogPath {
			t.Errorf("exit = %+v, want gw-1 (pid %d) killed, log %s", e, victim.PID, victim.LogPath)
		}
		if !strings.Contains(e.Tail, "gateway listening on http://127.0.0.1:") {
			t.Errorf("exit's log tail lacks the gateway's start-up line:\n%s", e.Tail)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the killed gateway was not reported on Exits")
	}

	sum, err := s.Demo(t.Context(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Acknowledged != sum.Signals {
		t.Errorf("%d of %d signals acknowledged with one gateway down, want all: storms retry on the next gateway", sum.Acknowledged, sum.Signals)
	}
	err = sum.Check()
	if !errors.Is(err, ErrProcessExited) {
		t.Fatalf("Check = %v, want ErrProcessExited", err)
	}
	for _, other := range []error{storm.ErrUnacknowledged, storm.ErrNotVerified, storm.ErrDuplicates, storm.ErrCountsNotExact,
		ErrNotTerminal, ErrConcurrentExecutions, ErrDuplicateExecutions, ErrMissingExecutions, ErrWatchIncomplete} {
		if errors.Is(err, other) {
			t.Errorf("Check = %v, which also says %v", err, other)
		}
	}
	if n := len(s.Exited()); n != 1 {
		t.Errorf("Exited has %d entries, want 1", n)
	}

	dir := s.DataDir()
	stopped = true
	if err := s.Stop(); err != nil {
		t.Errorf("Stop = %v, want nil: the killed gateway was already reported, the rest exit cleanly on SIGTERM", err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop = %v, want nil", err)
	}
	for _, svc := range svcs {
		if err := syscall.Kill(svc.PID, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still exists after Stop (kill 0: %v)", svc.Name, svc.PID, err)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data folder %s still exists after Stop (stat: %v)", dir, err)
	}
}

// A service that cannot start fails StartServices with ErrNotReady and its
// log; Stop stops the others, which exit cleanly, without error, and adds
// the one that failed to Exited.
func TestStartServicesNotReady(t *testing.T) {
	// Stands in for leasehold: gw-0 fails at once, the others run until
	// SIGTERM and then exit 0.
	script := filepath.Join(t.TempDir(), "fake-leasehold")
	err := os.WriteFile(script, []byte(`#!/bin/sh
case " $* " in
*" --identity gw-0 "*) echo "gw-0: cannot start" >&2; exit 3;;
esac
trap 'exit 0' TERM
sleep 600 &
wait
`), 0o755)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Up(t.Context(), Options{Executable: script, Namespace: "stack-not-ready", ReadyTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = s.StartServices(t.Context())
	if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "gw-0: cannot start") || !strings.Contains(err.Error(), "exited before it was ready") {
		t.Errorf("StartServices = %v, want ErrNotReady with gw-0's log", err)
	}
	svcs := s.Services()
	if err := s.Stop(); err != nil {
		t.Errorf("Stop = %v, want nil", err)
	}
	exited := s.Exited()
	if len(exited) != 1 || exited[0].Name != "gw-0" || exited[0].Status == nil || !strings.Contains(exited[0].Status.Error(), "exit status 3") {
		t.Errorf("Exited = %+v, want gw-0 with exit status 3", exited)
	}
	for _, svc := range svcs {
		if err := syscall.Kill(svc.PID, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still exists after Stop (kill 0: %v)", svc.Name, svc.PID, err)
		}
	}
}
