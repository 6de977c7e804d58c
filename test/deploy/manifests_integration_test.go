//go:build integration

package deploy_test

import (
	"net"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/gateway"
)

// image is the image every container runs: the kustomization's images entry
// applied to the name the Deployments use.
const image = "ghcr.io/leasehold/leasehold:latest"

// TestKustomizationRenders pins the set of objects: an object added or lost
// (the opt-in monitoring component pulled in, a Role dropped) fails here
// before anything is applied.
func TestKustomizationRenders(t *testing.T) {
	var got []string
	for _, u := range render(t) {
		got = append(got, id(u))
	}
	want := []string{
		"Namespace/leasehold-system",
		"CustomResourceDefinition/remediationrequests.leasehold.dev",
		"CustomResourceDefinition/workflowexecutions.leasehold.dev",
		"ServiceAccount/leasehold-system/leasehold-executor",
		"ServiceAccount/leasehold-system/leasehold-gateway",
		"ServiceAccount/leasehold-system/leasehold-orchestrator",
		"Role/leasehold-system/leasehold-executor",
		"Role/leasehold-system/leasehold-gateway",
		"Role/leasehold-system/leasehold-leases",
		"Role/leasehold-system/leasehold-orchestrator",
		"Role/leasehold-system/leasehold-signal-sender",
		"ClusterRole/leasehold-gateway",
		"RoleBinding/leasehold-system/leasehold-executor",
		"RoleBinding/leasehold-system/leasehold-gateway",
		"RoleBinding/leasehold-system/leasehold-leases",
		"RoleBinding/leasehold-system/leasehold-orchestrator",
		"ClusterRoleBinding/leasehold-gateway",
		"Service/leasehold-system/leasehold-executor-metrics",
		"Service/leasehold-system/leasehold-gateway",
		"Service/leasehold-system/leasehold-orchestrator-metrics",
		"Deployment/leasehold-system/leasehold-gateway",
		"Deployment/leasehold-system/leasehold-orchestrator",
		"Deployment/leasehold-system/leasehold-simulated-executor",
		"PodDisruptionBudget/leasehold-system/leasehold-gateway",
		"PodDisruptionBudget/leasehold-system/leasehold-orchestrator",
		"ResourceQuota/leasehold-system/leasehold-objects",
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("rendered objects:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}

	// The CRDs are the generated files, unchanged but for labels.
	for _, file := range []string{"config/crd/leasehold.dev_remediationrequests.yaml", "config/crd/leasehold.dev_workflowexecutions.yaml"} {
		for _, src := range readObjects(t, file) {
			r := find(t, id(src))
			if !reflect.DeepEqual(r.Object["spec"], src.Object["spec"]) {
				t.Errorf("%s: the rendered spec differs from %s", id(src), file)
			}
		}
	}
	for _, u := range render(t) {
		if got := u.GetLabels()["app.kubernetes.io/part-of"]; got != "leasehold" {
			t.Errorf("%s: label app.kubernetes.io/part-of=%q, want leasehold", id(u), got)
		}
	}
}

// TestServerSideApply applies every rendered object with server-side apply
// as a dry run, after the namespace, the CRDs and the RBAC were applied for
// real: the API server validates each object in full (schemas, defaults,
// admission) without running anything. Any warning fails too: a deprecated
// API, or a Pod template that the namespace's restricted Pod Security level
// would refuse.
func TestServerSideApply(t *testing.T) {
	install(t)
	w := &warningRecorder{}
	c := clientWithWarnings(t, w)
	ctx := ctxTimeout(t, time.Minute)
	for _, u := range render(t) {
		if err := apply(ctx, c, u.DeepCopy(), true); err != nil {
			t.Errorf("dry-run apply %s: %v", id(u), err)
		}
		if ws := w.take(); len(ws) > 0 {
			t.Errorf("dry-run apply %s: warnings:\n  %s", id(u), strings.Join(ws, "\n  "))
		}
	}
}

// TestPodTemplatesAdmitted creates, as a dry run, a Pod from each
// Deployment's template in the namespace, whose labels make the API server
// enforce the restricted Pod Security Standard. A negative control shows
// that enforcement is on: the same Pod allowed to escalate privileges is
// refused.
func TestPodTemplatesAdmitted(t *testing.T) {
	install(t)
	ctx := ctxTimeout(t, time.Minute)
	for _, d := range deployments(t) {
		pod := &corev1.Pod{
			ObjectMeta: *d.Spec.Template.ObjectMeta.DeepCopy(),
			Spec:       *d.Spec.Template.Spec.DeepCopy(),
		}
		pod.Name, pod.Namespace = d.Name+"-dry-run", d.Namespace
		if err := admin.Create(ctx, pod, client.DryRunAll); err != nil {
			t.Errorf("%s: a Pod from its template is refused: %v", d.Name, err)
		}

		bad := pod.DeepCopy()
		bad.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr.To(true)
		err := admin.Create(ctx, bad, client.DryRunAll)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "allowPrivilegeEscalation") {
			t.Errorf("%s: a Pod allowed to escalate privileges: err = %v, want Forbidden by Pod Security", d.Name, err)
		}
	}
}

// workload is what a Deployment must run, from the command's flags.
type workload struct {
	name, serviceAccount, subcommand string
	replicas                         int32
	// required are arguments the Deployment must pass, forbidden ones it
	// must not.
	required, forbidden []string
	// probeFlag and metricsFlag name the flags whose address serves
	// /healthz and /readyz, and /metrics.
	probeFlag, metricsFlag string
}

var workloads = []workload{
	{
		name: "leasehold-gateway", serviceAccount: "leasehold-gateway", subcommand: "gateway", replicas: 3,
		// HTTPS, and tokens for the gateway's own audience. The access
		// review is on by default: it must not be turned off.
		required: []string{
			"--tls-cert-file=/etc/leasehold/tls/tls.crt", "--tls-key-file=/etc/leasehold/tls/tls.key",
			"--token-audience=" + gateway.DefaultAudience,
		},
		forbidden: []string{"--access-review=false", "--insecure-no-auth", "--insecure-no-auth=true"},
		probeFlag: "--listen", metricsFlag: "--listen",
	},
	{
		name: "leasehold-orchestrator", serviceAccount: "leasehold-orchestrator", subcommand: "orchestrator", replicas: 2,
		probeFlag: "--health-probe-bind-address", metricsFlag: "--metrics-bind-address",
	},
	{
		name: "leasehold-simulated-executor", serviceAccount: "leasehold-executor", subcommand: "executor", replicas: 1,
		required:  []string{"--simulate"},
		probeFlag: "--health-probe-bind-address", metricsFlag: "--metrics-bind-address",
	},
}

// TestWorkloads checks each Deployment against what its command needs and
// what the image provides: replicas, the subcommand and its flags, the
// downward-API environment, probes on the ports the flags open, resources,
// and a security context that matches the image's non-root user.
func TestWorkloads(t *testing.T) {
	uid, err := mustParseDockerfile(t).finalUID()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range workloads {
		t.Run(w.subcommand, func(t *testing.T) {
			d := deployment(t, w.name)
			if got := ptr.Deref(d.Spec.Replicas, 1); got != w.replicas {
				t.Errorf("replicas = %d, want %d", got, w.replicas)
			}
			spec := d.Spec.Template.Spec
			if spec.ServiceAccountName != w.serviceAccount {
				t.Errorf("serviceAccountName = %q, want %q", spec.ServiceAccountName, w.serviceAccount)
			}
			psc := spec.SecurityContext
			if psc == nil || !ptr.Deref(psc.RunAsNonRoot, false) || ptr.Deref(psc.RunAsUser, -1) != int64(uid) ||
				psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("pod securityContext = %+v, want runAsNonRoot, runAsUser %d (the image's USER), seccomp RuntimeDefault", psc, uid)
			}
			if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
				t.Fatalf("containers = %d, init containers = %d, want 1 and 0", len(spec.Containers), len(spec.InitContainers))
			}
			c := spec.Containers[0]
			if c.Image != image {
				t.Errorf("image = %q, want %q", c.Image, image)
			}
			if len(c.Command) != 0 {
				t.Errorf("command = %q: the image's entrypoint is the binary, give only args", c.Command)
			}
			if len(c.Args) == 0 || c.Args[0] != w.subcommand {
				t.Fatalf("args = %q, want %s first", c.Args, w.subcommand)
			}
			for _, r := range w.required {
				if !slices.Contains(c.Args, r) {
					t.Errorf("args = %q lack %s", c.Args, r)
				}
			}
			for _, f := range w.forbidden {
				if slices.Contains(c.Args, f) {
					t.Errorf("args = %q contain %s", c.Args, f)
				}
			}
			checkDownwardEnv(t, c)
			checkProbes(t, c, w)
			checkMetricsPort(t, d, c, w)

			req, lim := c.Resources.Requests, c.Resources.Limits
			if req.Cpu().IsZero() || req.Memory().IsZero() || lim.Memory().IsZero() {
				t.Errorf("resources = %+v, want cpu and memory requests and a memory limit", c.Resources)
			}
			if lim.Memory().Cmp(*req.Memory()) < 0 {
				t.Errorf("memory limit %s below the request %s", lim.Memory(), req.Memory())
			}

			sc := c.SecurityContext
			switch {
			case sc == nil:
				t.Errorf("container has no securityContext")
			case ptr.Deref(sc.AllowPrivilegeEscalation, true),
				!ptr.Deref(sc.ReadOnlyRootFilesystem, false),
				!ptr.Deref(sc.RunAsNonRoot, false),
				sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0,
				sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
				t.Errorf("container securityContext = %+v, want no privilege escalation, read-only root, non-root, drop ALL, seccomp RuntimeDefault", sc)
			}
		})
	}

	// The simulated executor says what it is wherever it shows.
	d := deployment(t, "leasehold-simulated-executor")
	for what, l := range map[string]map[string]string{"Deployment": d.Labels, "Pod template": d.Spec.Template.Labels} {
		if l["leasehold.dev/demo"] != "true" {
			t.Errorf("simulated executor %s lacks label leasehold.dev/demo=true: %v", what, l)
		}
	}
	if !strings.Contains(d.Annotations["leasehold.dev/description"], "Demo only") {
		t.Errorf("simulated executor lacks its demo description: %v", d.Annotations)
	}
}

