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
//   - Resolve answers in one of three ways. The workload and true when it
//     followed at least one owner hop (the result keeps the input's Cluster
//     and carries the owner's apiVersion, kind, namespace and name). The
//     object itself and false when the object has no controller owner, or
//     when the chain cannot be followed and asking again would not change
//     that: an owner of a kind outside the table, a cycle, more than
//     MaxHops owners, a 4xx other than 401, 403, 408 and 429, an object of
//     another cluster, or a gone object or owner that nothing below stands
//     in for. An error wrapping ErrUnresolved, a *LookupError, when a
//     lookup it needed did not complete: a timeout, a 5xx or 429, no
//     connection, a 403 or 401, or the caller's context ending first.
//     It never answers a failure that may pass with a guess: the caller
//     must not record a signal whose Resolve failed under its own object,
//     since that would split one incident in two.
//   - A resolution is remembered for the incident. Each resolution of
//     an object that the API server showed (its chain, to its owner or
//     to itself) or that its signal's owner labels named is kept for
//     Options.ResolutionTTL after the last Resolve of that object: every
//     Resolve renews it, one that fails because the API server cannot
//     be reached included. When an object of the chain is gone
//     (NotFound, or an owner replaced by another object of its name),
//     Resolve answers with the remembered resolution: a Pod deleted while
//     alerts about it still arrive keeps resolving to its Deployment. An
//     owner inferred from a name alone is not remembered (see below).
//   - A gone object with nothing remembered is resolved from what remains,
//     and only through an owner a lookup confirms. First the owners the
//     signal's labels name as exporters write them (owner_kind/owner_name,
//     unless owner_is_controller is "false"; created_by_kind/
//     created_by_name; workload_type/workload), in that order, each
//     confirmed by existing; the first confirmed is the owner. A label is
//     believed only for a kind that controls Pods or their controllers:
//     ReplicaSet, ReplicationController, StatefulSet, DaemonSet, Job,
//     Deployment, CronJob; and a Node, named by owner_kind or
//     created_by_kind of a Pod (a mirror Pod's controller). Then, for a
//     Pod, every owner its name implies: the ReplicaSet <rs> of a name
//     <rs>-<5 generated characters>, confirmed by being controlled by a
//     Deployment <d> with <rs> = <d>-<its pod-template-hash label> (and
//     that hash equal to the Pod's when the labels pod_template_hash or
//     label_pod_template_hash carry it); the StatefulSet <s> of a name
//     <s>-<ordinal>; the DaemonSet or Job <x> of a name <x>-<5 generated
//     characters>, each confirmed by existing. All of these are looked
//     up, and one is the owner only if it is the only one confirmed: a
//     name that fits two existing owners (a DaemonSet's Pod whose suffix
//     is all digits and a StatefulSet of the same name; a DaemonSet and a
//     Job of one name) falls back to the object, counted as ambiguous.
//     Such an inference is not remembered, so that it never outranks the
//     owner labels of a later signal; it is made again, from the cache,
//     for each signal. The owner's own chain decides the answer, as it
//     does for an object that exists: if it cannot be followed (an owner
//     of a kind outside the table, a cycle, an owner gone), Resolve falls
//     back to the object for that reason, and no other candidate is
//     tried. A candidate whose lookup does not complete makes Resolve
//     fail, as above. Only when no candidate is confirmed, or when the
//     name's are ambiguous, does Resolve return the object itself for
//     want of an owner.
//   - A Pod that exists but whose controller is gone is not inferred from
//     its name: its controller reference says which owner it had. One
//     case is resolved from that reference: a ReplicaSet not found while
//     its Pods terminate (a rollout that keeps no old ReplicaSets). Its
//     Deployment is the ReplicaSet's name without the suffix "-<the Pod's
//     pod-template-hash label>", believed if a lookup finds it, and the
//     answer remembered. The Deployment's UID cannot be checked (the
//     reference to it was on the ReplicaSet): one re-created under the
//     same name is taken for it. Any other gone controller falls back to
//     the Pod.
//   - Every object of a chain is checked against the UID its dependent's
//     reference names: an owner deleted and re-created under the same name
//     is not taken for the owner.
//   - One object costs at most one request at a time: concurrent resolves
//     that need the same object share one request, and a resolve whose
//     context ends stops waiting without cancelling the request for the
//     others. Each request is bounded by Options.RequestTimeout.
//   - Memory is bounded by Options.MaxEntries objects and as many
//     remembered resolutions (least recently used first).
//
// # What is not guaranteed
//
//   - Freshness. What one object's lookup learned is reused for Options.TTL
//     (NotFound for Options.NegativeTTL, a lookup that did not complete for
//     Options.ErrorTTL). A deleted owner keeps being reported, and a new
//     one missed, for up to TTL; an object that becomes readable is seen
//     up to NegativeTTL late; signals that need an object whose lookup
//     failed are refused for up to ErrorTTL after it would succeed.
//   - A remembered resolution is used only for a gone object. It is kept
//     by one Cache, in one process: a gateway replica that never resolved
//     the object, or that restarted, infers from what remains instead.
//   - Inference from names. A Pod whose generated name was cut short (a
//     ReplicaSet, DaemonSet or Job name longer than 57 characters) yields
//     no candidate, nor does a ReplicaSet gone with its Pod; a Pod of a
//     ReplicaSet of another controller than a Deployment (an Argo
//     Rollout) is not inferred from its name; a name whose owners are
//     ambiguous is not resolved. These fall back to the Pod. A name's
//     single confirmed owner can still be wrong (the true owner is gone
//     too, and another workload has its name): names are evidence, not
//     proof, which is why such answers are not remembered. The labels the
//     candidates come from are the signal's, as its sender wrote them: a
//     label that names an existing object of a workload kind is believed,
//     and its answer remembered.
//   - Availability during failures. While the API server is unreachable
//     or the gateway lacks a permission, signals that need a lookup are
//     refused (the gateway answers 503) rather than counted under the
//     wrong target. A missing permission is a misconfiguration and is not
//     retried away: it lasts until it is fixed.
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
// another Pod of the same ReplicaSet sends one. No Resolve sends more than
// 1 + 7 + MaxHops = 16 requests: an object followed up its chain costs at
// most 1 + MaxHops (the object and its owners); a Pod whose ReplicaSet is
// gone at most 3 + MaxHops (the Pod, the ReplicaSet, the Deployment and
// its owners); a gone Pod with nothing remembered the Pod, one request per
// candidate looked up (at most seven: three from labels, four from its
// name), and the owners of the one confirmed (at most MaxHops). None is
// repeated within TTL, or NegativeTTL for what was not found. Reads are quorum reads
// (no resourceVersion=0): a signal often follows the creation of its
// object by milliseconds, and the API server's watch cache could still
// answer NotFound, which would then be remembered for NegativeTTL.
//
// # Permissions
//
// The client needs get on pods, replicationcontrollers,
// persistentvolumeclaims, services and nodes (core group), on replicasets,
// deployments, statefulsets and daemonsets (apps), and on jobs and cronjobs
// (batch). A missing permission makes Resolve fail for the affected
// chains, counted in errors_total{reason="forbidden"}.
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
//     controller owner), remembered (an object of the chain is gone,
//     answered from memory), inferred (the object is gone, resolved
//     through a confirmed candidate), fallback, error, skipped (not looked
//     up: another cluster, a kind outside the table, a namespaced kind
//     without a namespace). inferred also counts a Pod whose ReplicaSet
//     is gone resolved to its Deployment.
//   - fallbacks_total{reason}: why a fallback happened: not_found,
//     rejected, owner_replaced, unknown_owner, cycle, too_long, or
//     ambiguous (a gone Pod's name fits more than one existing owner).
//     For a gone object whose owner was confirmed, the reason is where
//     that owner's chain stopped.
//   - errors_total{reason}: why Resolve failed: timeout, unavailable,
//     forbidden, unauthorized, canceled.
//   - cache_evictions_total: objects evicted to stay within MaxEntries;
//     resolution_evictions_total: remembered resolutions evicted.
package owner
