package signal

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/alertmanager/template"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// webhookVersion is the only Alertmanager webhook protocol version accepted.
const webhookVersion = "4"

// Alert statuses as Alertmanager writes them.
const (
	alertFiring   = "firing"
	alertResolved = "resolved"
)

// webhookMessage is the body Alertmanager's webhook notifier sends: the same
// struct as notify/webhook.Message, embedding Alertmanager's own
// template.Data so that the alert fields are Alertmanager's and cannot drift
// from a hand-written copy. It is declared here because importing
// notify/webhook would pull in Alertmanager's whole notifier stack (tracing,
// HTTP client configuration, other integrations) for one struct.
type webhookMessage struct {
	*template.Data

	Version         string `json:"version"`
	GroupKey        string `json:"groupKey"`
	TruncatedAlerts uint64 `json:"truncatedAlerts"`
}

// DecodeAlertmanager decodes an Alertmanager webhook payload (version 4)
// into one Item per alert, in payload order.
//
// The error is for the payload as a whole and wraps ErrInvalid: invalid
// opts (see Options.Validate), malformed JSON, a version other than "4", or
// no alerts. A problem with one alert only makes that alert's Item a Reject
// whose Err is a *FieldError with a path such as
// "alerts[2].labels.namespace". The package documentation says how an alert
// becomes a Signal.
//
// A webhook whose sender dropped alerts (truncatedAlerts > 0, Alertmanager's
// max_alerts) decodes the alerts present; the dropped ones are not reported.
func DecodeAlertmanager(body []byte, opts Options) ([]Item, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("decode alertmanager webhook: %w", err)
	}
	opts = opts.withDefaults()

	var msg webhookMessage
	if err := json.Unmarshal(body, &msg); err != nil {
		return nil, fmt.Errorf("decode alertmanager webhook: %w", jsonError(err, "Data"))
	}
	if msg.Version != webhookVersion {
		return nil, fmt.Errorf("decode alertmanager webhook: %w", &FieldError{
			Field:  "version",
			Reason: "unsupported webhook version " + quoteShort(msg.Version) + `, want "4"`,
		})
	}
	if msg.Data == nil || len(msg.Alerts) == 0 {
		return nil, fmt.Errorf("decode alertmanager webhook: %w", &FieldError{
			Field:  "alerts",
			Reason: "no alerts",
		})
	}

	items := make([]Item, len(msg.Alerts))
	for i, a := range msg.Alerts {
		items[i] = decodeAlert(a, opts, fmt.Sprintf("alerts[%d]", i))
	}
	return items, nil
}

// decodeAlert turns one alert into an Item; path is the alert's JSON path.
func decodeAlert(a template.Alert, opts Options, path string) Item {
	switch a.Status {
	case alertFiring:
		sig, fe := alertSignal(a, opts)
		if fe != nil {
			fe.Field = path + "." + fe.Field
			return Item{Disposition: Reject, Err: fe}
		}
		return Item{Disposition: Fire, Signal: sig}
	case alertResolved:
		// A resolution creates nothing, so an alert that could not have
		// fired is not worth rejecting; its Signal is nil then.
		sig, _ := alertSignal(a, opts)
		return Item{Disposition: Ignore, Signal: sig, Reason: "alert resolved"}
	default:
		return Item{Disposition: Reject, Err: &FieldError{
			Field:  path + ".status",
			Reason: "must be \"firing\" or \"resolved\", got " + quoteShort(a.Status),
		}}
	}
}

// alertSignal builds the Signal of one alert. A *FieldError's Field is
// relative to the alert.
//
// Only the alert's own labels are read. Alertmanager puts every label on
// each alert (groupLabels and commonLabels are subsets computed from them),
// so merging commonLabels in would add nothing, and merging anything else
// would attribute one alert's labels to another.
func alertSignal(a template.Alert, opts Options) (*Signal, *FieldError) {
	name := a.Labels["alertname"]
	switch {
	case name == "":
		return nil, &FieldError{Field: "labels.alertname", Reason: "required"}
	case len(name) > maxNameLength:
		return nil, &FieldError{Field: "labels.alertname", Reason: "longer than 253 characters"}
	}

	target, fe := targetFromLabels(a.Labels)
	if fe != nil {
		return nil, fe
	}
	target.Cluster = opts.Cluster
	if c := a.Labels[opts.ClusterLabel]; c != "" {
		if reason := clusterNameProblem(c); reason != "" {
			return nil, &FieldError{Field: "labels." + opts.ClusterLabel, Reason: reason}
		}
		target.Cluster = c
	}

	return &Signal{
		Source:      v1alpha1.SourceAlertmanager,
		Name:        name,
		Severity:    truncate(a.Labels["severity"], maxSeverityLength),
		Target:      target,
		FiringTime:  firstNonZero(a.StartsAt),
		Labels:      boundedCopy(a.Labels, maxLabelValueLength),
		Annotations: boundedCopy(a.Annotations, maxAnnotationValueLength),
	}, nil
}

// jsonError turns a JSON decoding error into one wrapping ErrInvalid: a
// *FieldError when the decoder names the field (a value of the wrong type),
// a plain message otherwise (syntax, a malformed timestamp). The decoder's
// path starts with the Go names of embedded structs, which are not in the
// JSON; embedded lists them for removal.
func jsonError(err error, embedded ...string) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		field := typeErr.Field
		for _, e := range embedded {
			field = strings.TrimPrefix(field, e+".")
		}
		return &FieldError{
			Field:  field,
			Reason: "cannot decode JSON " + typeErr.Value + " into " + typeErr.Type.String(),
		}
	}
	return fmt.Errorf("%w: malformed JSON: %v", ErrInvalid, err)
}
