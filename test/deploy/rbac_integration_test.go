//go:build integration

package deploy_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/leasehold/leasehold/gateway"
)

// The ServiceAccounts of the kustomization, and one it does not create.
const (
	gatewaySA      = "leasehold-gateway"
	orchestratorSA = "leasehold-orchestrator"
	executorSA     = "leasehold-executor"
	// otherNS is a namespace the services have no business in.
	otherNS = "elsewhere"
	// The sender that deploy/examples/alertmanager-rbac.yaml authorises.
	alertmanagerNS = "monitoring"
	alertmanagerSA = "alertmanager"
)

// identity is a ServiceAccount as the authorizer sees it: its user name and
// the groups every ServiceAccount token carries.
type identity struct{ namespace, name string }

func (i identity) user() string { return "system:serviceaccount:" + i.namespace + ":" + i.name }

func (i identity) groups() []string {
	return []string{"system:serviceaccounts", "system:serviceaccounts:" + i.namespace, "system:authenticated"}
}

func sa(name string) identity { return identity{ns, name} }

// perms builds "verb group/resource" entries; the core group is "core".
func perms(group string, resources []string, verbs ...string) []string {
	var out []string
	for _, r := range resources {
		for _, v := range verbs {
			out = append(out, v+" "+group+"/"+r)
		}
	}
	return out
}

func join(sets ...[]string) []string {
	var out []string
	for _, s := range sets {
		out = append(out, s...)
	}
	sort.Strings(out)
	return out
}

var (
	// leasePerms are the verbs package lease documents, on leases.
	leasePerms = perms("coordination.k8s.io", []string{"leases"}, "get", "list", "watch", "create", "update", "delete")

	// gatewayClusterPerms: owner lookups of the kinds package
	// gateway/owner follows, and the two reviews of authentication.
	gatewayClusterPerms = join(
		perms("core", []string{"pods", "replicationcontrollers", "persistentvolumeclaims", "services", "nodes"}, "get"),
		perms("apps", []string{"replicasets", "deployments", "statefulsets", "daemonsets"}, "get"),
		perms("batch", []string{"jobs", "cronjobs"}, "get"),
		perms("authentication.k8s.io", []string{"tokenreviews"}, "create"),
		perms("authorization.k8s.io", []string{"subjectaccessreviews"}, "create"),
	)

	// rulesIn is, per ServiceAccount and namespace, every permission it
	// must have there beyond what any ServiceAccount has: no more, no less.
	rulesIn = map[identity]map[string][]string{
		sa(gatewaySA): {
			ns: join(leasePerms, gatewayClusterPerms,
				perms("leasehold.dev", []string{"remediationrequests"}, "get", "list", "create"),
				perms("leasehold.dev", []string{"remediationrequests/status"}, "update"),
			),
			otherNS: gatewayClusterPerms,
		},
		sa(orchestratorSA): {
			ns: join(leasePerms,
				perms("leasehold.dev", []string{"remediationrequests"}, "get", "list", "watch", "patch", "delete"),
				perms("leasehold.dev", []string{"remediationrequests/status"}, "patch"),
				perms("leasehold.dev", []string{"workflowexecutions"}, "get", "list", "watch", "create", "delete"),
				perms("leasehold.dev", []string{"workflowexecutions/status"}, "patch"),
				perms("events.k8s.io", []string{"events"}, "create", "patch"),
			),
			otherNS: nil,
		},
		sa(executorSA): {
			ns: join(
				perms("leasehold.dev", []string{"workflowexecutions"}, "get", "list", "watch"),
				perms("leasehold.dev", []string{"workflowexecutions/status"}, "update"),
			),
			otherNS: nil,
		},
	}
)

