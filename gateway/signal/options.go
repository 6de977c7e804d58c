package signal

import (
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// defaultClusterLabel is the ClusterLabel used when Options leaves it empty.
const defaultClusterLabel = "cluster"

// maxClusterLength bounds a cluster name: the RR's target.cluster is a
// DNS-1123 subdomain of at most 63 characters, so that it also fits in a
// label value.
const maxClusterLength = 63

// labelNameRE is Prometheus' label name syntax. ClusterLabel must match it,
// which also keeps it safe inside a FieldError path.
var labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// Validate reports whether o can configure a decoder: Cluster is required
// and must be a DNS-1123 subdomain of at most 63 characters; ClusterLabel, if
// set, must be a Prometheus label name. The error wraps ErrInvalid and is a
// *FieldError naming the Options field.
//
// Both decoders call Validate on every call and fail the whole payload with
// its error, so a misconfigured gateway rejects everything loudly. Callers
// should call it once at start-up so that the misconfiguration is reported as
// such rather than as a stream of invalid payloads.
func (o Options) Validate() error {
	if o.Cluster == "" {
		return &FieldError{Field: "Options.Cluster", Reason: "required"}
	}
	if reason := clusterNameProblem(o.Cluster); reason != "" {
		return &FieldError{Field: "Options.Cluster", Reason: reason}
	}
	if o.ClusterLabel != "" && !labelNameRE.MatchString(o.ClusterLabel) {
		return &FieldError{
			Field:  "Options.ClusterLabel",
			Reason: quoteShort(o.ClusterLabel) + " is not a Prometheus label name",
		}
	}
	return nil
}

// withDefaults fills zero fields with their documented defaults. It is the
// only place defaults are applied.
func (o Options) withDefaults() Options {
	if o.ClusterLabel == "" {
		o.ClusterLabel = defaultClusterLabel
	}
	return o
}

// clusterNameProblem returns why name cannot be a cluster name, or "".
func clusterNameProblem(name string) string {
	if len(name) > maxClusterLength {
		return quoteShort(name) + " is longer than 63 characters"
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return quoteShort(name) + ": " + strings.Join(errs, "; ")
	}
	return ""
}
