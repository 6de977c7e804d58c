// Package gateway holds the gateway's tests on a real API server: several
// gateway instances in one process, several gateway processes driven by
// `leasehold storm`, a real Prometheus Alertmanager delivering webhooks, and
// a flood of requests with unknown bearer tokens during a storm of valid
// ones (its size set by -flood-rate and -flood-duration; the defaults fit
// CI, the full figure is -flood-rate 1000 -flood-duration 30s; the rate must
// exceed the gateways' review rate and the duration the auth cache TTL, and
// -flood-gateway-args passes extra flags to its gateways, e.g.
// --max-token-reviews=1000000 to see the test fail without the bound).
// The tests carry the integration build tag.
package gateway
