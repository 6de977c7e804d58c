// Package proc starts and stops the project's services as real OS
// processes: for the local stack, the end-to-end tests and the fault
// tests, which must kill, pause and restart replicas for real.
//
// Every process gets its own process group and, on Linux, a parent-death
// signal, so that nothing outlives the program that started it, even when
// that program is killed.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Spec describes one process.
type Spec struct {
	// Name identifies the process in errors and names its log file.
	Name string
	// Path of the executable and its arguments.
	Path string
	Args []string
	// Env is added to the parent's environment.
	Env []string
	// LogDir receives <Name>.log with the process's stdout and stderr.
	// Required.
	LogDir string
}

// Process is a started process.
type Process struct {
	Spec
	cmd     *exec.Cmd
	logPath string
	logFile *os.File

	done    chan struct{} // closed when the process has exited
	waitErr error

	mu      sync.Mutex
	stopped bool
}

// Start starts the process described by spec.
func Start(spec Spec) (*Process, error) {
	if spec.Name == "" || spec.Path == "" || spec.LogDir == "" {
		return nil, errors.New("proc: Name, Path and LogDir are required")
	}
	logPath := filepath.Join(spec.LogDir, spec.Name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("proc: %w", err)
	}
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("proc: start %s: %w", spec.Name, err)
	}
	p := &Process{Spec: spec, cmd: cmd, logPath: logPath, logFile: f, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// PID of the process.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitErr is the result of the process once Done is closed.
func (p *Process) ExitErr() error {
	<-p.done
	return p.waitErr
}

// LogPath is the file that holds the process's output.
func (p *Process) LogPath() string { return p.logPath }

// Tail returns the last n bytes of the process's output, for error messages.
func (p *Process) Tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Signal sends sig to the process's group (the process and anything it
// started).
func (p *Process) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return fmt.Errorf("proc: %s already exited", p.Name)
	default:
	}
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// Kill ends the process at once (SIGKILL) and waits for it to be reaped.
func (p *Process) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.done
	return nil
}

// Pause stops the process (SIGSTOP) until Resume.
func (p *Process) Pause() error { return p.Signal(syscall.SIGSTOP) }

// Resume continues a paused process (SIGCONT).
func (p *Process) Resume() error { return p.Signal(syscall.SIGCONT) }

// Stop asks the process to end (SIGTERM, after SIGCONT in case it is
// paused) and kills it if it has not exited within grace. It returns the
// process's exit error for a graceful exit, and an error naming the kill
// otherwise. Stop is idempotent.
func (p *Process) Stop(grace time.Duration) error {
	p.mu.Lock()
	first := !p.stopped
	p.stopped = true
	p.mu.Unlock()
	select {
	case <-p.done:
		if first {
			return p.waitErr
		}
		return nil
	default:
	}
	_ = p.Signal(syscall.SIGCONT)
	_ = p.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return p.waitErr
	case <-t.C:
		_ = p.Kill()
		return fmt.Errorf("proc: %s did not exit within %v of SIGTERM and was killed", p.Name, grace)
	}
}

// WaitReady polls url until it answers 200, the process exits, or ctx ends.
func (p *Process) WaitReady(ctx context.Context, url string) error {
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("proc: %s exited before it was ready (%v):\n%s", p.Name, p.waitErr, p.Tail(4096))
		case <-ctx.Done():
			return fmt.Errorf("proc: %s not ready at %s: %w\n%s", p.Name, url, ctx.Err(), p.Tail(4096))
		case <-tick.C:
		}
	}
}

// FreePort returns a loopback TCP port that was free a moment ago. Another
// process may take it before it is used; callers that start servers on it
// report the failure.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Build compiles the main package pkg (such as "./cmd/leasehold", relative to
// dir) into out. With race the binary has the race detector, so that tests run
// under -race check their child processes too.
func Build(ctx context.Context, dir, pkg, out string, race bool) error {
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	args = append(args, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, output.String())
	}
	return nil
}

// RaceEnabled reports whether the running binary was built with -race.
func RaceEnabled() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}
