// Package signal decodes what the gateway receives, Alertmanager webhooks and
// Kubernetes Events, into Signals: a name, a severity, and the object the
// signal is about. It does no I/O; owner resolution, fingerprinting and
// deduplication happen later, on the Signal.
//
// # Payloads and entries
//
// A decoder's error is about the payload as a whole (malformed JSON, an
// unsupported webhook version, an object that is not an Event, an empty
// alert list, invalid Options) and wraps ErrInvalid. Each entry of a valid
// payload (one alert, or the one event) becomes an Item:
//
//   - Fire: a Signal to deduplicate into a RemediationRequest.
//   - Ignore: a resolved alert or a Normal event. Signal is set when the
//     entry would otherwise have been valid, nil when not.
//   - Reject: an invalid entry. Err is a *FieldError whose Field is a JSON
//     path such as "alerts[2].labels.namespace" or "involvedObject.name";
//     it matches ErrInvalid with errors.Is.
//
// One bad alert never fails the rest of its webhook. Options are checked on
// every call (Options.Validate); check them once at start-up too.
//
// # Alertmanager (webhook version 4)
//
// The body is decoded into Alertmanager's own template.Data. Per alert:
// status must be "firing" (Fire) or "resolved" (Ignore, "alert resolved");
// Name is labels.alertname (required, at most 253 characters); Severity is
// labels.severity; FiringTime is startsAt (zero if unset). A label with an
// empty value counts as absent, as in Prometheus.
//
// The target is the first of these labels present, most specific first:
//
//	label                  kind                    apiVersion  namespace
//	pod                    Pod                     v1          required
//	deployment             Deployment              apps/v1     required
//	statefulset            StatefulSet             apps/v1     required
//	daemonset              DaemonSet               apps/v1     required
//	replicaset             ReplicaSet              apps/v1     required
//	job_name               Job                     batch/v1    required
//	cronjob                CronJob                 batch/v1    required
//	node                   Node                    v1          always empty
//	persistentvolumeclaim  PersistentVolumeClaim   v1          required
//	service                Service                 v1          required
//
// The namespace comes from labels.namespace only. The value of the chosen
// label must be a DNS-1123 subdomain and the namespace a DNS-1123 label;
// otherwise, or when no label of the table is present, or a namespaced kind
// has no namespace, the alert is rejected with the offending label as Field.
// A Node target has no namespace even when the alert carries one (usually
// the exporter's own).
//
// Two labels are deliberately not read. "job" is set by Prometheus to the
// scrape job on every series, so it would turn nearly every alert into an
// alert about a Job named after a scrape configuration; kube-state-metrics
// reports a Job's name as "job_name" for that reason. "exported_namespace"
// appears only when a scrape renamed a clashing label, in which case
// "namespace" is present too and names the scrape target's namespace;
// guessing which of the two the alert means is left to the alert rule
// (honor_labels, or label_replace into "namespace").
//
// Labels as written by a scrape, not by the alert's subject, can mislead: a
// series scraped through a Service with the Prometheus Operator carries the
// scrape target's "pod" and "service". Rules should keep only labels about
// the subject.
//
// The cluster is the value of the label Options.ClusterLabel (default
// "cluster"; a DNS-1123 subdomain of at most 63 characters) if present, else
// Options.Cluster.
//
// # Kubernetes Events
//
// Both core/v1 (apiVersion "v1") and events.k8s.io/v1 Events are accepted,
// told apart by apiVersion and kind. type "Warning" is Fire, "Normal" is
// Ignore ("normal event"), anything else is rejected. Name is reason
// (required); Severity is the type in lower case ("warning"). The target is
// involvedObject (core/v1) or regarding (events.k8s.io/v1) as the event
// states it: kind and name required, namespace trusted (empty for
// cluster-scoped objects), apiVersion inferred from the table above when the
// reference omits it, as the kubelet does for Nodes. The cluster is
// Options.Cluster. FiringTime is the first set of eventTime, firstTimestamp
// (core/v1) or deprecatedFirstTimestamp (events.k8s.io/v1). Labels are
// "reason", "type" and "reportingController": the reporting controller
// (JSON "reportingComponent" in core/v1), else the source component. The
// single annotation "message" is the message (core/v1) or note.
//
// # Bounds
//
// A RemediationRequest keeps its first signal's labels and annotations, so
// a Signal's copies are bounded whatever the sender puts in a payload: at
// most 64 labels and 64 annotations (the lexically smallest keys win),
// keys longer than 128 bytes dropped, label values cut to 256 bytes,
// annotation values (and an event's message) to 1 KiB, severity to 63
// bytes, all at UTF-8 boundaries. FiringTime is in UTC.
package signal
