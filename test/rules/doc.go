// Package rules tests the Prometheus rules in deploy/rules and the
// PrometheusRule in deploy/components/monitoring.
//
// The tests run the real promtool (Debian package prometheus, installed by
// hack/packages.sh): `promtool check rules` with every lint fatal, and
// `promtool test rules` on deploy/rules/leasehold.rules.test.yaml. Without
// promtool they fail rather than skip, so that CI cannot pass with the rules
// untested.
//
// Around promtool they check what promtool does not:
//
//   - every alert has a for: duration, a severity, a summary and a
//     description, and the promtool tests hold a case where it fires and
//     one where it does not (promtool passes a case that names an alert
//     the rules do not have, as long as it expects nothing);
//   - aggregations keep only bounded labels (namespace, job and enums), so
//     no rule can fan out per pod, key or fingerprint;
//   - the PrometheusRule carries exactly the groups of the plain rules
//     file, and is byte for byte what that file generates;
//   - the kustomize component renders to that PrometheusRule (with the
//     pinned kustomize that hack/tools.sh builds).
//
// After editing the rules, regenerate the PrometheusRule with
//
//	go test ./test/rules/ -update
package rules
