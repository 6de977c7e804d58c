//go:build integration

package lease_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/controlplane"
	"github.com/leasehold/leasehold/lease"
)

const namespace = "leasehold-system"

var (
	// kubeconfigPath is the control plane's kubeconfig, written for the
	// children.
	kubeconfigPath string
	// lockholderPath is the child binary, built once per run.
	lockholderPath string
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

// run exists so that deferred cleanup runs before os.Exit.
func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "leasehold-multiprocess-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	lockholderPath = filepath.Join(dir, "lockholder")
	if err := buildLockholder(lockholderPath); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return controlplane.Run(m, controlplane.Options{Namespaces: []string{namespace}}, func(cp *controlplane.ControlPlane) error {
		kubeconfigPath = filepath.Join(dir, "kubeconfig")
		return os.WriteFile(kubeconfigPath, cp.Kubeconfig(), 0o600)
	})
}

// buildLockholder builds the child with the race detector when this test
// binary has it, so that `go test -race` checks the children too.
func buildLockholder(out string) error {
	args := []string{"build", "-o", out}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "-race" && s.Value == "true" {
				args = append(args, "-race")
			}
		}
	}
	args = append(args, "./lockholder")
	cmd := exec.Command("go", args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return nil
}

var keySeq atomic.Int64

// uniqueKey returns a key no earlier test (or earlier -count iteration)
// used, since all share one control plane.
func uniqueKey(t *testing.T) string {
	return fmt.Sprintf("%s/%d/%d", t.Name(), os.Getpid(), keySeq.Add(1))
}

// message is one event line of a child: "VERB k=v k=v ...".
type message struct {
	verb   string
	fields map[string]string
	raw    string
	read   time.Time // when the test read it
}

func parseMessage(line string) (message, error) {
	m := message{fields: map[string]string{}, raw: line, read: time.Now()}
	verb, rest, _ := strings.Cut(line, " ")
	m.verb = verb
	for rest = strings.TrimSpace(rest); rest != ""; rest = strings.TrimSpace(rest) {
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			return m, fmt.Errorf("malformed field in %q", line)
		}
		if strings.HasPrefix(v, `"`) {
			q, err := strconv.QuotedPrefix(v)
			if err != nil {
				return m, fmt.Errorf("malformed quoted field in %q: %w", line, err)
			}
			m.fields[k], _ = strconv.Unquote(q)
			rest = v[len(q):]
			continue
		}
		v, rest, _ = strings.Cut(v, " ")
		m.fields[k] = v
	}
	return m, nil
}

func (m message) get(t *testing.T, k string) string {
	t.Helper()
	v, ok := m.fields[k]
	if !ok {
		t.Fatalf("%q has no field %s", m.raw, k)
	}
	return v
}

func (m message) int(t *testing.T, k string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(m.get(t, k), 10, 64)
	if err != nil {
		t.Fatalf("%q: field %s: %v", m.raw, k, err)
	}
	return n
}

func (m message) token(t *testing.T) lease.Token {
	t.Helper()
	tok, err := lease.ParseToken(m.get(t, "token"))
	if err != nil {
		t.Fatalf("%q: %v", m.raw, err)
	}
	return tok
}

// at is the child's own wall-clock timestamp in field k.
func (m message) at(t *testing.T, k string) time.Time {
	t.Helper()
	return time.Unix(0, m.int(t, k))
}

// harness starts the children of one test and wakes the test when any of
// them reports.
type harness struct {
	t    *testing.T
	wake chan struct{} // capacity 1: a pending wake-up is never lost
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, wake: make(chan struct{}, 1)}
}

// child is one lockholder process.
type child struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *lockedBuffer
	wake   chan struct{}
	done   chan struct{} // closed once stdout hit EOF and the process was reaped

	mu      sync.Mutex
	backlog []message // reported and not yet consumed by expect, in order
	waitErr error     // the process's exit status, once done
}

type childOptions struct {
	leaseDuration  time.Duration
	acquireTimeout time.Duration
	recorderURL    string
}

// start runs a child for key. It is killed (its whole process group) and
// reaped when the test ends, whatever happens.
func (h *harness) start(name, key string, o childOptions) *child {
	t := h.t
	t.Helper()
	args := []string{
		"-kubeconfig", kubeconfigPath,
		"-identity", name,
		"-namespace", namespace,
		"-key", key,
		"-lease-duration", o.leaseDuration.String(),
		"-acquire-timeout", o.acquireTimeout.String(),
	}
	if o.recorderURL != "" {
		args = append(args, "-recorder", o.recorderURL)
	}
	c := &child{name: name, stderr: &lockedBuffer{}, wake: h.wake, done: make(chan struct{})}
	c.cmd = exec.Command(lockholderPath, args...)
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.cmd.Stderr = c.stderr
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go c.read(stdout)
	t.Cleanup(func() {
		c.signal(syscall.SIGKILL)
		<-c.done
		if t.Failed() {
			c.mu.Lock()
			unread := ""
			for _, m := range c.backlog {
				unread += "\n\t" + m.raw
			}
			c.mu.Unlock()
			t.Logf("%s: exit %v; unread events: %s\nstderr:\n%s", c.name, c.waitErr, unread, c.stderr.String())
		}
	})
	c.expect(t, "READY", 30*time.Second)
	return c
}

