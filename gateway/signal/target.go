package signal

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// kind is an object kind the decoders know the API version and scope of.
type kind struct {
	apiVersion string
	name       string
	namespaced bool
}

var (
	kindPod                   = kind{"v1", "Pod", true}
	kindDeployment            = kind{"apps/v1", "Deployment", true}
	kindStatefulSet           = kind{"apps/v1", "StatefulSet", true}
	kindDaemonSet             = kind{"apps/v1", "DaemonSet", true}
	kindReplicaSet            = kind{"apps/v1", "ReplicaSet", true}
	kindJob                   = kind{"batch/v1", "Job", true}
	kindCronJob               = kind{"batch/v1", "CronJob", true}
	kindNode                  = kind{"v1", "Node", false}
	kindPersistentVolumeClaim = kind{"v1", "PersistentVolumeClaim", true}
	kindService               = kind{"v1", "Service", true}
)

// targetLabels maps alert labels to the kind they name, most specific first:
// the first label present decides the target. The package documentation
// carries the same table; keep them in step.
//
// "job" is deliberately absent: Prometheus sets it to the scrape job on every
// series, so it names a scrape configuration, not a batch/v1 Job.
// kube-state-metrics emits the Job's name as "job_name" for that reason.
var targetLabels = []struct {
	label string
	kind  kind
}{
	{"pod", kindPod},
	{"deployment", kindDeployment},
	{"statefulset", kindStatefulSet},
	{"daemonset", kindDaemonSet},
	{"replicaset", kindReplicaSet},
	{"job_name", kindJob},
	{"cronjob", kindCronJob},
	{"node", kindNode},
	{"persistentvolumeclaim", kindPersistentVolumeClaim},
	{"service", kindService},
}

// targetLabelNames lists targetLabels for error messages.
var targetLabelNames = func() string {
	names := make([]string, len(targetLabels))
	for i, t := range targetLabels {
		names[i] = t.label
	}
	return strings.Join(names, ", ")
}()

// knownAPIVersions gives the API version of the kinds above by kind name,
// for events whose object reference leaves apiVersion empty (the kubelet
// does so for Node events).
var knownAPIVersions = func() map[string]string {
	m := make(map[string]string, len(targetLabels))
	for _, t := range targetLabels {
		m[t.kind.name] = t.kind.apiVersion
	}
	return m
}()

// targetFromLabels extracts the object an alert names (see the package
// documentation). On failure it returns a *FieldError whose Field is
// relative to the alert ("labels.namespace"); the caller prefixes it.
// cluster is filled in by the caller.
func targetFromLabels(labels map[string]string) (v1alpha1.TargetRef, *FieldError) {
	for _, t := range targetLabels {
		name := labels[t.label]
		if name == "" {
			continue
		}
		if reason := objectNameProblem(name); reason != "" {
			return v1alpha1.TargetRef{}, &FieldError{Field: "labels." + t.label, Reason: reason}
		}
		ref := v1alpha1.TargetRef{APIVersion: t.kind.apiVersion, Kind: t.kind.name, Name: name}
		if !t.kind.namespaced {
			// A cluster-scoped object has no namespace even when the
			// alert carries one (usually the exporter's own).
			return ref, nil
		}
		ns := labels["namespace"]
		if ns == "" {
			return v1alpha1.TargetRef{}, &FieldError{
				Field:  "labels.namespace",
				Reason: "required for " + t.kind.name + " (from label " + t.label + ")",
			}
		}
		if reason := namespaceProblem(ns); reason != "" {
			return v1alpha1.TargetRef{}, &FieldError{Field: "labels.namespace", Reason: reason}
		}
		ref.Namespace = ns
		return ref, nil
	}
	return v1alpha1.TargetRef{}, &FieldError{
		Field:  "labels",
		Reason: "no label names a target object; want one of " + targetLabelNames,
	}
}

// objectNameProblem returns why name cannot be an object name, or "".
func objectNameProblem(name string) string {
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return quoteShort(name) + " is not a valid object name: " + strings.Join(errs, "; ")
	}
	return ""
}

// namespaceProblem returns why ns cannot be a namespace, or "".
func namespaceProblem(ns string) string {
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return quoteShort(ns) + " is not a valid namespace: " + strings.Join(errs, "; ")
	}
	return ""
}

// kindRE is the shape of a Kubernetes kind name.
var kindRE = regexp.MustCompile(`^[A-Z][A-Za-z0-9]{0,62}$`)

// kindProblem returns why k cannot be a kind, or "".
func kindProblem(k string) string {
	if !kindRE.MatchString(k) {
		return quoteShort(k) + " is not a kind name (an upper-case letter, then letters and digits, at most 63)"
	}
	return ""
}

// apiVersionProblem returns why v cannot be an API version ("v1",
// "group/version"), or "".
func apiVersionProblem(v string) string {
	group, version, grouped := strings.Cut(v, "/")
	if !grouped {
		group, version = "", v
	}
	badGroup := grouped && len(validation.IsDNS1123Subdomain(group)) > 0
	if badGroup || len(validation.IsDNS1035Label(version)) > 0 {
		return quoteShort(v) + ` is not an API version ("v1" or "group/version")`
	}
	return ""
}

// Bounds on what a Signal copies from a payload. A RemediationRequest
// stores the first signal's labels and annotations in its spec; these keep
// it small (at most about 100 KiB of labels and annotations together, far
// below the API server's object size limit) whatever the sender puts in.
const (
	// maxNameLength is the RR's signalName limit. Longer names are
	// rejected rather than cut: the name identifies the signal.
	maxNameLength = 253
	// maxSeverityLength is the RR's severity limit. Longer values are cut.
	maxSeverityLength = 63
	// maxEntries bounds the entries of Labels and of Annotations. Beyond
	// it, the entries with the lexically smallest keys are kept, so the
	// choice does not depend on map order.
	maxEntries = 64
	// maxKeyLength bounds a label or annotation name. Longer keys are
	// dropped, not cut: two cut keys could collide.
	maxKeyLength = 128
	// maxLabelValueLength and maxAnnotationValueLength bound values, which
	// are cut (at a UTF-8 boundary) beyond them. Annotations hold prose
	// (summary, description) and get more room.
	maxLabelValueLength      = 256
	maxAnnotationValueLength = 1024
)

// boundedCopy copies m under the bounds above. It returns nil for an empty
// map so that an RR does not carry empty objects.
func boundedCopy(m map[string]string, maxValue int) map[string]string {
	keys := make([]string, 0, len(m))
	for k := range m {
		if len(k) <= maxKeyLength {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if len(keys) > maxEntries {
		slices.Sort(keys)
		keys = keys[:maxEntries]
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		out[k] = truncate(m[k], maxValue)
	}
	return out
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
// Decoded JSON strings are valid UTF-8, so the result is too.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// quoteShort quotes a payload value for an error message, cut so that a
// hostile payload cannot make error messages (and logs) large.
func quoteShort(s string) string {
	const limit = 64
	if len(s) <= limit {
		return strconv.Quote(s)
	}
	return strconv.Quote(truncate(s, limit)) + "..."
}