// checkDownwardEnv: POD_NAME and POD_NAMESPACE come from the Pod itself,
// since locks need the Pod as holder identity and the namespace as scope.
func checkDownwardEnv(t *testing.T, c corev1.Container) {
	t.Helper()
	want := map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
	for _, e := range c.Env {
		field, ok := want[e.Name]
		if !ok {
			continue
		}
		if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != field {
			t.Errorf("env %s = %+v, want fieldRef %s", e.Name, e, field)
		}
		delete(want, e.Name)
	}
	for name := range want {
		t.Errorf("env %s missing", name)
	}
}

// checkProbes: liveness on /healthz and readiness on /readyz, on the
// container port that the probe flag opens.
func checkProbes(t *testing.T, c corev1.Container, w workload) {
	t.Helper()
	port := flagPort(t, c.Args, w.probeFlag)
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe: want an HTTP GET of %s", p.name, p.path)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			t.Errorf("%s probe path %s, want %s", p.name, p.probe.HTTPGet.Path, p.path)
		}
		if got := containerPort(t, c, p.probe.HTTPGet.Port.String()); got != port {
			t.Errorf("%s probe port %d, but %s opens %d", p.name, got, w.probeFlag, port)
		}
		wantScheme := corev1.URISchemeHTTP
		if flagValue(c.Args, "--tls-cert-file") != "" && w.probeFlag == "--listen" {
			wantScheme = corev1.URISchemeHTTPS
		}
		if got := p.probe.HTTPGet.Scheme; got != wantScheme && (got != "" || wantScheme != corev1.URISchemeHTTP) {
			t.Errorf("%s probe scheme %q, want %s", p.name, got, wantScheme)
		}
	}
}

