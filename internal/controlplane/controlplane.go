// Package controlplane starts and stops a real kube-apiserver and etcd, with
// the project's CRDs installed, the same way for every integration suite and
// for the local stack.
//
// The binaries are built from the pinned tools modules by
// hack/controlplane.sh into a cache folder outside the clone, which reports
// its progress on stderr (the first build takes many minutes). A leasehold
// binary run outside a source tree finds them in that folder by the
// versions compiled into it (KubernetesVersion, EtcdVersion); see Assets.
// Certificates and etcd data live in one folder, so RestartAPIServer and
// RestartEtcd bring a process back on the same ports, certificates and data:
// clients made before a restart keep working after it.
//
// There is no controller manager: nothing garbage-collects owned objects and
// no namespace controller finalizes deleted namespaces. Tests must not rely
// on either.
package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/leasehold/leasehold/config/crd"
	"github.com/leasehold/leasehold/internal/kubeclient"
)

// Options configures Start. Zero values take the documented defaults.
type Options struct {
	// AssetsDir holds the kube-apiserver and etcd binaries. Default: see Assets.
	AssetsDir string
	// Dir holds certificates, etcd data and process logs. Default: a new
	// temporary folder, removed by Stop unless KeepData.
	Dir string
	// KeepData leaves Dir in place after Stop.
	KeepData bool
	// Namespaces are created once the API server is up.
	Namespaces []string
	// StartTimeout bounds the start of each process. Default 60s.
	StartTimeout time.Duration
}

const (
	// watchTerminationGracePeriod bounds how long the API server waits for
	// the watches it ends on shutdown to finish; they end at once, so this
	// is only an upper bound.
	watchTerminationGracePeriod = 5 * time.Second
	// stopTimeout is how long a stop waits for a process to exit after
	// SIGTERM before envtest kills it. It is above the API server's own
	// bound on a graceful stop (its 1m request timeout for requests still
	// in flight, plus watchTerminationGracePeriod), because envtest's kill
	// path returns an error without waiting for the process to exit, which
	// leaves a restart on the same port to fail.
	stopTimeout = 90 * time.Second
)

// ControlPlane is a running kube-apiserver and etcd.
type ControlPlane struct {
	// Config is an administrator's client configuration (system:masters),
	// with explicit QPS, Burst and per-request deadlines.
	Config *rest.Config

	env      *envtest.Environment
	dir      string
	ownsDir  bool
	keepData bool
}

// Start builds nothing and downloads nothing: it finds the binaries (Assets),
// starts etcd and kube-apiserver, installs the CRDs and creates the
// namespaces asked for. On error, whatever was started is stopped again.
func Start(ctx context.Context, opts Options) (*ControlPlane, error) {
	assets := opts.AssetsDir
	if assets == "" {
		var err error
		if assets, err = Assets(ctx); err != nil {
			return nil, err
		}
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}
	cp := &ControlPlane{dir: opts.Dir, keepData: opts.KeepData}
	if cp.dir == "" {
		dir, err := os.MkdirTemp("", "leasehold-controlplane-")
		if err != nil {
			return nil, err
		}
		cp.dir, cp.ownsDir = dir, true
	}
	for _, sub := range []string{"etcd", "apiserver"} {
		if err := os.MkdirAll(filepath.Join(cp.dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	etcdLog, err := os.OpenFile(filepath.Join(cp.dir, "etcd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	apiLog, err := os.OpenFile(filepath.Join(cp.dir, "apiserver.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	crds, err := crd.Definitions()
	if err != nil {
		return nil, err
	}

	api := &envtest.APIServer{
		Path:    filepath.Join(assets, "kube-apiserver"),
		CertDir: filepath.Join(cp.dir, "apiserver"),
		Out:     apiLog,
		Err:     apiLog,
	}
	// On SIGTERM the API server ends its HTTP server gracefully, and that
	// waits for every open stream, a watch included, for up to its
	// --request-timeout (1m). Watches last far longer, so a single open
	// watch made every stop take a full minute, and envtest then killed
	// the process and reported "timeout waiting for process kube-apiserver
	// to stop". With a watch termination grace period the server ends its
	// watches itself as soon as it stops accepting requests (clients see
	// the watch end and re-establish it, as they do across a real API
	// server's restart), and the stop no longer waits for them.
	api.Configure().Set("shutdown-watch-termination-grace-period", watchTerminationGracePeriod.String())

	cp.env = &envtest.Environment{
		ControlPlane: envtest.ControlPlane{
			Etcd: &envtest.Etcd{
				Path:    filepath.Join(assets, "etcd"),
				DataDir: filepath.Join(cp.dir, "etcd"),
				Out:     etcdLog,
				Err:     etcdLog,
			},
			APIServer: api,
		},
		CRDs:                     crds,
		ControlPlaneStartTimeout: opts.StartTimeout,
		ControlPlaneStopTimeout:  stopTimeout,
	}
	admin, err := cp.env.Start()
	if err != nil {
		_ = cp.Stop()
		return nil, fmt.Errorf("start control plane: %w%s", err, cp.logTails())
	}
	cp.Config, err = kubeclient.Configure(admin, kubeclient.Options{UserAgent: "leasehold-controlplane"})
	if err != nil {
		_ = cp.Stop()
		return nil, err
	}
	if err := cp.createNamespaces(ctx, opts.Namespaces); err != nil {
		_ = cp.Stop()
		return nil, err
	}
	return cp, nil
}

// CreateNamespace creates a namespace, so that a test can work in one of its
// own; an existing namespace is not an error.
func (cp *ControlPlane) CreateNamespace(ctx context.Context, name string) error {
	return cp.createNamespaces(ctx, []string{name})
}

func (cp *ControlPlane) createNamespaces(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		return err
	}
	for _, name := range names {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", name, err)
		}
	}
	return nil
}

// Dir is the folder that holds certificates, etcd data and process logs.
func (cp *ControlPlane) Dir() string { return cp.dir }

// Kubeconfig returns a kubeconfig file's content for the administrator.
func (cp *ControlPlane) Kubeconfig() []byte { return cp.env.KubeConfig }

// APIServerURL is the API server's secure address.
func (cp *ControlPlane) APIServerURL() string { return cp.Config.Host }

// EtcdURL is etcd's client address: plain HTTP without authentication,
// where etcd also serves its JSON gateway (/v3/kv/range, /v3/watch). It
// stays the same across RestartEtcd.
func (cp *ControlPlane) EtcdURL() string { return cp.env.ControlPlane.Etcd.URL.String() }

// RestartAPIServer stops the API server and starts it again on the same
// port with the same certificates; etcd keeps running. Open watches are
// ended by the stopping server, so clients see them close and must watch
// again; requests in flight are allowed to finish.
func (cp *ControlPlane) RestartAPIServer() error {
	api := cp.env.ControlPlane.APIServer
	if err := api.Stop(); err != nil {
		return fmt.Errorf("stop kube-apiserver: %w", err)
	}
	if err := api.Start(); err != nil {
		return fmt.Errorf("start kube-apiserver: %w%s", err, cp.logTails())
	}
	return nil
}

// StopEtcd stops etcd, leaving the API server running without storage.
func (cp *ControlPlane) StopEtcd() error {
	return cp.env.ControlPlane.Etcd.Stop()
}

// StartEtcd starts etcd again on the same port with the same data.
func (cp *ControlPlane) StartEtcd() error {
	if err := cp.env.ControlPlane.Etcd.Start(); err != nil {
		return fmt.Errorf("start etcd: %w%s", err, cp.logTails())
	}
	return nil
}

// RestartEtcd stops etcd and starts it again on the same port with the same
// data; the API server keeps running and reconnects. Clients' watches stay
// open across it: the API server's own watch on etcd resumes. The stop takes
// several seconds, because etcd waits its request timeout (about 7 s) for
// the API server's watch streams before closing them.
func (cp *ControlPlane) RestartEtcd() error {
	if err := cp.StopEtcd(); err != nil {
		return fmt.Errorf("stop etcd: %w", err)
	}
	return cp.StartEtcd()
}

// Stop stops both processes and removes the folder Start created, unless
// KeepData was set. It is safe to call more than once.
func (cp *ControlPlane) Stop() error {
	var errs []error
	if cp.env != nil {
		errs = append(errs, cp.env.Stop())
		cp.env = nil
	}
	if cp.ownsDir && !cp.keepData && cp.dir != "" {
		errs = append(errs, os.RemoveAll(cp.dir))
		cp.dir = ""
	}
	return errors.Join(errs...)
}

// logTails returns the last lines of both process logs, for error messages:
// "exited with status 1" alone does not tell anyone what went wrong.
func (cp *ControlPlane) logTails() string {
	var b strings.Builder
	for _, name := range []string{"etcd.log", "apiserver.log"} {
		data, err := os.ReadFile(filepath.Join(cp.dir, name))
		if err != nil || len(data) == 0 {
			continue
		}
		lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(&b, "\n--- last lines of %s ---\n%s", name, bytes.Join(lines, []byte("\n")))
	}
	return b.String()
}

// Assets returns the folder that holds kube-apiserver and etcd, in order of
// preference: $LEASEHOLD_ASSETS_DIR, $KUBEBUILDER_ASSETS, the output of
// hack/controlplane.sh in the enclosing source tree, which builds the pinned
// versions into the per-user cache the first time (minutes, with progress
// on stderr) and only checks them after that (seconds), or, outside a
// source tree, that cache folder (CacheDir) when its binaries report the
// versions this binary was built with. When none of these has them, the
// error wraps ErrNoAssets and says how to get them.
func Assets(ctx context.Context) (string, error) {
	for _, env := range []string{"LEASEHOLD_ASSETS_DIR", "KUBEBUILDER_ASSETS"} {
		if dir := os.Getenv(env); dir != "" {
			return dir, nil
		}
	}
	root, err := sourceRoot()
	if err != nil {
		return cached(ctx, err)
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "hack", "controlplane.sh"))
	cmd.Dir = root
	cmd.Stderr = os.Stderr // build progress: the first build takes minutes
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/controlplane.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

// sourceRoot walks up from the working directory to the folder holding
// hack/controlplane.sh (go test runs in the package folder).
func sourceRoot() (string, error) {
	start, err := os.Getwd()
	if err != nil {
		return "", err
	}
	dir := start
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "controlplane.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no hack/controlplane.sh in %s or any folder above it", start)
		}
		dir = parent
	}
}
