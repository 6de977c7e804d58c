// Package gateway holds the gateway's tests on a real API server: several
// gateway instances in one process, several gateway processes driven by
// `leasehold storm`, and a real Prometheus Alertmanager delivering webhooks.
// The tests carry the integration build tag.
package gateway