// checkMetricsPort: the scrape annotation and a Service both reach the port
// that the metrics flag opens.
func checkMetricsPort(t *testing.T, d *appsv1.Deployment, c corev1.Container, w workload) {
	t.Helper()
	port := flagPort(t, c.Args, w.metricsFlag)
	if got := d.Spec.Template.Annotations["prometheus.io/port"]; got != strconv.Itoa(int(port)) {
		t.Errorf("prometheus.io/port = %q, but %s opens %d", got, w.metricsFlag, port)
	}
	for _, s := range services(t) {
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			continue
		}
		for _, sp := range s.Spec.Ports {
			if containerPort(t, c, sp.TargetPort.String()) == port {
				return
			}
		}
	}
	t.Errorf("no Service reaches port %d (%s) of %s", port, w.metricsFlag, d.Name)
}

// flagValue returns the value of --flag=value in args, or "".
func flagValue(args []string, flag string) string {
	var v string
	for _, a := range args {
		if s, ok := strings.CutPrefix(a, flag+"="); ok {
			v = s
		}
	}
	return v
}

// TestResourceQuota: the namespace bounds the number of requests and
// executions, so that nothing can pile them up in etcd without limit.
func TestResourceQuota(t *testing.T) {
	var q corev1.ResourceQuota
	convert(t, find(t, "ResourceQuota/"+ns+"/leasehold-objects"), &q)
	for _, r := range []corev1.ResourceName{"count/remediationrequests.leasehold.dev", "count/workflowexecutions.leasehold.dev"} {
		v, ok := q.Spec.Hard[r]
		if !ok || v.Value() <= 0 {
			t.Errorf("quota %s = %v, want a positive count", r, q.Spec.Hard)
		}
	}
}