// TestServiceAccountRules lists, by impersonating each ServiceAccount, the
// rules the API server's authorizer grants it (SelfSubjectRulesReview), less
// those that a ServiceAccount without bindings has too, and compares them
// with what its service's code does: exactly, in the services' namespace and
// in another.
func TestServiceAccountRules(t *testing.T) {
	install(t)
	ctx := ctxTimeout(t, time.Minute)
	for _, namespace := range []string{ns, otherNS} {
		baseRes, baseNonRes := rulesOf(ctx, t, sa("no-bindings"), namespace)
		for who, byNS := range rulesIn {
			res, nonRes := rulesOf(ctx, t, who, namespace)
			got := subtract(res, baseRes)
			want := byNS[namespace]
			if !slices.Equal(got, want) {
				t.Errorf("%s in %s:\n  granted but not needed: %s\n  needed but not granted: %s",
					who.name, namespace, list(subtract(got, want)), list(subtract(want, got)))
			}
			if extra := subtract(nonRes, baseNonRes); len(extra) > 0 {
				t.Errorf("%s: non-resource rules beyond the baseline: %s", who.name, strings.Join(extra, ", "))
			}
		}
	}
}

// TestServiceAccountAccess asks the authorizer (SubjectAccessReview) the
// questions that matter most, one by one: the lock verbs where the locks
// live and nowhere else, each service's writes, and a sample of what none of
// them may do.
func TestServiceAccountAccess(t *testing.T) {
	install(t)
	ctx := ctxTimeout(t, time.Minute)
	type check struct {
		who                            identity
		verb, group, resource, sub, in string
		allowed                        bool
	}
	var checks []check
	allLeaseVerbs := []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
	for _, who := range []identity{sa(gatewaySA), sa(orchestratorSA), sa(executorSA)} {
		for _, v := range allLeaseVerbs {
			// Exactly the library's verbs, only in its namespace, only
			// for the services that lock.
			libraryVerb := v != "patch" && v != "deletecollection"
			checks = append(checks,
				check{who, v, "coordination.k8s.io", "leases", "", ns, libraryVerb && who.name != executorSA},
				check{who, v, "coordination.k8s.io", "leases", "", otherNS, false},
				check{who, v, "coordination.k8s.io", "leases", "", "kube-system", false},
			)
		}
		for _, v := range []string{"get", "list", "watch"} {
			checks = append(checks, check{who, v, "", "secrets", "", ns, false}, check{who, v, "", "secrets", "", otherNS, false})
		}
		checks = append(checks,
			check{who, "create", "", "pods", "", ns, false},
			check{who, "update", "leasehold.dev", "remediationrequests", "", ns, false},
			check{who, "create", "rbac.authorization.k8s.io", "rolebindings", "", ns, false},
			check{who, "create", "", "serviceaccounts", "token", ns, false},
		)
	}
	gw, orch, exe := sa(gatewaySA), sa(orchestratorSA), sa(executorSA)
	checks = append(checks,
		// The gateway records and counts, never removes.
		check{gw, "create", "leasehold.dev", "remediationrequests", "", ns, true},
		check{gw, "update", "leasehold.dev", "remediationrequests", "status", ns, true},
		check{gw, "delete", "leasehold.dev", "remediationrequests", "", ns, false},
		check{gw, "create", "leasehold.dev", "remediationrequests", "", otherNS, false},
		check{gw, "create", "leasehold.dev", "workflowexecutions", "", ns, false},
		check{gw, "get", "", "pods", "", otherNS, true},
		check{gw, "list", "", "pods", "", otherNS, false},
		check{gw, "get", "apps", "deployments", "", otherNS, true},
		check{gw, "patch", "apps", "deployments", "", otherNS, false},
		check{gw, "create", "authentication.k8s.io", "tokenreviews", "", "", true},
		check{gw, "create", "authorization.k8s.io", "subjectaccessreviews", "", "", true},
		// The orchestrator starts executions and ends them; it never
		// creates requests and reads nothing outside its namespace.
		check{orch, "create", "leasehold.dev", "workflowexecutions", "", ns, true},
		check{orch, "patch", "leasehold.dev", "workflowexecutions", "status", ns, true},
		check{orch, "patch", "leasehold.dev", "remediationrequests", "", ns, true},
		check{orch, "create", "leasehold.dev", "remediationrequests", "", ns, false},
		check{orch, "get", "", "pods", "", otherNS, false},
		check{orch, "create", "events.k8s.io", "events", "", ns, true},
		check{orch, "create", "events.k8s.io", "events", "", otherNS, false},
		check{orch, "create", "authentication.k8s.io", "tokenreviews", "", "", false},
		// The executor only moves executions' status.
		check{exe, "update", "leasehold.dev", "workflowexecutions", "status", ns, true},
		check{exe, "update", "leasehold.dev", "workflowexecutions", "", ns, false},
		check{exe, "get", "leasehold.dev", "remediationrequests", "", ns, false},
		check{exe, "create", "leasehold.dev", "workflowexecutions", "", ns, false},
	)
	for _, c := range checks {
		got := allowed(ctx, t, c.who, authorizationv1.ResourceAttributes{
			Namespace: c.in, Verb: c.verb, Group: c.group, Resource: c.resource, Subresource: c.sub,
		})
		if got != c.allowed {
			t.Errorf("%s may %s %s %s/%s in %q: %v, want %v", c.who.name, c.verb, c.group, c.resource, c.sub, c.in, got, c.allowed)
		}
	}
}

