package owner

import (
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
)

// What remains of an object that is gone is the signal about it: its name,
// and the labels its sender attached. From them candidates derives the
// owners the object may have had, confirms decides, from a lookup of a
// candidate, whether to believe it, and infer which candidate, if any, is
// the owner. What remains of a ReplicaSet that is gone while its Pod
// exists is the Pod's controller reference and pod-template-hash label:
// from them deploymentOfGoneReplicaSet derives its Deployment. All are
// pure; Resolve does the lookups.

// proof is what a lookup of a candidate must show for the candidate to be
// believed.
type proof int

const (
	// proofExists: the candidate exists. Enough for an owner named by
	// the signal's own labels, which an exporter copied from the object's
	// ownerReferences, and for a StatefulSet, DaemonSet or Job whose name
	// is the Pod's name without the suffix its controller adds.
	proofExists proof = iota
	// proofDeploymentReplicaSet: the candidate is a ReplicaSet controlled
	// by a Deployment, and its name is that Deployment's name and its own
	// pod-template-hash label, as the Deployment controller names them
	// (and, when the signal carried the Pod's pod-template-hash, that
	// label is the same). Required of a ReplicaSet guessed from a Pod's
	// name, since names alone can collide.
	proofDeploymentReplicaSet
)

// candidate is an owner an object that is gone may have had.
type candidate struct {
	key objectKey
	// apiVersion is the version the answer carries if the candidate is
	// the workload.
	apiVersion string
	proof      proof
	// podTemplateHash, with proofDeploymentReplicaSet, is the hash the
	// signal says the Pod carried; "" if it did not say.
	podTemplateHash string
	// fromLabel is the label the candidate was read from, "" when it was
	// derived from the object's name. For logs.
	fromLabel string
}

// Owner labels as exporters write them, most trustworthy first. Each pair
// names a kind and an object of the signal's namespace.
//
//   - owner_kind/owner_name: kube-state-metrics' kube_pod_owner (and
//     kube_replicaset_owner, kube_job_owner), one series per owner
//     reference; owner_is_controller says whether the reference is the
//     controller's.
//   - created_by_kind/created_by_name: kube-state-metrics' kube_pod_info,
//     the controller reference.
//   - workload_type/workload: kube-prometheus' recording rule
//     namespace_workload_pod:kube_pod_owner:relabel, whose workload type
//     is the lower-case kind of the top owner.
//
// A label is believed only for a kind that can control a Pod or own its
// controller (workloadKinds), and, for the two labels copied from a
// controller reference, a Node when the object is a Pod: the kubelet makes
// the Node the controller of a static Pod's mirror. A Node is never a
// workload type, and a Pod, a Service or a PersistentVolumeClaim never
// controls anything, whatever a label says.
var ownerLabels = []struct {
	kind, name string
	// controller, if not empty, is a label that says "false" when the
	// named object is not the controller.
	controller string
	// node: the label may name a Pod's Node.
	node bool
}{
	{"owner_kind", "owner_name", "owner_is_controller", true},
	{"created_by_kind", "created_by_name", "", true},
	{"workload_type", "workload", "", false},
}

// workloadKinds are the kinds of the table that control Pods
// (ReplicaSet, ReplicationController, StatefulSet, DaemonSet, Job) or
// their controllers (Deployment, CronJob).
var workloadKinds = []schema.GroupKind{
	replicaSetKind, {Kind: "ReplicationController"}, statefulSetKind, daemonSetKind, jobKind, deploymentKind, {Group: "batch", Kind: "CronJob"},
}

// labelKind returns the kind kindName names, as a label about obj says it,
// and whether a label of that kind is believed (see ownerLabels); node
// says whether the label may name a Pod's Node.
func labelKind(obj objectKey, node bool, kindName string) (schema.GroupKind, bool) {
	gk, ok := kindsByName[strings.ToLower(kindName)]
	switch {
	case !ok:
		// "<none>", or a kind the Cache cannot read.
		return schema.GroupKind{}, false
	case gk == nodeKind:
		return gk, node && obj.kind == podKind
	default:
		return gk, slices.Contains(workloadKinds, gk)
	}
}