// flagPort returns the port of an address flag (--flag=:8080 or
// --flag=host:8080); the flag must be given explicitly, so that the probes
// and Services do not depend on a default that may change.
func flagPort(t *testing.T, args []string, flag string) int32 {
	t.Helper()
	var addr string
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			addr = v
		}
	}
	if addr == "" {
		t.Fatalf("args %q do not set %s", args, flag)
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s=%s: %v", flag, addr, err)
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%s: not a fixed port", flag, addr)
	}
	return int32(n)
}

// containerPort resolves a port given by name or number to its number; a
// name the container does not declare fails the test.
func containerPort(t *testing.T, c corev1.Container, ref string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == ref || strconv.Itoa(int(p.ContainerPort)) == ref {
			return p.ContainerPort
		}
	}
	t.Errorf("container %s declares no port %q", c.Name, ref)
	return -1
}

// TestReferences checks that the objects refer to each other correctly:
// every Service and PodDisruptionBudget selects exactly one Deployment's
// Pods, every binding names a rendered role and rendered ServiceAccounts,
// and every Deployment runs as a rendered ServiceAccount.
func TestReferences(t *testing.T) {
	deps := deployments(t)
	selects := func(sel labels.Selector) []string {
		var names []string
		for _, d := range deps {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				names = append(names, d.Name)
			}
		}
		return names
	}
	for _, s := range services(t) {
		if len(s.Spec.Selector) == 0 {
			t.Errorf("Service %s selects nothing", s.Name)
			continue
		}
		if got := selects(labels.SelectorFromSet(s.Spec.Selector)); len(got) != 1 {
			t.Errorf("Service %s selects Deployments %q, want exactly one", s.Name, got)
		}
	}
	for _, u := range ofKind(t, "PodDisruptionBudget") {
		var pdb policyv1.PodDisruptionBudget
		convert(t, u, &pdb)
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil {
			t.Fatalf("PDB %s: %v", pdb.Name, err)
		}
		got := selects(sel)
		if len(got) != 1 {
			t.Errorf("PDB %s selects Deployments %q, want exactly one", pdb.Name, got)
			continue
		}
		d := deployment(t, got[0])
		if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() < 1 ||
			int32(pdb.Spec.MaxUnavailable.IntValue()) >= ptr.Deref(d.Spec.Replicas, 1) {
			t.Errorf("PDB %s: maxUnavailable %v for %d replicas: want at least 1 (drains must proceed) and fewer than the replicas", pdb.Name, pdb.Spec.MaxUnavailable, ptr.Deref(d.Spec.Replicas, 1))
		}
	}

	have := map[string]bool{}
	for _, u := range render(t) {
		have[id(u)] = true
	}
	for _, kind := range []string{"RoleBinding", "ClusterRoleBinding"} {
		for _, u := range ofKind(t, kind) {
			var b rbacv1.RoleBinding // a ClusterRoleBinding has the same fields
			convert(t, u, &b)
			role := b.RoleRef.Kind + "/" + b.RoleRef.Name
			if b.RoleRef.Kind == "Role" {
				role = "Role/" + b.Namespace + "/" + b.RoleRef.Name
			}
			if !have[role] {
				t.Errorf("%s refers to %s, which is not rendered", id(u), role)
			}
			for _, s := range b.Subjects {
				if s.Kind != rbacv1.ServiceAccountKind || !have["ServiceAccount/"+s.Namespace+"/"+s.Name] {
					t.Errorf("%s: subject %+v is not a rendered ServiceAccount", id(u), s)
				}
			}
		}
	}
	for _, d := range deps {
		if sa := "ServiceAccount/" + d.Namespace + "/" + d.Spec.Template.Spec.ServiceAccountName; !have[sa] {
			t.Errorf("Deployment %s runs as %s, which is not rendered", d.Name, sa)
		}
	}
}

func deployments(t testing.TB) []*appsv1.Deployment {
	t.Helper()
	var out []*appsv1.Deployment
	for _, u := range ofKind(t, "Deployment") {
		d := &appsv1.Deployment{}
		convert(t, u, d)
		out = append(out, d)
	}
	if len(out) == 0 {
		t.Fatal("no Deployment rendered")
	}
	return out
}

func deployment(t testing.TB, name string) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	convert(t, find(t, "Deployment/"+ns+"/"+name), d)
	return d
}

func services(t testing.TB) []*corev1.Service {
	t.Helper()
	var out []*corev1.Service
	for _, u := range ofKind(t, "Service") {
		s := &corev1.Service{}
		convert(t, u, s)
		out = append(out, s)
	}
	return out
}

// convert decodes a rendered object into a typed one, refusing unknown
// fields: a misspelt field would otherwise vanish silently.
func convert(t testing.TB, u *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.DeepCopy().Object, into, true); err != nil {
		t.Fatalf("decode %s: %v", id(u), err)
	}
}
