// Package chaos is the fault-injection suite: it runs the whole system as
// separate processes (three gateways, three orchestrators, the simulated
// executor) on a real kube-apiserver and etcd, drives a storm of alerts
// through the gateways while it kills, pauses, partitions or skews replicas
// and restarts the API server or etcd, and checks the end state: every
// signal acknowledged and counted, no incident with two requests in
// progress, no target with two executions active at any moment, no Lease
// left held.
//
// The scenarios are in chaos_integration_test.go; the harness (processes,
// fault proxies, Lease observation) in cluster_integration_test.go. CI runs
// each scenario once as part of `make test`; `make chaos` runs each five
// times and writes docs/reliability.md with Report.
package chaos
