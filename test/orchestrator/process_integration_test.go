//go:build integration

package orchestrator_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is one child process: an orchestrator replica or the executor.
type proc struct {
	name      string
	cmd       *exec.Cmd
	out       *lockedBuffer // stdout and stderr, interleaved
	probeAddr string
	done      chan struct{} // closed once the process was reaped

	mu      sync.Mutex
	waitErr error
}

// startAttempts bounds the restarts of a child that lost the race for a port
// picked free (another process bound it between our check and its bind).
const startAttempts = 3

// procSpec is a child to start: `leasehold <args...>` with --identity name.
type procSpec struct {
	name string
	args []string
}

// startReady starts every child at once, with free metrics and health
// ports, and waits until each one's /readyz answers 200. Every process (its
// whole process group) is killed and reaped when the test ends, whatever
// happens.
func startReady(t *testing.T, specs ...procSpec) []*proc {
	t.Helper()
	ps := make([]*proc, len(specs))
	for i, s := range specs {
		ps[i] = start(t, s.name, s.args...)
	}
	for i, s := range specs {
		for attempt := 1; ; attempt++ {
			err := ps[i].waitReady(t.Context(), 90*time.Second)
			if err == nil {
				break
			}
			if attempt < startAttempts && ps[i].exited() && strings.Contains(ps[i].out.String(), "address already in use") {
				t.Logf("%s: a picked port was taken meanwhile; starting again", s.name)
				ps[i] = start(t, s.name, s.args...)
				continue
			}
			t.Fatalf("%s: %v\noutput:\n%s", s.name, err, tail(ps[i].out.String(), 80))
		}
	}
	return ps
}

func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	ports := freePorts(t, 2)
	p := &proc{
		name:      name,
		out:       &lockedBuffer{},
		probeAddr: ports[1],
		done:      make(chan struct{}),
	}
	args = append(args,
		"--kubeconfig", kubeconfigPath,
		"--identity", name,
		"--metrics-bind-address", ports[0],
		"--health-probe-bind-address", ports[1],
	)
	p.cmd = exec.Command(binaryPath, args...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		err := p.cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("--- %s (exit: %v), last output:\n%s", p.name, p.exitErr(), tail(p.out.String(), 80))
		}
	})
	return p
}

// freePorts returns n loopback addresses whose ports were free a moment
// ago. All are held open until all are picked, so they are distinct.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

// waitReady polls /readyz until it answers 200, the process exits, or
// timeout passes.
func (p *proc) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := "http://" + p.probeAddr + "/readyz"
	hc := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := "no answer yet"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited before it was ready: %v", p.exitErr())
		case <-ctx.Done():
			return fmt.Errorf("not ready within %v (last /readyz: %s)", timeout, last)
		case <-tick.C:
		}
	}
}

func (p *proc) signal(sig syscall.Signal) {
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// kill kills the process with SIGKILL and waits until it is reaped.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	p.signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not reaped 10s after SIGKILL", p.name)
	}
}

// stop sends SIGTERM and checks that the process exits 0 in time, having
// printed its startup line.
func (p *proc) stop(t *testing.T, startupLine string) {
	t.Helper()
	if !strings.Contains(p.out.String(), startupLine) {
		t.Errorf("%s: no startup line %q in its output", p.name, startupLine)
	}
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(45 * time.Second):
		t.Errorf("%s: still running 45s after SIGTERM", p.name)
		return
	}
	if err := p.exitErr(); err != nil {
		t.Errorf("%s: exit after SIGTERM: %v, want status 0\nlast output:\n%s", p.name, err, tail(p.out.String(), 40))
	}
}

// checkAlive fails the test if any of ps has exited.
func checkAlive(t *testing.T, ps ...*proc) {
	t.Helper()
	for _, p := range ps {
		if p.exited() {
			t.Fatalf("%s exited unexpectedly: %v\nlast output:\n%s", p.name, p.exitErr(), tail(p.out.String(), 80))
		}
	}
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = append([]string{fmt.Sprintf("[%d earlier lines]", len(ls)-lines)}, ls[len(ls)-lines:]...)
	}
	return strings.Join(ls, "\n")
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
