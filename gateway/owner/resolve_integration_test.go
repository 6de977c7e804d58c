//go:build integration

package owner_test

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/owner"
)

// The local control plane has no controller manager: every object of a
// chain is written by the test, with the controller references the real
// controllers would set.

var labels = map[string]string{"app": "web"}

func podTemplate() corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.invalid/c"}}},
	}
}

// controllerRef is the reference a controller sets on what it creates.
func controllerRef(obj metav1.Object, gvk schema.GroupVersionKind) metav1.OwnerReference {
	return *metav1.NewControllerRef(obj, gvk)
}

// create makes obj through create and deletes it when the test ends.
func create[T metav1.Object](t *testing.T, obj T, create func(T) (T, error), del func(name string) error) T {
	t.Helper()
	got, err := create(obj)
	if err != nil {
		t.Fatalf("create %s: %v", obj.GetName(), err)
	}
	t.Cleanup(func() {
		if err := del(got.GetName()); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("cleanup: delete %s: %v", got.GetName(), err)
		}
	})
	return got
}

func createDeployment(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	ctx := ctxTimeout(t, 30*time.Second)
	c := admin.AppsV1().Deployments(itNS)
	return create(t, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podTemplate(),
		},
	}, func(d *appsv1.Deployment) (*appsv1.Deployment, error) {
		return c.Create(ctx, d, metav1.CreateOptions{})
	},
		func(n string) error { return c.Delete(ctx, n, metav1.DeleteOptions{}) })
}

func createReplicaSet(t *testing.T, name string, owner metav1.OwnerReference) *appsv1.ReplicaSet {
	t.Helper()
	ctx := ctxTimeout(t, 30*time.Second)
	c := admin.AppsV1().ReplicaSets(itNS)
	return create(t, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, OwnerReferences: []metav1.OwnerReference{owner}},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podTemplate(),
		},
	}, func(r *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error) {
		return c.Create(ctx, r, metav1.CreateOptions{})
	},
		func(n string) error { return c.Delete(ctx, n, metav1.DeleteOptions{}) })
}

func createPod(t *testing.T, name string, owners ...metav1.OwnerReference) *corev1.Pod {
	t.Helper()
	ctx := ctxTimeout(t, 30*time.Second)
	c := admin.CoreV1().Pods(itNS)
	tmpl := podTemplate()
	return create(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: tmpl.Labels, OwnerReferences: owners},
		Spec:       tmpl.Spec,
	}, func(p *corev1.Pod) (*corev1.Pod, error) { return c.Create(ctx, p, metav1.CreateOptions{}) },
		func(n string) error {
			return c.Delete(ctx, n, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		})
}

// itEnv is a Cache on the control plane with a fake clock for expiry and
// a registry of its own.
type itEnv struct {
	cache *owner.Cache
	gets  *getCounter
	clock *clocktesting.FakeClock
	env   *env // for metric()
}

