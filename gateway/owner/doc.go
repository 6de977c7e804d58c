// Package owner maps the object a signal names to the workload that owns
// it, so that signals about the Pods of one Deployment deduplicate into one
// RemediationRequest about the Deployment.
//
// The workload is the top-level controller owner: the object reached by
// following ownerReferences with controller=true until one has none. A Pod
// of a ReplicaSet of a Deployment resolves to the Deployment; a Pod of a
// StatefulSet, DaemonSet or Job to that; a Job of a CronJob to the CronJob;
// a Node, or a bare Pod, to itself. References without controller=true
// (several may exist: an object shared with, or adopted by, other tools)
// are ignored, since the controller reference is the only one of which
// there is at most one.
//
// # Guarantees
//
//   - Resolve never fails and never drops a signal. When the chain cannot be
//     followed (an object is gone or unreadable, a request times out, the
//     caller's context ends, an owner is of a kind outside the table, the
//     chain loops or exceeds MaxHops, the object is in another cluster) it
//     returns the object itself and false. The boolean is true only when at
//     least one owner hop was taken, and then the result keeps the input's
//     Cluster and carries the owner's apiVersion, kind, namespace and name.
//   - Every object of a chain is checked against the UID its dependent's
//     reference names: an owner deleted and re-created under the same name
//     is not taken for the owner.
//   - One object costs at most one request at a time: concurrent resolves
//     that need the same object share one request, and a resolve whose
//     context ends stops waiting without cancelling the request for the
//     others. Each request is bounded by Options.RequestTimeout.
//   - Memory is bounded by Options.MaxEntries (least recently used first).
//
// # What is not guaranteed
//
//   - Freshness. What one object's lookup learned is reused for Options.TTL
//     (a failure for Options.NegativeTTL). A deleted owner keeps being
//     reported, and a new one missed, for up to TTL; an object that becomes
//     readable is seen up to NegativeTTL late.
//   - A stable answer across failures. A fallback changes the target, and
//     so the fingerprint, of the signals it affects: while the API server
//     is unreachable or the gateway lacks permission, signals about the
//     Pods of one Deployment are deduplicated per Pod. Failures are cached
//     for NegativeTTL, which bounds the request rate during an outage and
//     lengthens the degraded period after it by at most NegativeTTL.
//   - Workloads of custom kinds. The kind table is fixed (no discovery):
//     Pod, ReplicationController, PersistentVolumeClaim, Service, Node,
//     ReplicaSet, Deployment, StatefulSet, DaemonSet, Job, CronJob. A Pod
//     whose ReplicaSet is controlled by, for example, an Argo Rollout falls
//     back to the Pod: the Rollout's own owners cannot be read, and its
//     scope is not known.
//   - Mirror Pods. The kubelet makes a Node the controller owner of the
//     mirror Pod of a static Pod, so such a Pod resolves to its Node.
//
// # Cost
//
// A cold resolve of a Pod of a Deployment sends three GET requests (Pod,
// ReplicaSet, Deployment), of metadata only; within TTL it sends none, and
// another Pod of the same ReplicaSet sends one. Reads are quorum reads
// (no resourceVersion=0): a signal often follows the creation of its
// object by milliseconds, and the API server's watch cache could still
// answer NotFound, which would then be remembered for NegativeTTL.
//
// # Permissions
//
// The client needs get on pods, replicationcontrollers,
// persistentvolumeclaims, services and nodes (core group), on replicasets,
// deployments, statefulsets and daemonsets (apps), and on jobs and cronjobs
// (batch). A missing permission makes resolution of the affected chains
// fall back, counted as reason="forbidden".
//
// # Metrics
//
// With Options.Registerer, a Cache registers <MetricsNamespace>_owner_*:
//
//   - lookups_total{result}: one per object of a chain, by where the answer
//     came from: hit (the cache, including a remembered failure), shared
//     (a request another resolve had in flight), miss (a request that
//     succeeded), error (a request that failed). miss+error is the number
//     of API requests sent.
//   - resolves_total{outcome}: one per Resolve call: owner, self (no
//     controller owner), fallback, skipped (not looked up: another
//     cluster, a kind outside the table, a namespaced kind without a
//     namespace).
//   - fallbacks_total{reason}: why a fallback happened: not_found,
//     forbidden, timeout, api_error, canceled, owner_replaced,
//     unknown_owner, cycle, too_long.
//   - cache_evictions_total: entries evicted to stay within MaxEntries.
package owner
