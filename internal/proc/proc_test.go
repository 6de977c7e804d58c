package proc

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func start(t *testing.T, script string) *Process {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(Spec{Name: "sh", Path: sh, Args: []string{"-c", script}, LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(time.Second) })
	return p
}

func TestStopGracefulAndOutputKept(t *testing.T) {
	p := start(t, `trap 'echo bye; exit 0' TERM; echo hello; while :; do sleep 0.05; done`)
	waitOutput(t, p, "hello")
	if err := p.Stop(5 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !strings.Contains(p.Tail(100), "bye") {
		t.Fatalf("log %q lacks the TERM handler's output", p.Tail(100))
	}
	if err := p.Stop(time.Second); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	p := start(t, `trap '' TERM; echo trapped; while :; do sleep 0.05; done`)
	// A TERM that arrives before the trap is set ends the shell at once.
	waitOutput(t, p, "trapped")
	err := p.Stop(200 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Stop = %v, want a kill", err)
	}
	var exit *exec.ExitError
	if !errors.As(p.ExitErr(), &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("exit = %v, want SIGKILL", p.ExitErr())
	}
}

func TestWaitReadyFailsWhenProcessExits(t *testing.T) {
	p := start(t, `echo boom; exit 3`)
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = p.WaitReady(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("WaitReady = %v", err)
	}
}

func TestPauseResume(t *testing.T) {
	p := start(t, `while :; do sleep 0.05; done`)
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGTERM); err == nil {
		t.Fatal("signalled an exited process")
	}
}

// waitOutput waits until the process has written want.
func waitOutput(t *testing.T, p *Process, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.Tail(1000), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output: %q", want, p.Tail(1000))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
