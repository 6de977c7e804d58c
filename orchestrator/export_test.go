package orchestrator

// FinalizerPatch exposes the finalizer patch to the integration tests,
// which check its conditions against a real API server.
var FinalizerPatch = finalizerPatch
