// Package storm is the load generator behind `leasehold storm`: it sends a
// storm of identical signals to one or more gateways, the way Alertmanager
// or the Kubernetes event pipeline would during an incident, and reports
// what the gateways answered and what they wrote.
//
// # What a storm is
//
// Run sends Config.Signals signals, at most Config.Concurrency at a time
// (by default all of a small storm at once), round-robin over the gateway
// URLs. Signal i belongs to incident i mod Config.Fingerprints; every signal
// of an incident is the same alert (or Warning Event) about a Deployment
// named "storm-<run id>-<incident>" in Config.Namespace. The Deployment
// does not exist, so the gateway's owner resolution keeps it as the target
// and the incident's fingerprint is dedup.Fingerprint of TargetOf(...). The
// run id makes the names of two runs differ, so a run never joins the
// RemediationRequests of an earlier one.
//
// A signal answered 429 or any 5xx (as Alertmanager retries them) is sent
// again after the answer's Retry-After
// (capped at Config.MaxRetryAfter) or, without one, after a
// decorrelated-jitter backoff; so is a signal whose attempt got no answer
// (the gateway may be restarting). Other answers are final. Each signal's
// latency runs from its first send to its final answer, waits included.
//
// Without Config.Rate signals go as fast as the concurrency allows. With it
// the storm is paced on Config.Clock: signal i is first sent no earlier than
// i/Rate seconds after the start, so that a storm has a known length and
// faults injected meanwhile land in its middle. Only first sends are paced;
// retries keep their backoff, and a signal's latency does not include the
// wait for its turn.
//
// # What the report can and cannot tell
//
// With a kube config, Run lists the RemediationRequests carrying the run's
// fingerprint labels (no cache: straight from the API server) and checks,
// per incident: exactly one request; occurrence count equal to the signals
// sent; and the bounds counted answers <= count <= attempts. A retried
// attempt may have been counted before its answer was lost, so a count
// above the signals but within the attempts is a retry artefact, not
// necessarily a gateway bug; a count below the counted answers is a lost
// signal. A request can finish (a terminal phase) during a storm when an
// orchestrator runs, and the gateway then rightly starts a new one for the
// signals that follow: requests beyond one per incident are duplicates only
// if more than one is still in progress at the end, and "successive"
// otherwise. A snapshot cannot prove that two finished requests never
// overlapped; `leasehold up` watches every change for that.
//
// Request accounting scrapes apiserver_request_total before and after the
// storm. The difference includes everything else the API server served
// meanwhile (lease renewals, controllers); with the idle correction, the
// increase over an idle interval after the storm, scaled to the storm's
// length, is subtracted per resource and verb. That estimate is only as good
// as the assumption that the background rate is steady; work the storm
// triggers after it ends (an orchestrator reconciling the new requests)
// lands in the idle interval and is subtracted too. The report says what
// was subtracted.
//
// The goroutines Run starts end before it returns. Idle keep-alive
// connections of client-go's shared transports (to the API server) may
// outlive it, as with any client-go client; those of the HTTP client Run
// makes for the gateways are closed.
package storm