func (c *child) read(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		m, err := parseMessage(sc.Text())
		if err != nil {
			m = message{verb: "FATAL", fields: map[string]string{"msg": err.Error()}, raw: sc.Text(), read: time.Now()}
		}
		c.mu.Lock()
		c.backlog = append(c.backlog, m)
		c.mu.Unlock()
		c.notify()
	}
	err := c.cmd.Wait()
	c.mu.Lock()
	c.waitErr = err
	c.mu.Unlock()
	close(c.done)
	c.notify()
}

func (c *child) notify() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// send writes one command line to the child.
func (c *child) send(t *testing.T, cmd string) {
	t.Helper()
	if _, err := io.WriteString(c.stdin, cmd+"\n"); err != nil {
		t.Fatalf("%s: send %q: %v", c.name, cmd, err)
	}
}

// signal signals the child's process group (it has only the child).
func (c *child) signal(sig syscall.Signal) {
	_ = syscall.Kill(-c.cmd.Process.Pid, sig)
}

// take removes and returns the first unconsumed event with verb. It fails
// the test on a FATAL event, and reports whether the process has exited.
func (c *child) take(t *testing.T, verb string) (m message, found, exited bool) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.backlog {
		// A FATAL child cannot go on; a FAILED acquire will never be
		// followed by the ACQUIRED being waited for.
		if m.verb == "FATAL" || (verb == "ACQUIRED" && m.verb == "FAILED") {
			t.Fatalf("%s: %s", c.name, m.raw)
		}
		if m.verb == verb {
			c.backlog = slices.Delete(c.backlog, i, i+1)
			return m, true, false
		}
	}
	select {
	case <-c.done:
		return message{}, false, true
	default:
		return message{}, false, false
	}
}

// has reports whether an unconsumed event with verb is waiting, without
// consuming it.
func (c *child) has(verb string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.backlog, func(m message) bool { return m.verb == verb })
}

// expect waits up to timeout for the child's next event with verb. Events
// with other verbs stay for later expects.
func (c *child) expect(t *testing.T, verb string, timeout time.Duration) message {
	t.Helper()
	_, m := expectAny(t, []*child{c}, verb, timeout)
	return m
}

// expectAny waits up to timeout for an event with verb from any of cs (all
// started by one harness) and returns the first child found to have one.
func expectAny(t *testing.T, cs []*child, verb string, timeout time.Duration) (*child, message) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		alive := 0
		for _, c := range cs {
			m, found, exited := c.take(t, verb)
			if found {
				return c, m
			}
			if !exited {
				alive++
			}
		}
		if alive == 0 {
			t.Fatalf("waiting for %s: %s exited", verb, names(cs))
		}
		select {
		case <-cs[0].wake:
		case <-deadline.C:
			t.Fatalf("no %s from %s within %v", verb, names(cs), timeout)
		}
	}
}

func names(cs []*child) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.name)
	}
	return strings.Join(s, ", ")
}

// exit asks the child to close its Locker and exit, and checks it did so
// cleanly.
func (c *child) exit(t *testing.T) {
	t.Helper()
	c.send(t, "exit")
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not exit", c.name)
	}
	c.mu.Lock()
	err := c.waitErr
	c.mu.Unlock()
	if err != nil {
		t.Fatalf("%s exited with %v\nstderr:\n%s", c.name, err, c.stderr.String())
	}
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

// record is one protected write, as a child sends it to the recorder.
type record struct {
	Key    string `json:"key"`
	Token  string `json:"token"`
	Holder string `json:"holder"`
	Step   int    `json:"step"`
}

// recorder stands for the resource a lock protects: it accepts a write only
// if its token is at least the highest it has accepted for the key. That
// check, not the lock alone, is what stops a stale holder's write.
type recorder struct {
	srv *httptest.Server

	mu       sync.Mutex
	highest  map[string]lease.Token
	accepted []record
	rejected []record
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{highest: map[string]lease.Token{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/record" {
		http.NotFound(w, req)
		return
	}
	var rec record
	if err := json.NewDecoder(req.Body).Decode(&rec); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	tok, err := lease.ParseToken(rec.Token)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if hi, ok := r.highest[rec.Key]; ok {
		c, err := tok.Compare(hi)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if c < 0 {
			r.rejected = append(r.rejected, rec)
			http.Error(w, fmt.Sprintf("token %s is older than %s", tok, hi), http.StatusConflict)
			return
		}
	}
	r.highest[rec.Key] = tok
	r.accepted = append(r.accepted, rec)
	w.WriteHeader(http.StatusOK)
}

func (r *recorder) records() (accepted, rejected []record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.accepted), slices.Clone(r.rejected)
}

// newer fails the test unless b's token is strictly newer than a's.
func newer(t *testing.T, a, b lease.Token) {
	t.Helper()
	c, err := b.Compare(a)
	if err != nil {
		t.Fatal(err)
	}
	if c <= 0 {
		t.Fatalf("token %s is not newer than %s", b, a)
	}
}

// takeAll removes and returns every unconsumed event with verb, in order.
func (c *child) takeAll(verb string) []message {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []message
	c.backlog = slices.DeleteFunc(c.backlog, func(m message) bool {
		if m.verb == verb {
			out = append(out, m)
			return true
		}
		return false
	})
	return out
}