// TestAlertmanagerExampleRBAC applies the example binding for a sender and
// checks that it grants exactly what the gateway's access review asks for.
func TestAlertmanagerExampleRBAC(t *testing.T) {
	installExampleRBAC(t)
	ctx := ctxTimeout(t, time.Minute)
	am := identity{alertmanagerNS, alertmanagerSA}
	asked := authorizationv1.ResourceAttributes{Namespace: ns, Verb: gateway.AccessVerb, Group: "leasehold.dev", Resource: gateway.AccessResource}
	if !allowed(ctx, t, am, asked) {
		t.Errorf("the example sender may not %s %s in %s: the gateway would answer 403", asked.Verb, asked.Resource, ns)
	}
	elsewhere := asked
	elsewhere.Namespace = otherNS
	if allowed(ctx, t, am, elsewhere) {
		t.Errorf("the example sender may %s %s in %s", asked.Verb, asked.Resource, otherNS)
	}
	base, _ := rulesOf(ctx, t, identity{alertmanagerNS, "no-bindings"}, ns)
	res, _ := rulesOf(ctx, t, am, ns)
	want := perms("leasehold.dev", []string{gateway.AccessResource}, gateway.AccessVerb)
	if got := subtract(res, base); !slices.Equal(got, want) {
		t.Errorf("the example sender is granted %q, want %q", got, want)
	}
}

// exampleRBAC applies deploy/examples/alertmanager-rbac.yaml once.
var exampleRBAC struct {
	once sync.Once
	err  error
}

func installExampleRBAC(t testing.TB) {
	t.Helper()
	install(t)
	objs := readObjects(t, "deploy/examples/alertmanager-rbac.yaml")
	exampleRBAC.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, u := range objs {
			if err := apply(ctx, admin, u, false); err != nil {
				exampleRBAC.err = fmt.Errorf("apply %s: %w", id(u), err)
				return
			}
		}
		exampleRBAC.err = waitForBindings(ctx, objs, rendered.objs)
	})
	if exampleRBAC.err != nil {
		t.Fatal(exampleRBAC.err)
	}
}

// allowed asks the authorizer whether who may do what.
func allowed(ctx context.Context, t testing.TB, who identity, what authorizationv1.ResourceAttributes) bool {
	t.Helper()
	r, err := adminSet.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{User: who.user(), Groups: who.groups(), ResourceAttributes: &what},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("subject access review: %v", err)
	}
	return r.Status.Allowed
}

