package signal

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// Signal is one alert or one Warning event, decoded and validated, with the
// object it names. It does not yet know the workload that object belongs to:
// owner resolution and the fingerprint come later.
type Signal struct {
	// Source is the adapter that decoded the signal.
	Source v1alpha1.SignalSource
	// Name is the alert name or the event reason. Never empty.
	Name string
	// Severity as reported (the "severity" label, or the event type).
	Severity string
	// Target is the object the signal names (the RR's signalTarget).
	Target v1alpha1.TargetRef
	// FiringTime is when the source says the condition started; zero if
	// unknown.
	FiringTime time.Time
	// Labels and Annotations of the alert; for events, a small fixed set
	// (reason, type, reporting controller) so that the RR shows them.
	Labels      map[string]string
	Annotations map[string]string
}

// Disposition says what the gateway should do with one entry of a payload.
type Disposition int

const (
	// Fire: a signal to deduplicate into a RemediationRequest.
	Fire Disposition = iota
	// Ignore: a well-formed entry that creates nothing (a resolved alert, a
	// Normal event); Reason says why.
	Ignore
	// Reject: an invalid entry; Err says which field and why.
	Reject
)

// String returns "fire", "ignore" or "reject": a bounded value fit for a
// metric label.
func (d Disposition) String() string {
	switch d {
	case Fire:
		return "fire"
	case Ignore:
		return "ignore"
	case Reject:
		return "reject"
	default:
		return "Disposition(" + strconv.Itoa(int(d)) + ")"
	}
}

// Item is the decoded form of one alert of a webhook, or of one event.
type Item struct {
	Disposition Disposition
	// Signal is set for Fire, and for Ignore when the entry was otherwise
	// valid (so that a resolution can be logged against its target).
	Signal *Signal
	// Reason is a short lowercase explanation for Ignore, such as
	// "alert resolved" or "normal event".
	Reason string
	// Err is a *FieldError for Reject.
	Err error
}

// Options configures the decoders.
type Options struct {
	// Cluster is the cluster name used when a signal does not carry one.
	// Required: a DNS-1123 subdomain of at most 63 characters.
	Cluster string
	// ClusterLabel is the alert label that names the cluster, if any.
	// Default "cluster".
	ClusterLabel string
}

// ErrInvalid is wrapped by every decoding error: the payload as a whole is
// malformed (bad JSON, wrong version) or an entry is invalid. The HTTP layer
// maps it to 400.
var ErrInvalid = errors.New("invalid signal")

// FieldError names the field of the payload that made it invalid, as a JSON
// path such as "alerts[2].labels.namespace".
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Reason) }

// Is makes every FieldError match ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }
