//go:build integration

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/controlplane"
	"github.com/leasehold/leasehold/internal/proc"
)

// TestUp runs `leasehold up` the way a user does, as a real process built
// from this tree (with the race detector when the test has it, so that the
// services it starts are checked too), and checks that it cleans up after
// itself: no process it started survives it, no port stays bound, the data
// folder is gone.
func TestUp(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "leasehold")
	if err := proc.Build(t.Context(), "../..", "./cmd/leasehold", bin, proc.RaceEnabled()); err != nil {
		t.Fatal(err)
	}
	t.Run("Once", func(t *testing.T) { testUpOnce(t, bin) })
	t.Run("Interrupt", func(t *testing.T) { testUpInterrupt(t, bin) })
	t.Run("OutsideSourceTree", func(t *testing.T) { testUpOutsideSourceTree(t, bin) })
	t.Run("SlowStart", func(t *testing.T) { testUpSlowStart(t, bin) })
}

// testUpSlowStart: up whose control plane takes more than 30 s to start,
// as on a first run that builds it, prints no stack trace. controller-runtime
// prints its "log.SetLogger(...) was never called" trace the first time it
// logs 30 s after the process started, when it was given no logger; up's
// clients, made once the control plane is up, are such a first time.
func testUpSlowStart(t *testing.T, bin string) {
	assets, err := controlplane.Assets(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	slow := t.TempDir()
	if err := os.Symlink(filepath.Join(assets, "kube-apiserver"), filepath.Join(slow, "kube-apiserver")); err != nil {
		t.Fatal(err)
	}
	// etcd starts first; 31 s is within the control plane's start timeout.
	wrapper := fmt.Sprintf("#!/bin/sh\nsleep 31\nexec '%s' \"$@\"\n", filepath.Join(assets, "etcd"))
	if err := os.WriteFile(filepath.Join(slow, "etcd"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "LEASEHOLD_ASSETS_DIR" && k != "KUBEBUILDER_ASSETS" {
			env = append(env, kv)
		}
	}
	up := startUpIn(t, bin, "", append(env, "LEASEHOLD_ASSETS_DIR="+slow), "up", "--once", "--no-demo")
	code := up.wait(t, 5*time.Minute)
	out := up.out.String()
	if code != 0 {
		t.Fatalf("up --once --no-demo with a slow control plane exited %d:\n%s", code, out)
	}
	checkNoStackTrace(t, out)
	up.checkNothingLeft(t)
}

// checkNoStackTrace fails the test when up printed a stack trace, such as
// controller-runtime's "log.SetLogger(...) was never called" one.
func checkNoStackTrace(t *testing.T, out string) {
	t.Helper()
	for _, s := range []string{"SetLogger", "goroutine ", "Detected at:"} {
		if strings.Contains(out, s) {
			t.Errorf("output contains %q, a stack trace:\n%s", s, out)
		}
	}
}

// testUpOutsideSourceTree: the built binary, run from a folder outside any
// source tree with LEASEHOLD_ASSETS_DIR unset, finds the control plane in
// the per-user cache folder that hack/controlplane.sh fills; with an empty
// cache it fails and says how to get the binaries.
func testUpOutsideSourceTree(t *testing.T, bin string) {
	assets, err := controlplane.Assets(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	t.Setenv("LEASEHOLD_CACHE_DIR", cache)
	dir, err := controlplane.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if err := os.Symlink(filepath.Join(assets, name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	env := func(cacheDir string) []string {
		var out []string
		for _, kv := range os.Environ() {
			switch k, _, _ := strings.Cut(kv, "="); k {
			case "LEASEHOLD_ASSETS_DIR", "KUBEBUILDER_ASSETS", "LEASEHOLD_CACHE_DIR":
			default:
				out = append(out, kv)
			}
		}
		return append(out, "LEASEHOLD_CACHE_DIR="+cacheDir)
	}

	t.Run("Cached", func(t *testing.T) {
		up := startUpIn(t, bin, t.TempDir(), env(cache), "up", "--once", "--no-demo")
		code := up.wait(t, 5*time.Minute)
		out := up.out.String()
		if code != 0 {
			t.Fatalf("up --once --no-demo outside the source tree exited %d:\n%s", code, out)
		}
		if !regexp.MustCompile(`(?m)^6 service processes ready in `).MatchString(out) {
			t.Errorf("no service processes ready:\n%s", out)
		}
		checkNoStackTrace(t, out)
		up.checkNothingLeft(t)
	})

	t.Run("EmptyCache", func(t *testing.T) {
		empty := t.TempDir()
		up := startUpIn(t, bin, t.TempDir(), env(empty), "up", "--once")
		code := up.wait(t, time.Minute)
		out := up.out.String()
		if code == 0 {
			t.Fatalf("up with an empty cache exited 0:\n%s", out)
		}
		emptyDir := filepath.Join(empty, "controlplane", "kubernetes-"+controlplane.KubernetesVersion+"-etcd-"+controlplane.EtcdVersion)
		for _, want := range []string{"error: control plane binaries not found", "make controlplane", emptyDir, "LEASEHOLD_ASSETS_DIR"} {
			if !strings.Contains(out, want) {
				t.Errorf("output does not say %q:\n%s", want, out)
			}
		}
		checkNoStackTrace(t, out)
	})
}

// testUpOnce: `up --once` brings everything up, runs the demo, passes its
// checks, exits 0 and leaves nothing behind.
func testUpOnce(t *testing.T, bin string) {
	up := startUp(t, bin, "up", "--once")
	code := up.wait(t, 5*time.Minute)
	out := up.out.String()
	if code != 0 {
		t.Fatalf("up --once exited %d:\n%s", code, out)
	}
	for _, re := range []string{
		`(?m)^6 service processes ready in `,
		`(?m)^signals sent:\s+150 \(150 acknowledged\)$`,
		`(?m)^duplicate RRs:\s+0 \(at most 1 in progress per incident at once\)$`,
		`(?m)^occurrence counts exact:\s+yes$`,
		`(?m)^duplicate WFEs:\s+0$`,
		`(?m)^max active WFEs per target:\s+1$`,
		`(?m)^checks: passed$`,
		`(?m)^stopped; data removed$`,
		// The identical storm's incident: 100 signals counted exactly, its
		// requests Completed.
		`(?m)^identical\s+0\s+local:Deployment/storm/storm-[a-z0-9]+-0\s+100\s+\d+\s+100\s+Completed \d+\s+\d+\s+1\s+1$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output does not match %s", re)
		}
	}
	m := regexp.MustCompile(`(?m)^RRs terminal:\s+(\d+) of (\d+) `).FindStringSubmatch(out)
	if m == nil || m[1] != m[2] || m[1] == "0" {
		t.Errorf("not every RR terminal: %q", m)
	}
	m = regexp.MustCompile(`(?m)^RRs created:\s+(\d+) for 6 incidents`).FindStringSubmatch(out)
	if m == nil {
		t.Errorf("no RRs created line for 6 incidents")
	} else if n, _ := strconv.Atoi(m[1]); n < 6 {
		t.Errorf("%d RRs for 6 incidents", n)
	}
	if got := len(regexp.MustCompile(`(?m)^  http://127\.0\.0\.1:\d+$`).FindAllString(out, -1)); got != 3 {
		t.Errorf("%d gateway URLs printed, want 3", got)
	}
	checkNoStackTrace(t, out)
	up.checkNothingLeft(t)
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

// testUpInterrupt: `up` without --once stays up after its demo, accepts
// the alert of the curl command it printed and runs it through to a
// Completed request, and on SIGINT stops everything and exits 0.
func testUpInterrupt(t *testing.T, bin string) {
	up := startUp(t, bin, "up")
	if !up.waitOutput(t, "\nrunning; press Ctrl-C to stop\n", 5*time.Minute) {
		t.Fatalf("up never said it was running:\n%s", up.out.String())
	}
	out := up.out.String()
	if !strings.Contains(out, "checks: passed") {
		t.Errorf("the demo's checks did not pass:\n%s", out)
	}

	// The printed curl command, run as printed.
	m := regexp.MustCompile(`(?m)^  (curl .*)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no curl command in the output:\n%s", out)
	}
	res, err := exec.CommandContext(t.Context(), "bash", "-c", m[1]).CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, res)
	}
	var answer struct {
		Outcome            string `json:"outcome"`
		RemediationRequest string `json:"remediationRequest"`
		OccurrenceCount    int64  `json:"occurrenceCount"`
	}
	if err := json.Unmarshal(res, &answer); err != nil || answer.Outcome != "created" || answer.OccurrenceCount != 1 {
		t.Fatalf("curl answer = %s (%v), want a created RemediationRequest with count 1", res, err)
	}
	rr := upWaitTerminal(t, upKubeconfigOf(t, out), "leasehold-system", answer.RemediationRequest)
	want := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Pod", Namespace: "default", Name: "web-0"}
	if rr.EffectivePhase() != v1alpha1.PhaseCompleted || rr.Spec.Target != want || rr.Status.WorkflowExecutionRef == nil {
		t.Errorf("the curl's request ended %s on %v with execution %v, want Completed on %v through an execution",
			rr.EffectivePhase(), rr.Spec.Target, rr.Status.WorkflowExecutionRef, want)
	}

	if err := up.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := up.wait(t, 2*time.Minute); code != 0 {
		t.Errorf("up exited %d after SIGINT, want 0:\n%s", code, up.out.String())
	}
	if !strings.Contains(up.out.String(), "\nstopped; data removed\n") {
		t.Errorf("up did not say it stopped and removed its data:\n%s", up.out.String())
	}
	up.checkNothingLeft(t)
}

// upProcess is a running `leasehold up` and what the test saw of it.
type upProcess struct {
	cmd  *exec.Cmd
	out  *upOutput
	done chan struct{}
	// sampled is closed when sample has returned.
	sampled chan struct{}

	// seen records, while up runs, every descendant process: the services
	// and the control plane.
	mu   sync.Mutex
	seen map[int]upProcInfo
}

// upProcInfo identifies a process across PID reuse: its start time in clock
// ticks since boot.
type upProcInfo struct {
	start   uint64
	cmdline string
}

func startUp(t *testing.T, bin string, args ...string) *upProcess {
	t.Helper()
	return startUpIn(t, bin, "", nil, args...)
}

// startUpIn starts up in the folder dir with the environment env; empty
// and nil are the test's own.
func startUpIn(t *testing.T, bin, dir string, env []string, args ...string) *upProcess {
	t.Helper()
	up := &upProcess{out: &upOutput{}, done: make(chan struct{}), sampled: make(chan struct{}), seen: map[int]upProcInfo{}}
	up.cmd = exec.Command(bin, args...)
	up.cmd.Dir, up.cmd.Env = dir, env
	// Its own process group, so that only it gets the test's SIGINT; killed
	// with the test process if that dies first.
	up.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	up.cmd.Stdout, up.cmd.Stderr = up.out, up.out
	if err := up.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = up.cmd.Wait()
		close(up.done)
	}()
	go up.sample()
	t.Cleanup(func() {
		select {
		case <-up.done:
			return
		default:
		}
		// Ask as Ctrl-C does first, so that up stops the control plane;
		// kill only if it does not.
		_ = up.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-up.done:
		case <-time.After(time.Minute):
			_ = syscall.Kill(-up.cmd.Process.Pid, syscall.SIGKILL)
			<-up.done
		}
	})
	return up
}

// sample records the descendants of up every 50ms until it exits. A
// service lives for seconds at least, so none is missed. A child's command
// line is its parent's until it execs, and reads empty while it exits: the
// last non-empty one read is kept.
func (up *upProcess) sample() {
	defer close(up.sampled)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		for pid, info := range upDescendants(up.cmd.Process.Pid) {
			up.mu.Lock()
			if old, ok := up.seen[pid]; !ok || old.start != info.start || info.cmdline != "" {
				up.seen[pid] = info
			}
			up.mu.Unlock()
		}
		select {
		case <-up.done:
			return
		case <-tick.C:
		}
	}
}

// wait returns up's exit code, failing the test if it takes longer than d.
func (up *upProcess) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-up.done:
	case <-time.After(d):
		t.Fatalf("up did not exit within %v:\n%s", d, up.out.String())
	}
	return up.cmd.ProcessState.ExitCode()
}

// waitOutput polls the output for s until d passes or up exits.
func (up *upProcess) waitOutput(t *testing.T, s string, d time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(up.out.String(), s) {
			return true
		}
		select {
		case <-up.done:
			return strings.Contains(up.out.String(), s)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

// checkNothingLeft checks, after up exited, that none of the processes it
// started still exists, that no process mentions its data folder (the
// services' --kubeconfig and the control plane's data and certificates
// live there), that no port it printed is still bound by one of them, and
// that the data folder is gone.
func (up *upProcess) checkNothingLeft(t *testing.T) {
	t.Helper()
	out := up.out.String()
	m := regexp.MustCompile(`(?m)^  data dir:\s+(\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no data dir in the output:\n%s", out)
	}
	dataDir := m[1]

	<-up.sampled
	up.mu.Lock()
	seen := maps.Clone(up.seen)
	up.mu.Unlock()
	roles := map[string]int{}
	for _, info := range seen {
		for _, role := range []string{" gateway ", " orchestrator ", " executor ", "kube-apiserver", "etcd"} {
			if strings.Contains(info.cmdline, role) {
				roles[strings.TrimSpace(role)]++
			}
		}
	}
	// The sampling must have seen the processes it is about to check on.
	// At least: a service that lost its port to another program is
	// started again.
	if roles["gateway"] < 3 || roles["orchestrator"] < 2 || roles["executor"] < 1 || roles["kube-apiserver"] < 1 || roles["etcd"] < 1 {
		t.Errorf("processes seen under up: %v, want 3 gateways, 2 orchestrators, 1 executor, the API server and etcd", roles)
	}
	for pid, info := range seen {
		if now, ok := upReadProc(pid); ok && now.start == info.start {
			t.Errorf("process %d outlived up: %s", pid, info.cmdline)
		}
	}
	for pid, info := range upAllProcesses() {
		if strings.Contains(info.cmdline, dataDir) {
			t.Errorf("process %d still runs with the data folder: %s", pid, info.cmdline)
		}
	}

	ports := map[int]bool{}
	for _, m := range regexp.MustCompile(`https?://127\.0\.0\.1:(\d+)`).FindAllStringSubmatch(out, -1) {
		p, _ := strconv.Atoi(m[1])
		ports[p] = true
	}
	if len(ports) < 3+2*3+1 {
		t.Errorf("only %d ports in the output, want the API server's and 9 of the services", len(ports))
	}
	for port := range ports {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err != nil {
			continue
		}
		conn.Close()
		// Another program may have taken the freed port since; only a
		// listener of ours is a failure, and the PID check above would
		// have caught it too.
		for _, pid := range upListeners(port) {
			if _, ours := seen[pid]; ours {
				t.Errorf("port %d is still bound by process %d, started by up", port, pid)
			}
		}
	}

	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data folder %s still exists (stat: %v)", dataDir, err)
	}
}

// kubeconfigOf is the kubeconfig path up printed.
func upKubeconfigOf(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  kubeconfig:\s+(\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no kubeconfig in the output:\n%s", out)
	}
	return m[1]
}

// waitTerminal polls the RemediationRequest through the printed kubeconfig
// until it is terminal (within a minute) and returns it.
func upWaitTerminal(t *testing.T, kubeconfig, namespace, name string) *v1alpha1.RemediationRequest {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	// controller-runtime's client logs through its global logger, which
	// complains at length when never set; it takes only the first one set,
	// so this goes through the command's switch.
	useControllerRuntimeLogger(logr.Discard())
	cli, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	rr := &v1alpha1.RemediationRequest{}
	for {
		err := cli.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, rr)
		if err == nil && rr.IsTerminal() {
			return rr
		}
		select {
		case <-ctx.Done():
			t.Fatalf("RemediationRequest %s/%s not terminal within a minute: phase %q, last error %v", namespace, name, rr.EffectivePhase(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// descendants returns the processes below pid.
func upDescendants(pid int) map[int]upProcInfo {
	all := upAllProcesses()
	children := map[int][]int{}
	for p, info := range all {
		children[info.ppid()] = append(children[info.ppid()], p)
	}
	out := map[int]upProcInfo{}
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out[c] = all[c].upProcInfo
			queue = append(queue, c)
		}
	}
	return out
}

type upProcEntry struct {
	upProcInfo
	parent int
}

func (e upProcEntry) ppid() int { return e.parent }

// allProcesses reads every process of /proc.
func upAllProcesses() map[int]upProcEntry {
	entries, _ := os.ReadDir("/proc")
	out := map[int]upProcEntry{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if info, ppid, ok := upReadProcFull(pid); ok {
			out[pid] = upProcEntry{upProcInfo: info, parent: ppid}
		}
	}
	return out
}

func upReadProc(pid int) (upProcInfo, bool) {
	info, _, ok := upReadProcFull(pid)
	return info, ok
}

// readProcFull parses /proc/<pid>/stat (parent and start time; the command
// name in parentheses may itself hold spaces and parentheses, so fields
// are counted from the last ')') and /proc/<pid>/cmdline. A zombie is
// reported as gone: it has exited.
func upReadProcFull(pid int) (upProcInfo, int, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return upProcInfo{}, 0, false
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return upProcInfo{}, 0, false
	}
	// After ")": state(3) ppid(4) ... starttime(22); fields[0] is state.
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 || fields[0] == "Z" {
		return upProcInfo{}, 0, false
	}
	ppid, _ := strconv.Atoi(fields[1])
	start, _ := strconv.ParseUint(fields[19], 10, 64)
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return upProcInfo{start: start, cmdline: strings.ReplaceAll(string(bytes.TrimRight(cmdline, "\x00")), "\x00", " ")}, ppid, true
}

// listeners returns the processes with a listening TCP socket on port.
func upListeners(port int) []int {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		file, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(file)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// local_address is HEX_IP:HEX_PORT; state 0A is LISTEN.
			if len(fields) < 10 || fields[3] != "0A" {
				continue
			}
			_, hexPort, ok := strings.Cut(fields[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); ok && err == nil && int(p) == port {
				inodes["socket:["+fields[9]+"]"] = true
			}
		}
		file.Close()
	}
	var pids []int
	for pid := range upAllProcesses() {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && inodes[target] {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// upOutput is an output buffer safe for the writer and a reader.
type upOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *upOutput) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *upOutput) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
