// Package stack runs the whole system on this machine, for `leasehold up`:
// a real kube-apiserver and etcd with the CRDs and the services' namespace
// (Up), the gateways, the orchestrators and the simulated executor as
// processes of the leasehold binary itself (StartServices), a demo storm
// whose outcome is checked (Demo), and the stop of all of it (Stop).
//
// # Guarantees
//
//   - Every service process runs in its own process group with a
//     parent-death signal (package proc): killing the program that called
//     StartServices, even with SIGKILL, kills the services too.
//   - Stop signals every service (SIGTERM, then SIGKILL after
//     Options.StopGrace) and waits until each has exited and been reaped,
//     then stops the control plane; so when Stop returns, no service port
//     is bound and no service process exists. It removes the data folder
//     when Up created it and KeepData is not set.
//   - A service that exits while the stack is up, for whatever reason, is
//     reported once on Exits and kept in Exited, with the end of its log.
//   - Demo's duplicate checks come from two watches that cover the whole
//     demo, replayed in the API server's commit order: a moment with two
//     RemediationRequests of one incident in progress, or two active
//     WorkflowExecutions on one target, is seen even if it lasted a
//     millisecond. A watch that lost changes is reported as such
//     (ErrWatchIncomplete), never taken as a pass. Several requests of one
//     incident one after the other are not duplicates: the gateway starts
//     a new one for signals that arrive after the previous one finished,
//     which the demo's short executions make possible during a storm.
//
// # What is not guaranteed
//
//   - The control plane's own processes (kube-apiserver, etcd) are started
//     by controller-runtime's envtest without a parent-death signal: if the
//     caller is killed with SIGKILL before Stop, they outlive it.
//   - Ports are picked free just before the services bind them; another
//     program can take one in between. The service then exits and is
//     started again on new ports, at most three times in all.
//   - The gateways accept signals without authentication
//     (--insecure-no-auth); they listen on the loopback interface only.
package stack
