package signal

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// The Event API versions accepted, with kind "Event".
const (
	coreEventAPIVersion   = "v1"
	eventsEventAPIVersion = "events.k8s.io/v1"
	eventKind             = "Event"
)

// event is what the decoder reads from either Event shape. objectField is
// the JSON name of the shape's object reference, for error paths.
type event struct {
	typ         string
	reason      string
	message     string
	controller  string
	object      corev1.ObjectReference
	objectField string
	firingTime  time.Time
}

// DecodeKubernetesEvent decodes one core/v1 Event ("apiVersion": "v1") or
// events.k8s.io/v1 Event, told apart by apiVersion and kind.
//
// The error is for the payload as a whole and wraps ErrInvalid: invalid
// opts (see Options.Validate), malformed JSON, or an apiVersion or kind other
// than those two (a *FieldError naming "apiVersion" or "kind"). An event that
// decodes but is unusable is an Item with Disposition Reject and a
// *FieldError naming the field, such as "involvedObject.name". The package
// documentation says how an event becomes a Signal.
func DecodeKubernetesEvent(body []byte, opts Options) (Item, error) {
	if err := opts.Validate(); err != nil {
		return Item{}, fmt.Errorf("decode kubernetes event: %w", err)
	}
	ev, err := unmarshalEvent(body)
	if err != nil {
		return Item{}, fmt.Errorf("decode kubernetes event: %w", err)
	}
	return decodeEvent(ev, opts.withDefaults()), nil
}

// unmarshalEvent decodes either Event shape into an event. It decodes
// case-sensitively, as the API server does.
func unmarshalEvent(body []byte) (event, error) {
	var tm metav1.TypeMeta
	if err := utiljson.Unmarshal(body, &tm); err != nil {
		return event{}, jsonError(err)
	}
	if tm.APIVersion != coreEventAPIVersion && tm.APIVersion != eventsEventAPIVersion {
		return event{}, &FieldError{
			Field:  "apiVersion",
			Reason: "got " + quoteShort(tm.APIVersion) + `, want "v1" or "events.k8s.io/v1"`,
		}
	}
	if tm.Kind != eventKind {
		return event{}, &FieldError{Field: "kind", Reason: "got " + quoteShort(tm.Kind) + `, want "Event"`}
	}

	if tm.APIVersion == coreEventAPIVersion {
		var e corev1.Event
		if err := utiljson.Unmarshal(body, &e); err != nil {
			return event{}, jsonError(err)
		}
		return event{
			typ:         e.Type,
			reason:      e.Reason,
			message:     e.Message,
			controller:  firstNonEmpty(e.ReportingController, e.Source.Component),
			object:      e.InvolvedObject,
			objectField: "involvedObject",
			firingTime:  firstNonZero(e.EventTime.Time, e.FirstTimestamp.Time),
		}, nil
	}
	var e eventsv1.Event
	if err := utiljson.Unmarshal(body, &e); err != nil {
		return event{}, jsonError(err)
	}
	return event{
		typ:         e.Type,
		reason:      e.Reason,
		message:     e.Note,
		controller:  firstNonEmpty(e.ReportingController, e.DeprecatedSource.Component),
		object:      e.Regarding,
		objectField: "regarding",
		firingTime:  firstNonZero(e.EventTime.Time, e.DeprecatedFirstTimestamp.Time),
	}, nil
}

// decodeEvent turns a decoded event into an Item.
func decodeEvent(ev event, opts Options) Item {
	switch ev.typ {
	case corev1.EventTypeWarning:
		sig, fe := eventSignal(ev, opts)
		if fe != nil {
			return Item{Disposition: Reject, Err: fe}
		}
		return Item{Disposition: Fire, Signal: sig}
	case corev1.EventTypeNormal:
		// Like a resolved alert: nothing to create, so an unusable Normal
		// event is ignored rather than rejected; its Signal is nil then.
		sig, _ := eventSignal(ev, opts)
		return Item{Disposition: Ignore, Signal: sig, Reason: "normal event"}
	default:
		return Item{Disposition: Reject, Err: &FieldError{
			Field:  "type",
			Reason: `must be "Normal" or "Warning", got ` + quoteShort(ev.typ),
		}}
	}
}

// eventSignal builds the Signal of an event. The target is the object the
// event is about, as the event states it: its namespace is trusted, empty
// for cluster-scoped kinds.
func eventSignal(ev event, opts Options) (*Signal, *FieldError) {
	switch {
	case ev.reason == "":
		return nil, &FieldError{Field: "reason", Reason: "required"}
	case len(ev.reason) > maxNameLength:
		return nil, &FieldError{Field: "reason", Reason: "longer than 253 characters"}
	}

	obj, field := ev.object, ev.objectField
	if obj.Kind == "" {
		return nil, &FieldError{Field: field + ".kind", Reason: "required"}
	}
	if reason := kindProblem(obj.Kind); reason != "" {
		return nil, &FieldError{Field: field + ".kind", Reason: reason}
	}
	if obj.Name == "" {
		return nil, &FieldError{Field: field + ".name", Reason: "required"}
	}
	if reason := objectNameProblem(obj.Name); reason != "" {
		return nil, &FieldError{Field: field + ".name", Reason: reason}
	}
	if obj.Namespace != "" {
		if reason := namespaceProblem(obj.Namespace); reason != "" {
			return nil, &FieldError{Field: field + ".namespace", Reason: reason}
		}
	}
	apiVersion := obj.APIVersion
	if apiVersion == "" {
		// The kubelet leaves apiVersion out of Node and Pod references;
		// for the kinds this package knows, the version is implied.
		apiVersion = knownAPIVersions[obj.Kind]
		if apiVersion == "" {
			return nil, &FieldError{Field: field + ".apiVersion", Reason: "required for kind " + quoteShort(obj.Kind)}
		}
	} else if reason := apiVersionProblem(apiVersion); reason != "" {
		return nil, &FieldError{Field: field + ".apiVersion", Reason: reason}
	}

	labels := map[string]string{
		"reason": ev.reason,
		"type":   ev.typ,
	}
	if ev.controller != "" {
		labels["reportingController"] = truncate(ev.controller, maxLabelValueLength)
	}
	var annotations map[string]string
	if ev.message != "" {
		annotations = map[string]string{"message": truncate(ev.message, maxAnnotationValueLength)}
	}
	return &Signal{
		Source:   v1alpha1.SourceKubernetesEvent,
		Name:     ev.reason,
		Severity: strings.ToLower(ev.typ),
		Target: v1alpha1.TargetRef{
			Cluster:    opts.Cluster,
			APIVersion: apiVersion,
			Kind:       obj.Kind,
			Namespace:  obj.Namespace,
			Name:       obj.Name,
		},
		FiringTime:  ev.firingTime,
		Labels:      labels,
		Annotations: annotations,
	}, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// firstNonZero returns the first time that is set, in UTC, or the zero time.
func firstNonZero(ts ...time.Time) time.Time {
	for _, t := range ts {
		if !t.IsZero() {
			return t.UTC()
		}
	}
	return time.Time{}
}
