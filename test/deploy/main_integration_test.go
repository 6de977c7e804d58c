//go:build integration

package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/leasehold/leasehold/internal/controlplane"
)

// ns is the namespace the kustomization deploys to.
const ns = "leasehold-system"

// fieldOwner is the field manager of every apply the tests send.
const fieldOwner = "leasehold-deploy-test"

var (
	cp *controlplane.ControlPlane
	// admin is an uncached client for unstructured objects.
	admin client.Client
	// adminSet is a clientset for the typed calls (reviews, tokens).
	adminSet kubernetes.Interface
)

// TestMain starts one control plane without the leasehold-system namespace:
// the kustomization's Namespace object creates it.
func TestMain(m *testing.M) {
	code := controlplane.Run(m, controlplane.Options{}, func(c *controlplane.ControlPlane) error {
		cp = c
		var err error
		if admin, err = client.New(c.Config, client.Options{}); err != nil {
			return err
		}
		adminSet, err = kubernetes.NewForConfig(c.Config)
		return err
	})
	removeImageBuild()
	os.Exit(code)
}

// ctxTimeout is a test context with a deadline that ends with the test.
func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// rendered is the kustomization's output, rendered once.
var rendered struct {
	once sync.Once
	objs []*unstructured.Unstructured
	err  error
}

// render returns the objects of `kustomize build deploy`, in kustomize's
// order, rendered once per test binary with the pinned kustomize. Callers
// must not modify them: DeepCopy first.
func render(t testing.TB) []*unstructured.Unstructured {
	t.Helper()
	rendered.once.Do(func() {
		rendered.objs, rendered.err = renderKustomization(filepath.Join(repoRoot, "deploy"))
	})
	if rendered.err != nil {
		t.Fatalf("render deploy/: %v", rendered.err)
	}
	return rendered.objs
}

// renderKustomization runs the pinned kustomize (hack/tools.sh builds it
// into the cache on first use) on dir. The CRDs live in config/crd, outside
// deploy/, hence LoadRestrictionsNone, as the deploy README says.
func renderKustomization(dir string) ([]*unstructured.Unstructured, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	tool := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot, "hack", "tools.sh"), "kustomize")
	tool.Stderr = &stderr
	path, err := tool.Output()
	if err != nil {
		return nil, fmt.Errorf("hack/tools.sh kustomize: %w\n%s", err, stderr.String())
	}
	stderr.Reset()
	build := exec.CommandContext(ctx, strings.TrimSpace(string(path)), "build", "--load-restrictor", "LoadRestrictionsNone", dir)
	build.Stderr = &stderr
	out, err := build.Output()
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w\n%s", dir, err, stderr.String())
	}
	return decodeObjects(out)
}

// decodeObjects splits a multi-document YAML stream into objects; an
// empty document is an error, since kustomize never writes one.
func decodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		m := map[string]any{}
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, fmt.Errorf("decode %q: %w", firstLine(doc), err)
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("object without kind, apiVersion or name: %q", firstLine(doc))
		}
		objs = append(objs, u)
	}
}

// readObjects decodes a YAML file of the repository.
func readObjects(t testing.TB, rel string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeObjects(data)
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return objs
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

// id names an object as kind/namespace/name, or kind/name when cluster-scoped.
func id(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetKind() + "/" + u.GetName()
	}
	return u.GetKind() + "/" + u.GetNamespace() + "/" + u.GetName()
}

// find returns the rendered object kind/namespace/name (see id).
func find(t testing.TB, objID string) *unstructured.Unstructured {
	t.Helper()
	for _, u := range render(t) {
		if id(u) == objID {
			return u
		}
	}
	t.Fatalf("%s is not in the rendered kustomization", objID)
	return nil
}

// ofKind returns the rendered objects of a kind.
func ofKind(t testing.TB, kind string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, u := range render(t) {
		if u.GetKind() == kind {
			out = append(out, u)
		}
	}
	return out
}

// isRBAC reports whether the object is one the tests apply for real.
func isRBAC(u *unstructured.Unstructured) bool {
	switch u.GetKind() {
	case "Namespace", "CustomResourceDefinition", "ServiceAccount":
		return true
	}
	return u.GroupVersionKind().Group == "rbac.authorization.k8s.io"
}

// installed applies, once per test binary, the namespace, the CRDs and the
// RBAC objects of the kustomization for real, in kustomize's order (which
// puts the namespace and the CRDs first). The other tests rely on them:
// namespaced objects are dry-run against an existing namespace, and the
// permission tests ask the authorizer about the applied roles.
var installed struct {
	once sync.Once
	err  error
}

func install(t testing.TB) {
	t.Helper()
	objs := render(t)
	installed.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, u := range objs {
			if !isRBAC(u) {
				continue
			}
			if err := apply(ctx, admin, u.DeepCopy(), false); err != nil {
				installed.err = fmt.Errorf("apply %s: %w", id(u), err)
				return
			}
		}
		installed.err = waitForBindings(ctx, objs, objs)
	})
	if installed.err != nil {
		t.Fatal(installed.err)
	}
}

// apply sends one server-side apply, a dry run if asked. Ownership is
// forced: the control plane installed the CRDs with another field manager,
// and nothing else in this test cluster owns these objects.
func apply(ctx context.Context, c client.Client, u *unstructured.Unstructured, dryRun bool) error {
	opts := []client.ApplyOption{client.FieldOwner(fieldOwner), client.ForceOwnership}
	if dryRun {
		opts = append(opts, client.DryRunAll)
	}
	return c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), opts...)
}

// warningRecorder collects the warnings the API server sends with its
// answers (deprecated APIs, Pod Security violations of a workload's template).
type warningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

func (w *warningRecorder) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.warnings
	w.warnings = nil
	sort.Strings(out)
	return out
}

// clientWithWarnings returns an admin client whose API warnings land in w.
// It copies the control plane's configuration, which kubeclient.Configure
// made.
func clientWithWarnings(t testing.TB, w *warningRecorder) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(cp.Config)
	cfg.WarningHandler = nil
	cfg.WarningHandlerWithContext = w
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