// podTemplateHashLabels are the alert labels that may carry a Pod's
// pod-template-hash label: kubernetes_sd's labelmap of pod labels, and
// kube-state-metrics' kube_pod_labels.
var podTemplateHashLabels = []string{"pod_template_hash", "label_pod_template_hash"}

// kindsByName finds a kind of the table by its name alone, as exporters
// write it (without group; "ReplicaSet" or "replicaset"). The names of the
// table are unique.
var kindsByName = func() map[string]schema.GroupKind {
	m := make(map[string]schema.GroupKind, len(kinds))
	for gk := range kinds {
		m[strings.ToLower(gk.Kind)] = gk
	}
	return m
}()

var (
	podKind         = schema.GroupKind{Kind: "Pod"}
	nodeKind        = schema.GroupKind{Kind: "Node"}
	replicaSetKind  = schema.GroupKind{Group: "apps", Kind: "ReplicaSet"}
	statefulSetKind = schema.GroupKind{Group: "apps", Kind: "StatefulSet"}
	daemonSetKind   = schema.GroupKind{Group: "apps", Kind: "DaemonSet"}
	jobKind         = schema.GroupKind{Group: "batch", Kind: "Job"}
	deploymentKind  = schema.GroupKind{Group: "apps", Kind: "Deployment"}
)

// maxCandidates bounds the lookups spent on an object that is gone: one
// per owner label pair and four derived from a Pod's name.
const maxCandidates = 7

// candidates returns the owners obj (which is gone) may have had, in the
// order they should be tried: those its signal's labels name, then, for a
// Pod, those its name implies. Each is an object of the kind table, with a
// valid name, other than obj; none appears twice.
func candidates(obj objectKey, labels map[string]string) []candidate {
	var out []candidate
	add := func(c candidate) {
		if c.key == obj || len(validation.IsDNS1123Subdomain(c.key.name)) > 0 || len(out) == maxCandidates {
			return
		}
		for _, o := range out {
			if o.key == c.key {
				return
			}
		}
		out = append(out, c)
	}
	for _, l := range ownerLabels {
		kindName, name := labels[l.kind], labels[l.name]
		if kindName == "" || name == "" || (l.controller != "" && labels[l.controller] == "false") {
			continue
		}
		gk, ok := labelKind(obj, l.node, kindName)
		if !ok {
			continue
		}
		key := objectKey{kind: gk, name: name}
		if kinds[gk].namespaced {
			if obj.namespace == "" {
				continue
			}
			key.namespace = obj.namespace
		}
		add(candidate{key: key, apiVersion: apiVersionOf(gk), proof: proofExists, fromLabel: l.name})
	}
	if obj.kind != podKind {
		return out
	}
	base, suffix, ok := cutLast(obj.name)
	if !ok {
		return out
	}
	in := func(gk schema.GroupKind) objectKey {
		return objectKey{kind: gk, namespace: obj.namespace, name: base}
	}
	if isGeneratedSuffix(suffix) {
		// <replicaset>-<random>, with <replicaset> = <deployment>-<hash>.
		hash := podTemplateHash(labels)
		if _, rsHash, ok := cutLast(base); ok && (hash == "" || hash == rsHash) {
			add(candidate{key: in(replicaSetKind), apiVersion: "apps/v1", proof: proofDeploymentReplicaSet, podTemplateHash: hash})
		}
	}
	if isOrdinal(suffix) {
		add(candidate{key: in(statefulSetKind), apiVersion: "apps/v1", proof: proofExists})
	}
	if isGeneratedSuffix(suffix) {
		add(candidate{key: in(daemonSetKind), apiVersion: "apps/v1", proof: proofExists})
		add(candidate{key: in(jobKind), apiVersion: "batch/v1", proof: proofExists})
	}
	return out
}

// confirms reports whether l, the lookup of c, proves c.
func confirms(c candidate, l link) bool {
	if l.err != nil {
		return false
	}
	switch c.proof {
	case proofExists:
		return true
	case proofDeploymentReplicaSet:
		ref := l.controller
		if ref == nil || ref.Kind != deploymentKind.Kind || groupOf(ref.APIVersion) != deploymentKind.Group {
			return false
		}
		if l.podTemplateHash == "" || c.key.name != ref.Name+"-"+l.podTemplateHash {
			return false
		}
		return c.podTemplateHash == "" || c.podTemplateHash == l.podTemplateHash
	default:
		return false
	}
}

