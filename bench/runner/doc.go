// Package runner is the benchmark behind `make bench`: leasehold side by
// side with the original design's algorithm (the baseline, package
// bench/baseline through the bench gateway) and with a floor of one
// unconditional create per signal, on the same machine in the same run.
//
// # What a run does
//
// Run runs the scenarios one after the other, each against a fresh control
// plane (package controlplane) with the services as real processes on
// loopback:
//
//   - S1 to S3 are storms (package storm) against three bench gateway
//     replicas per strategy, all strategies up at once, each writing to a
//     namespace of its own. The strategies take turns repetition by
//     repetition, in an order that rotates, so that machine noise hits all
//     of them alike; each gets an unmeasured warm-up storm first.
//   - S4 creates requests queued on a few targets and lets three
//     `leasehold orchestrator` replicas and the simulated executor take
//     them to completion, with watches that replay every state of the
//     WorkflowExecutions (exclusion per target, hand-off times).
//   - S5 runs the lease package's lock micro-benchmarks in a `go test`
//     subprocess and parses their output.
//
// The report holds every number the page shows (WriteMarkdown) and the
// plot draws (WriteLatencySVG), and the goals judged against them.
//
// # What the numbers can and cannot tell
//
// Every figure comes from one machine whose cores the services, the
// control plane and the load generator share; ratios between strategies of
// one run are meaningful, absolute figures less so. API requests are the
// API server's own counters minus an idle-rate estimate (see storm's
// documentation for its assumption). A goal is reported met only by a
// measured number; a figure that could not be measured is "not measured".
// A quick run (Options.Quick) uses small sizes to exercise the code and
// says so on the page.
package runner