func newITEnv(t *testing.T, user string) *itEnv {
	t.Helper()
	client, gets := metadataClient(t, user)
	e := &itEnv{gets: gets, clock: clocktesting.NewFakeClock(time.Now()), env: &env{reg: prometheus.NewRegistry()}}
	var err error
	e.cache, err = owner.New(client, owner.Options{Cluster: cluster, Clock: e.clock, Registerer: e.env.reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// resolve resolves in and checks the answer and the GET requests it sent.
func (e *itEnv) resolve(t *testing.T, in, want v1alpha1.TargetRef, wantOK bool, wantGets int) {
	t.Helper()
	before := e.gets.get()
	got, ok, err := e.cache.Resolve(ctxTimeout(t, 30*time.Second), in, nil)
	if got != want || ok != wantOK || err != nil {
		t.Errorf("Resolve(%v) = %v, %v, %v; want %v, %v, nil", in, got, ok, err, want, wantOK)
	}
	if n := e.gets.get() - before; n != wantGets {
		t.Errorf("Resolve(%v) sent %d GET requests; want %d", in, n, wantGets)
	}
}

func itRef(apiVersion, kind, namespace, name string) v1alpha1.TargetRef {
	return v1alpha1.TargetRef{Cluster: cluster, APIVersion: apiVersion, Kind: kind, Namespace: namespace, Name: name}
}

var (
	deploymentGVK = appsv1.SchemeGroupVersion.WithKind("Deployment")
	replicaSetGVK = appsv1.SchemeGroupVersion.WithKind("ReplicaSet")
)

// TestIntegrationDeploymentChain: a Pod of a ReplicaSet of a Deployment
// resolves to the Deployment with three requests cold, none warm and one
// for a sibling Pod; once the Deployment is deleted, and the cache has
// expired, it resolves to the Deployment it had, from memory; a Deployment
// re-created under the same name is not taken for the owner: a Cache
// that remembers nothing falls back to the Pod.
func TestIntegrationDeploymentChain(t *testing.T) {
	d := createDeployment(t, "web")
	rs := createReplicaSet(t, "web-abc", controllerRef(d, deploymentGVK))
	createPod(t, "web-abc-1", controllerRef(rs, replicaSetGVK))
	createPod(t, "web-abc-2", controllerRef(rs, replicaSetGVK))
	e := newITEnv(t, "")
	p1, p2 := itRef("v1", "Pod", itNS, "web-abc-1"), itRef("v1", "Pod", itNS, "web-abc-2")
	deploy := itRef("apps/v1", "Deployment", itNS, "web")

	e.resolve(t, p1, deploy, true, 3)
	e.resolve(t, p1, deploy, true, 0)
	e.resolve(t, p2, deploy, true, 1)
	e.resolve(t, itRef("apps/v1", "ReplicaSet", itNS, "web-abc"), deploy, true, 0)

	ctx := ctxTimeout(t, 30*time.Second)
	if err := admin.AppsV1().Deployments(itNS).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete deployment: %v", err)
	}
	// Within TTL the cache still answers; that staleness is the price of
	// not reading three objects per signal.
	e.clock.Step(owner.DefaultTTL - time.Second)
	e.resolve(t, p1, deploy, true, 0)
	e.clock.Step(time.Second)
	e.resolve(t, p1, deploy, true, 3)
	if n := e.env.metric(t, "resolves_total", "outcome", "remembered"); n != 1 {
		t.Errorf("resolves_total{outcome=remembered} = %v; want 1", n)
	}

	// The same name, a new object: the ReplicaSet's reference names the
	// old UID. The Cache that resolved p1 remembers; a fresh one, which
	// does not, falls back.
	createDeployment(t, "web")
	e.clock.Step(owner.DefaultTTL / 3)
	e.resolve(t, p1, deploy, true, 1)
	fresh := newITEnv(t, "")
	fresh.resolve(t, p2, p2, false, 3)
	if n := fresh.env.metric(t, "fallbacks_total", "reason", "owner_replaced"); n != 1 {
		t.Errorf("fallbacks_total{reason=owner_replaced} = %v; want 1", n)
	}
}

// TestIntegrationOtherChains: Job of a CronJob, Pod of a StatefulSet, a
// Node and a bare Pod, on a real API server.
func TestIntegrationOtherChains(t *testing.T) {
	ctx := ctxTimeout(t, 30*time.Second)
	cjs := admin.BatchV1().CronJobs(itNS)
	cj := create(t, &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "backup"},
		Spec: batchv1.CronJobSpec{
			Schedule: "0 3 * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: func() corev1.PodTemplateSpec {
				tmpl := podTemplate()
				tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
				return tmpl
			}()}},
		},
	}, func(o *batchv1.CronJob) (*batchv1.CronJob, error) { return cjs.Create(ctx, o, metav1.CreateOptions{}) },
		func(n string) error { return cjs.Delete(ctx, n, metav1.DeleteOptions{}) })
	jobs := admin.BatchV1().Jobs(itNS)
	jobTmpl := podTemplate()
	jobTmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	job := create(t, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "backup-123", OwnerReferences: []metav1.OwnerReference{controllerRef(cj, batchv1.SchemeGroupVersion.WithKind("CronJob"))}},
		Spec: batchv1.JobSpec{
			Template: jobTmpl,
		},
	}, func(o *batchv1.Job) (*batchv1.Job, error) { return jobs.Create(ctx, o, metav1.CreateOptions{}) },
		func(n string) error {
			return jobs.Delete(ctx, n, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
		})
	createPod(t, "backup-123-x", controllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job")))

	stss := admin.AppsV1().StatefulSets(itNS)
	sts := create(t, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.StatefulSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podTemplate(),
		},
	}, func(o *appsv1.StatefulSet) (*appsv1.StatefulSet, error) {
		return stss.Create(ctx, o, metav1.CreateOptions{})
	},
		func(n string) error { return stss.Delete(ctx, n, metav1.DeleteOptions{}) })
	createPod(t, "db-0", controllerRef(sts, appsv1.SchemeGroupVersion.WithKind("StatefulSet")))
	createPod(t, "lonely")

	nodes := admin.CoreV1().Nodes()
	create(t, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1"}},
		func(o *corev1.Node) (*corev1.Node, error) { return nodes.Create(ctx, o, metav1.CreateOptions{}) },
		func(n string) error { return nodes.Delete(ctx, n, metav1.DeleteOptions{}) })

	e := newITEnv(t, "")
	cron := itRef("batch/v1", "CronJob", itNS, "backup")
	e.resolve(t, itRef("batch/v1", "Job", itNS, "backup-123"), cron, true, 2)
	e.resolve(t, itRef("v1", "Pod", itNS, "backup-123-x"), cron, true, 1)
	e.resolve(t, itRef("v1", "Pod", itNS, "db-0"), itRef("apps/v1", "StatefulSet", itNS, "db"), true, 2)
	e.resolve(t, itRef("v1", "Pod", itNS, "lonely"), itRef("v1", "Pod", itNS, "lonely"), false, 1)
	e.resolve(t, itRef("v1", "Node", "", "worker-1"), itRef("v1", "Node", "", "worker-1"), false, 1)
	e.resolve(t, itRef("v1", "Node", "", "worker-404"), itRef("v1", "Node", "", "worker-404"), false, 1)
}