// verdict is what the lookups of a gone object's candidates decide.
type verdict int

const (
	// verdictPending: the next candidate must be looked up.
	verdictPending verdict = iota
	// verdictConfirmed: the candidate is the owner; its chain decides the
	// answer, whether or not it reaches a workload.
	verdictConfirmed
	// verdictUnknowable: the candidate's lookup did not complete. It may
	// be the owner, so no other candidate, nor the object, is answered.
	verdictUnknowable
	// verdictAmbiguous: more than one candidate derived from the name is
	// confirmed. A name that fits several owners proves none of them.
	verdictAmbiguous
	// verdictNone: no candidate is confirmed.
	verdictNone
)

// infer decides, from the lookups of cands made so far (looked[i] is the
// lookup of cands[i]; looked is a prefix), which candidate is the owner,
// or that the next must be looked up. A candidate named by a label is
// believed as soon as it is confirmed, in the order of the labels, before
// any derived from the name is looked up. The candidates derived from the
// name are all looked up, and one is believed only if it is the only one
// confirmed. The index is that of the candidate confirmed or whose lookup
// did not complete, else -1.
func infer(cands []candidate, looked []link) (int, verdict) {
	found, n := -1, 0
	for i, l := range looked {
		if f, _ := classify(l.err); f == unknowable {
			return i, verdictUnknowable
		}
		if !confirms(cands[i], l) {
			continue
		}
		if cands[i].fromLabel != "" {
			return i, verdictConfirmed
		}
		if n++; n > 1 {
			return -1, verdictAmbiguous
		}
		found = i
	}
	switch {
	case len(looked) < len(cands):
		return -1, verdictPending
	case n == 1:
		return found, verdictConfirmed
	default:
		return -1, verdictNone
	}
}

// deploymentOfGoneReplicaSet returns the Deployment whose ReplicaSet rs
// was, and true, when rs is gone and a Pod with pod-template-hash podHash
// names it as its controller: the Deployment controller names each
// ReplicaSet <deployment>-<pod-template-hash>, and gives its Pods that
// label. A Pod without the label (not a Deployment's), or whose
// ReplicaSet's name does not end in it, implies no Deployment.
func deploymentOfGoneReplicaSet(rs objectKey, podHash string) (objectKey, bool) {
	if rs.kind != replicaSetKind || podHash == "" {
		return objectKey{}, false
	}
	name, ok := strings.CutSuffix(rs.name, "-"+podHash)
	if !ok || name == "" {
		return objectKey{}, false
	}
	return objectKey{kind: deploymentKind, namespace: rs.namespace, name: name}, true
}

// podTemplateHash returns the Pod's pod-template-hash as the signal's
// labels carry it, or "".
func podTemplateHash(labels map[string]string) string {
	for _, l := range podTemplateHashLabels {
		if v := labels[l]; v != "" {
			return v
		}
	}
	return ""
}

// cutLast splits name at its last '-' into two non-empty parts.
func cutLast(name string) (before, after string, ok bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 || i == len(name)-1 {
		return "", "", false
	}
	return name[:i], name[i+1:], true
}

// generatedAlphabet is the alphabet of the API server's generated name
// suffixes (and of pod-template-hash): no vowels, no 0, 1 or 3.
const generatedAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// isGeneratedSuffix reports whether s can be the 5 characters the API
// server appends to a generateName.
func isGeneratedSuffix(s string) bool {
	if len(s) != 5 {
		return false
	}
	for i := range len(s) {
		if strings.IndexByte(generatedAlphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

// isOrdinal reports whether s can be a StatefulSet Pod's ordinal: a
// decimal number without leading zeros.
func isOrdinal(s string) bool {
	if s == "" || len(s) > 9 || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// apiVersionOf returns the version of gk the Cache reads, as an apiVersion.
func apiVersionOf(gk schema.GroupKind) string {
	return kinds[gk].resource.GroupVersion().String()
}

// groupOf returns the group of an apiVersion ("" for the core group or a
// malformed one).
func groupOf(apiVersion string) string {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return ""
	}
	return gv.Group
}
