// Package deploy holds the tests of what ships to a cluster: the
// kustomization in deploy/, the RBAC it grants, and the Dockerfile.
//
// Without a build tag: the Dockerfile's go build command, read from the
// Dockerfile and run on a copy of the tree filtered by .dockerignore, makes a
// static ELF binary. With the integration tag, on a real API server: the
// kustomization renders with the pinned kustomize and every object passes
// server-side apply (dry run, and for real for the namespace, the CRDs and
// the RBAC); each ServiceAccount is allowed exactly the rules its service
// needs; and the three services, started with their Deployment's arguments
// and environment while impersonating their ServiceAccounts, carry an alert
// through to a completed WorkflowExecution without one forbidden request.
package deploy
