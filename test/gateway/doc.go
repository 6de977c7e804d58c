// Package gateway holds the gateway's tests on a real API server: several
// gateway instances in one process, several gateway processes driven by
// `leasehold storm`, a real Prometheus Alertmanager delivering webhooks, and
// a flood of requests with unknown bearer tokens during a storm of valid
// ones (its size set by -flood-rate and -flood-duration; the defaults fit
// CI, the full figure is -flood-rate 1000 -flood-duration 30s).
// The tests carry the integration build tag.
package gateway
