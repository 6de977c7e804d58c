package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// TargetRef names one Kubernetes object in one cluster. It is the
// orchestrator's unit of exclusion: at most one WorkflowExecution is active
// per TargetRef.LockKey at any time.
type TargetRef struct {
	// Cluster is the name of the cluster the object lives in.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Cluster string `json:"cluster"`

	// APIVersion of the object, such as "apps/v1" or "v1".
	// +kubebuilder:validation:MinLength=1
	APIVersion string `json:"apiVersion"`

	// Kind of the object, such as "Deployment" or "Node".
	// +kubebuilder:validation:MinLength=1
	Kind string `json:"kind"`

	// Namespace of the object; empty for cluster-scoped objects.
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// Name of the object.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// Group returns the API group of the target ("" for the core group).
func (t TargetRef) Group() string {
	group, _, found := strings.Cut(t.APIVersion, "/")
	if !found {
		return ""
	}
	return group
}

// LockKey identifies the target independently of its API version, so that
// "apps/v1 Deployment" and a future "apps/v2 Deployment" of the same object
// contend for the same lock.
func (t TargetRef) LockKey() string {
	return strings.Join([]string{t.Cluster, t.Group(), t.Kind, t.Namespace, t.Name}, "/")
}

// String is the human form used in events and logs.
func (t TargetRef) String() string {
	if t.Namespace == "" {
		return t.Cluster + ":" + t.Kind + "/" + t.Name
	}
	return t.Cluster + ":" + t.Kind + "/" + t.Namespace + "/" + t.Name
}

// TargetLabelValue is the value of LabelTarget for objects about t: a
// hex SHA-256 prefix of its lock key. The key itself cannot be a label value
// (it contains slashes and may exceed 63 characters).
func TargetLabelValue(t TargetRef) string {
	sum := sha256.Sum256([]byte(t.LockKey()))
	return hex.EncodeToString(sum[:])[:labelHashLength]
}

// FingerprintLabelValue is the value of LabelFingerprint for a fingerprint.
// Label values are limited to 63 characters, so the label holds a prefix;
// the full fingerprint is in spec.fingerprint and selectable by field.
func FingerprintLabelValue(fingerprint string) string {
	if len(fingerprint) <= labelHashLength {
		return fingerprint
	}
	return fingerprint[:labelHashLength]
}

// labelHashLength is 160 bits of hash: far beyond any collision concern for
// the number of incidents one namespace holds, and short enough for a label.
const labelHashLength = 40