// TestIntegrationPermissions: a client that may read nothing gets an
// error, not a guess, counted as forbidden; a client with exactly the
// permissions the package documents resolves.
func TestIntegrationPermissions(t *testing.T) {
	d := createDeployment(t, "api")
	rs := createReplicaSet(t, "api-abc", controllerRef(d, deploymentGVK))
	createPod(t, "api-abc-1", controllerRef(rs, replicaSetGVK))
	pod := itRef("v1", "Pod", itNS, "api-abc-1")

	nobody := newITEnv(t, "nobody")
	for i, wantGets := range []int{1, 0} { // the failure is remembered
		before := nobody.gets.get()
		_, _, err := nobody.cache.Resolve(ctxTimeout(t, 30*time.Second), pod, nil)
		if !errors.Is(err, owner.ErrUnresolved) || !apierrors.IsForbidden(err) {
			t.Errorf("Resolve %d as nobody: error %v; want ErrUnresolved and Forbidden", i, err)
		}
		if n := nobody.gets.get() - before; n != wantGets {
			t.Errorf("Resolve %d as nobody sent %d GET requests; want %d", i, n, wantGets)
		}
	}
	if n := nobody.env.metric(t, "errors_total", "reason", "forbidden"); n != 2 {
		t.Errorf("errors_total{reason=forbidden} = %v; want 2", n)
	}

	ctx := ctxTimeout(t, 30*time.Second)
	get := []string{"get"}
	role := create(t, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "owner-resolver-test"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "replicationcontrollers", "persistentvolumeclaims", "services", "nodes"}, Verbs: get},
			{APIGroups: []string{"apps"}, Resources: []string{"replicasets", "deployments", "statefulsets", "daemonsets"}, Verbs: get},
			{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}, Verbs: get},
		},
	}, func(o *rbacv1.ClusterRole) (*rbacv1.ClusterRole, error) {
		return admin.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
	}, func(n string) error { return admin.RbacV1().ClusterRoles().Delete(ctx, n, metav1.DeleteOptions{}) })
	create(t, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "owner-resolver-test"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "gateway"}},
	}, func(o *rbacv1.ClusterRoleBinding) (*rbacv1.ClusterRoleBinding, error) {
		return admin.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
	}, func(n string) error {
		return admin.RbacV1().ClusterRoleBindings().Delete(ctx, n, metav1.DeleteOptions{})
	})

	// The authorizer's cache of RBAC objects follows a watch: wait until
	// the binding is in force before asserting on a Cache.
	client, _ := metadataClient(t, "gateway")
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := client.Resource(schema.GroupVersionResource{Version: "v1", Resource: "pods"}).Namespace(itNS).Get(ctx, "api-abc-1", metav1.GetOptions{})
		if err == nil {
			break
		}
		if !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			t.Fatalf("reading a pod as gateway: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	gw := newITEnv(t, "gateway")
	gw.resolve(t, pod, itRef("apps/v1", "Deployment", itNS, "api"), true, 3)
}

// TestIntegrationPodOfDeletedReplicaSet: a Pod still terminating after a
// rollout that keeps no old ReplicaSets deleted its ReplicaSet resolves,
// on a Cache that remembers nothing, to the Deployment its ReplicaSet's
// name and its pod-template-hash label imply, which exists.
func TestIntegrationPodOfDeletedReplicaSet(t *testing.T) {
	const hash = "7d4b9c8f6b"
	d := createDeployment(t, "rolled")
	rs := createReplicaSet(t, "rolled-"+hash, controllerRef(d, deploymentGVK))
	ctx := ctxTimeout(t, 30*time.Second)
	pods := admin.CoreV1().Pods(itNS)
	tmpl := podTemplate()
	create(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            "rolled-" + hash + "-x2kqp",
			Labels:          map[string]string{"app": "web", "pod-template-hash": hash},
			OwnerReferences: []metav1.OwnerReference{controllerRef(rs, replicaSetGVK)},
		},
		Spec: tmpl.Spec,
	}, func(p *corev1.Pod) (*corev1.Pod, error) { return pods.Create(ctx, p, metav1.CreateOptions{}) },
		func(n string) error {
			return pods.Delete(ctx, n, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		})
	// No garbage collector runs here: the Pod outlives its ReplicaSet, as
	// a terminating one does.
	if err := admin.AppsV1().ReplicaSets(itNS).Delete(ctx, rs.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete replicaset: %v", err)
	}
	e := newITEnv(t, "")
	pod := itRef("v1", "Pod", itNS, "rolled-"+hash+"-x2kqp")
	deploy := itRef("apps/v1", "Deployment", itNS, "rolled")
	e.resolve(t, pod, deploy, true, 3) // the Pod, the ReplicaSet (NotFound), the Deployment
	if n := e.env.metric(t, "resolves_total", "outcome", "inferred"); n != 1 {
		t.Errorf("resolves_total{outcome=inferred} = %v; want 1", n)
	}
}