// rulesOf returns who's rules in namespace, expanded to sorted
// "verb group/resource" entries (resource rules) and "verb url" entries
// (non-resource rules), as seen by impersonating who.
func rulesOf(ctx context.Context, t testing.TB, who identity, namespace string) (resource, nonResource []string) {
	t.Helper()
	cfg := rest.CopyConfig(cp.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: who.user(), Groups: who.groups()}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := cs.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx, &authorizationv1.SelfSubjectRulesReview{
		Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: namespace},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("rules review as %s: %v", who.user(), err)
	}
	if r.Status.Incomplete {
		t.Fatalf("rules review as %s is incomplete: %s", who.user(), r.Status.EvaluationError)
	}
	set := map[string]bool{}
	for _, rule := range r.Status.ResourceRules {
		for _, g := range rule.APIGroups {
			if g == "" {
				g = "core"
			}
			for _, res := range rule.Resources {
				for _, v := range rule.Verbs {
					e := v + " " + g + "/" + res
					if len(rule.ResourceNames) > 0 {
						e += " " + fmt.Sprint(rule.ResourceNames)
					}
					set[e] = true
				}
			}
		}
	}
	for e := range set {
		resource = append(resource, e)
	}
	set = map[string]bool{}
	for _, rule := range r.Status.NonResourceRules {
		for _, u := range rule.NonResourceURLs {
			for _, v := range rule.Verbs {
				set[v+" "+u] = true
			}
		}
	}
	for e := range set {
		nonResource = append(nonResource, e)
	}
	sort.Strings(resource)
	sort.Strings(nonResource)
	return resource, nonResource
}

// subtract returns the entries of a not in b, sorted.
func subtract(a, b []string) []string {
	var out []string
	for _, e := range a {
		if !slices.Contains(b, e) {
			out = append(out, e)
		}
	}
	sort.Strings(out)
	return out
}

// waitForBindings waits until the authorizer acts on the bindings among
// objs: the RBAC authorizer reads roles and bindings from an informer, so a
// binding just applied takes effect a moment later. For each subject of each
// binding it polls one permission of every rule of the bound role (found
// among roles) until a SubjectAccessReview allows it.
func waitForBindings(ctx context.Context, objs, roles []*unstructured.Unstructured) error {
	byID := map[string]*unstructured.Unstructured{}
	for _, u := range roles {
		byID[id(u)] = u
	}
	for _, u := range objs {
		if u.GetKind() != "RoleBinding" && u.GetKind() != "ClusterRoleBinding" {
			continue
		}
		var b rbacv1.RoleBinding
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &b); err != nil {
			return err
		}
		roleID := "ClusterRole/" + b.RoleRef.Name
		if b.RoleRef.Kind == "Role" {
			roleID = "Role/" + b.Namespace + "/" + b.RoleRef.Name
		}
		ru, ok := byID[roleID]
		if !ok {
			return fmt.Errorf("%s: role %s not found", id(u), roleID)
		}
		var role rbacv1.Role // a ClusterRole has the same rules
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(ru.Object, &role); err != nil {
			return err
		}
		for _, s := range b.Subjects {
			who := identity{s.Namespace, s.Name}
			for _, r := range role.Rules {
				res, sub, _ := strings.Cut(r.Resources[0], "/")
				attrs := authorizationv1.ResourceAttributes{
					Namespace: b.Namespace, Verb: r.Verbs[0], Group: r.APIGroups[0], Resource: res, Subresource: sub,
				}
				if err := pollAllowed(ctx, who, attrs); err != nil {
					return fmt.Errorf("%s: %w", id(u), err)
				}
			}
		}
	}
	return nil
}

// pollAllowed polls a SubjectAccessReview until it allows, or ctx ends.
func pollAllowed(ctx context.Context, who identity, attrs authorizationv1.ResourceAttributes) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		r, err := adminSet.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: who.user(), Groups: who.groups(), ResourceAttributes: &attrs},
		}, metav1.CreateOptions{})
		if err == nil && r.Status.Allowed {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s is still not allowed to %s %s/%s: %w (last error: %v)", who.user(), attrs.Verb, attrs.Resource, attrs.Subresource, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

func list(entries []string) string {
	if len(entries) == 0 {
		return "none"
	}
	return strings.Join(entries, ", ")
}
