package owner

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// Cache is the Resolver that follows controller ownerReferences through the
// API server, remembers each object it read for a short time, and each
// object's resolution for as long as signals about it keep arriving. It is
// safe for concurrent use. Each request runs in a goroutine of its own that ends
// with the request (within RequestTimeout), so a Cache needs no Close.
type Cache struct {
	client         metadata.Interface
	cluster        string
	ttl            time.Duration
	negativeTTL    time.Duration
	errorTTL       time.Duration
	maxEntries     int
	requestTimeout time.Duration
	clock          clock.PassiveClock
	metrics        *metrics

	mu sync.Mutex
	// entries and lru hold the same entries: entries finds one by key, lru
	// orders them from most (front) to least recently used. Expired
	// entries stay until they are looked up again or evicted.
	entries map[objectKey]*list.Element // value: *entry
	lru     *list.List
	// flights holds the request in progress for each key. Every lookup of
	// a key that is neither cached nor in flight starts one; the others
	// wait for it, so one object costs at most one request at a time.
	flights map[objectKey]*flight
	// memory holds the last resolution of each object Resolve was asked
	// about, for when that object is gone.
	memory *memory
}

var _ Resolver = (*Cache)(nil)

// New returns a Cache that reads object metadata through client. The client
// needs get on the resources of the kind table (see the package
// documentation); a missing permission makes Resolve fail with
// ErrUnresolved rather than guess.
func New(client metadata.Interface, opts Options) (*Cache, error) {
	if client == nil {
		return nil, errors.New("owner: nil metadata client")
	}
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("owner: invalid options: %w", err)
	}
	m, err := newMetrics(opts.Registerer, opts.MetricsNamespace)
	if err != nil {
		return nil, err
	}
	return &Cache{
		client:         client,
		cluster:        opts.Cluster,
		ttl:            opts.TTL,
		negativeTTL:    opts.NegativeTTL,
		errorTTL:       opts.ErrorTTL,
		maxEntries:     opts.MaxEntries,
		requestTimeout: opts.RequestTimeout,
		clock:          opts.Clock,
		metrics:        m,
		entries:        make(map[objectKey]*list.Element),
		lru:            list.New(),
		flights:        make(map[objectKey]*flight),
		memory:         newMemory(opts.ResolutionTTL, opts.MaxEntries, m.resolutionEvictions.Inc),
	}, nil
}

// objectKey identifies an object of the local cluster. The version is left
// out: one object served at two versions is one object, with one owner.
// Namespace is empty for cluster-scoped kinds whatever the TargetRef said.
type objectKey struct {
	kind      schema.GroupKind
	namespace string
	name      string
}

// String returns "Kind namespace/name" ("Kind name" when cluster-scoped),
// for logs.
func (k objectKey) String() string {
	if k.namespace == "" {
		return k.kind.Kind + " " + k.name
	}
	return k.kind.Kind + " " + k.namespace + "/" + k.name
}

// link is what one lookup learns about an object: its UID, its controller
// reference (nil if it has none) and its pod-template-hash label (what
// tells a Deployment's ReplicaSet), or the error that prevented reading
// it.
type link struct {
	uid             types.UID
	controller      *metav1.OwnerReference
	podTemplateHash string
	err             error
}

type entry struct {
	key     objectKey
	link    link
	expires time.Time
}

// flight is one request in progress. link is written before done is
// closed and never after.
type flight struct {
	done chan struct{}
	link link
}

// Resolve returns the top controller owner of obj, with obj's Cluster, and
// true; or obj itself and false when obj has no controller owner or when the
// chain cannot be followed and retrying would not help. When obj is gone it
// answers from what remains (see the package documentation), reading owner
// labels from labels. It returns an error wrapping ErrUnresolved, and obj,
// when a lookup it needed could not be completed: a timeout, an API server
// error or refusal, or ctx ending first.
func (c *Cache) Resolve(ctx context.Context, obj v1alpha1.TargetRef, labels map[string]string) (v1alpha1.TargetRef, bool, error) {
	log := logr.FromContextOrDiscard(ctx)
	if obj.Cluster != c.cluster {
		c.metrics.resolves.WithLabelValues(outcomeSkipped).Inc()
		log.V(1).Info("owner resolution skipped: another cluster", "target", obj.String(), "cluster", c.cluster)
		return obj, false, nil
	}
	gk := schema.GroupKind{Group: obj.Group(), Kind: obj.Kind}
	k, ok := kinds[gk]
	if !ok || (k.namespaced && obj.Namespace == "") || obj.Name == "" {
		c.metrics.resolves.WithLabelValues(outcomeSkipped).Inc()
		log.V(1).Info("owner resolution skipped: kind not resolvable or object incompletely named", "target", obj.String(), "apiVersion", obj.APIVersion)
		return obj, false, nil
	}
	start := objectKey{kind: gk, name: obj.Name}
	if k.namespaced {
		start.namespace = obj.Namespace
	}
	// A signal about the object is arriving, whatever this Resolve ends
	// in: its remembered resolution lasts while its incident goes on, an
	// API outage included.
	c.renew(start)
	w := c.follow(ctx, start, obj.APIVersion, nil)
	switch w.failure {
	case noFailure:
		self := w.hops == 0
		c.remember(start, w.target(obj.Cluster), self)
		if self {
			c.metrics.resolves.WithLabelValues(outcomeSelf).Inc()
			return obj, false, nil
		}
		c.metrics.resolves.WithLabelValues(outcomeOwner).Inc()
		return w.target(obj.Cluster), true, nil
	case unknowable:
		return c.unresolved(ctx, obj, w)
	case gone:
		if to, ok, found := c.recall(start, obj); found {
			c.metrics.resolves.WithLabelValues(outcomeRemembered).Inc()
			log.V(1).Info("owner resolved from memory: an object of the chain is gone", "target", obj.String(), "workload", to.String(), "gone", w.at.String())
			return to, ok, nil
		}
		if w.at == start {
			return c.inferGone(ctx, obj, start, labels, w)
		}
		if d, ok := deploymentOfGoneReplicaSet(w.at, w.below.podTemplateHash); ok && start.kind == podKind && w.hops == 1 && w.reason == reasonNotFound {
			// obj exists; the ReplicaSet its controller reference names
			// is gone (a rollout that keeps no old ReplicaSets deletes it
			// while its Pods terminate). The Deployment its name implies
			// is believed if it exists.
			dw := c.follow(ctx, d, apiVersionOf(deploymentKind), nil)
			return c.answerInferred(ctx, obj, start, dw, true, "ReplicaSet "+w.at.name+" is gone; Deployment from its name and the pod-template-hash")
		}
		// Otherwise obj exists and names its controller, which is gone:
		// there is nothing to infer.
	}
	return c.fallback(ctx, obj, w)
}

// inferGone answers Resolve of obj, which is gone (walk w) with nothing
// remembered, from the candidates its name and labels imply.
func (c *Cache) inferGone(ctx context.Context, obj v1alpha1.TargetRef, start objectKey, labels map[string]string, w walk) (v1alpha1.TargetRef, bool, error) {
	cands := candidates(start, labels)
	looked := make([]link, 0, len(cands))
	i, v := infer(cands, looked)
	for ; v == verdictPending; i, v = infer(cands, looked) {
		looked = append(looked, c.lookup(ctx, cands[len(looked)].key))
	}
	switch v {
	case verdictUnknowable:
		cand := cands[i]
		_, reason := classify(looked[i].err)
		return c.unresolved(ctx, obj, walk{top: cand.key, apiVersion: cand.apiVersion, failure: unknowable, reason: reason, at: cand.key, err: looked[i].err})
	case verdictConfirmed:
		cand := cands[i]
		cw := c.follow(ctx, cand.key, cand.apiVersion, &looked[i])
		why := "candidate " + cand.key.String() + " confirmed, named by label " + cand.fromLabel
		if cand.fromLabel == "" {
			why = "candidate " + cand.key.String() + " the only one its name implies that is confirmed"
		}
		// A guess from the name alone is not remembered: remembered, it
		// would outrank the owner labels of the signals that follow.
		return c.answerInferred(ctx, obj, start, cw, cand.fromLabel != "", why)
	case verdictAmbiguous:
		w.reason, w.err = reasonAmbiguous, errors.New("the name fits more than one existing owner")
	}
	return c.fallback(ctx, obj, w)
}

// answerInferred ends a Resolve of obj whose owner was inferred, walk w
// being the chain from the inferred owner, which decides the answer as it
// would for an object that exists. The answer is remembered if keep.
func (c *Cache) answerInferred(ctx context.Context, obj v1alpha1.TargetRef, start objectKey, w walk, keep bool, why string) (v1alpha1.TargetRef, bool, error) {
	switch w.failure {
	case noFailure:
		to := w.target(obj.Cluster)
		if keep {
			c.remember(start, to, false)
		}
		c.metrics.resolves.WithLabelValues(outcomeInferred).Inc()
		logr.FromContextOrDiscard(ctx).V(1).Info("owner inferred and confirmed", "target", obj.String(), "workload", to.String(), "why", why)
		return to, true, nil
	case unknowable:
		return c.unresolved(ctx, obj, w)
	default:
		return c.fallback(ctx, obj, w)
	}
}

// fallback ends a Resolve of obj with obj itself, for the reason w stopped.
func (c *Cache) fallback(ctx context.Context, obj v1alpha1.TargetRef, w walk) (v1alpha1.TargetRef, bool, error) {
	c.metrics.resolves.WithLabelValues(outcomeFallback).Inc()
	c.metrics.fallbacks.WithLabelValues(w.reason).Inc()
	logr.FromContextOrDiscard(ctx).V(1).Info("owner resolution fell back to the object itself", "target", obj.String(), "reason", w.reason, "at", w.at.String(), "err", w.err)
	return obj, false, nil
}

// unresolved ends a Resolve whose walk w could not complete a lookup.
func (c *Cache) unresolved(ctx context.Context, obj v1alpha1.TargetRef, w walk) (v1alpha1.TargetRef, bool, error) {
	c.metrics.resolves.WithLabelValues(outcomeError).Inc()
	c.metrics.errors.WithLabelValues(w.reason).Inc()
	err := &LookupError{Reason: w.reason, Kind: w.at.kind.Kind, Namespace: w.at.namespace, Name: w.at.name, Err: w.err}
	logr.FromContextOrDiscard(ctx).V(1).Info("owner unresolved", "target", obj.String(), "err", err.Error())
	return obj, false, err
}

// remember records that key resolved to to (or to itself).
func (c *Cache) remember(key objectKey, to v1alpha1.TargetRef, self bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.memory.put(key, to, self, c.clock.Now())
}

// renew extends key's remembered resolution, if any, to ResolutionTTL from
// now.
func (c *Cache) renew(key objectKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.memory.get(key, c.clock.Now())
}

// recall returns the remembered resolution of key, as Resolve of obj
// answers it, and whether there was one.
func (c *Cache) recall(key objectKey, obj v1alpha1.TargetRef) (v1alpha1.TargetRef, bool, bool) {
	c.mu.Lock()
	r, found := c.memory.get(key, c.clock.Now())
	c.mu.Unlock()
	switch {
	case !found:
		return v1alpha1.TargetRef{}, false, false
	case r.self:
		return obj, false, true
	default:
		to := r.to
		to.Cluster = obj.Cluster
		return to, true, true
	}
}

// walk is where following controller references from one object ended.
type walk struct {
	// top and apiVersion are the last object reached; it is the workload
	// when failure is noFailure.
	top        objectKey
	apiVersion string
	// hops is the number of references followed to reach top.
	hops int
	// below is the lookup of the object whose controller reference led
	// to top (zero when hops is 0).
	below link
	// failure, reason, at and err say why the walk stopped short: the
	// object at which it did, and the error of its lookup, if any.
	failure failure
	reason  string
	at      objectKey
	err     error
}

// target returns the TargetRef of w's top object in cluster.
func (w walk) target(cluster string) v1alpha1.TargetRef {
	return v1alpha1.TargetRef{Cluster: cluster, APIVersion: w.apiVersion, Kind: w.top.kind.Kind, Namespace: w.top.namespace, Name: w.top.name}
}

// follow walks up the controller references from start, read at
// apiVersion, to the first object without one. first, if not nil, is the
// lookup of start, already made.
func (c *Cache) follow(ctx context.Context, start objectKey, apiVersion string, first *link) walk {
	w := walk{top: start, apiVersion: apiVersion}
	stop := func(f failure, reason string, err error) walk {
		w.failure, w.reason, w.at, w.err = f, reason, w.top, err
		return w
	}
	// wantUID is the UID the reference that led to the current object
	// names: an object re-created under the same name is not the owner.
	var wantUID types.UID
	seen := make([]objectKey, 0, 4)
	for ; ; w.hops++ {
		if slices.Contains(seen, w.top) {
			return stop(permanent, reasonCycle, nil)
		}
		seen = append(seen, w.top)
		var l link
		if first != nil && w.hops == 0 {
			l = *first
		} else {
			l = c.lookup(ctx, w.top)
		}
		if f, reason := classify(l.err); f != noFailure {
			return stop(f, reason, l.err)
		}
		if wantUID != "" && l.uid != wantUID {
			// The owner the reference names is gone; another object
			// has its name.
			return stop(gone, reasonOwnerReplaced, fmt.Errorf("reference names UID %s, object has %s", wantUID, l.uid))
		}
		if l.controller == nil {
			return w
		}
		if w.hops == MaxHops {
			return stop(permanent, reasonTooLong, nil)
		}
		ref := l.controller
		unknown := fmt.Errorf("controller %s %s of an unreadable kind or scope", ref.APIVersion, ref.Kind)
		gv, err := schema.ParseGroupVersion(ref.APIVersion)
		if err != nil || ref.Name == "" {
			return stop(permanent, reasonUnknownOwner, unknown)
		}
		next := objectKey{kind: schema.GroupKind{Group: gv.Group, Kind: ref.Kind}, name: ref.Name}
		nk, ok := kinds[next.kind]
		if !ok {
			return stop(permanent, reasonUnknownOwner, unknown)
		}
		if nk.namespaced {
			// A namespaced owner is in its dependent's namespace; a
			// cluster-scoped object cannot have one.
			if w.top.namespace == "" {
				return stop(permanent, reasonUnknownOwner, unknown)
			}
			next.namespace = w.top.namespace
		}
		wantUID = ref.UID
		w.top, w.apiVersion, w.below = next, ref.APIVersion, l
	}
}

// lookup returns what is known about key: from the cache if fresh, else
// from the request in flight for it, else from a new request. A caller
// whose ctx ends stops waiting and gets ctx's error; the request goes on
// and fills the cache for the others.
func (c *Cache) lookup(ctx context.Context, key objectKey) link {
	c.mu.Lock()
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*entry)
		if c.clock.Now().Before(e.expires) {
			c.lru.MoveToFront(el)
			c.mu.Unlock()
			c.metrics.lookups.WithLabelValues(resultHit).Inc()
			return e.link
		}
		c.lru.Remove(el)
		delete(c.entries, key)
	}
	f, shared := c.flights[key]
	if !shared {
		if err := ctx.Err(); err != nil {
			// Nobody would wait for the answer; the cache above still
			// served this caller if it could.
			c.mu.Unlock()
			return link{err: fmt.Errorf("%w: %w", errCallerDone, err)}
		}
		f = &flight{done: make(chan struct{})}
		c.flights[key] = f
		// The request is detached from the caller's cancellation: other
		// callers may join it, and its answer is worth caching even if
		// this caller stops waiting. It is bounded by requestTimeout.
		go c.fetch(context.WithoutCancel(ctx), key, f)
	}
	c.mu.Unlock()
	if shared {
		c.metrics.lookups.WithLabelValues(resultShared).Inc()
	}
	select {
	case <-f.done:
		return f.link
	case <-ctx.Done():
		return link{err: fmt.Errorf("%w: %w", errCallerDone, ctx.Err())}
	}
}

// fetch reads key's metadata, records the answer for TTL (NegativeTTL if
// the object is not found or the API server refused the request for good,
// ErrorTTL if it failed otherwise), ends the flight and wakes its waiters.
func (c *Cache) fetch(ctx context.Context, key objectKey, f *flight) {
	ctx, cancel := context.WithTimeout(ctx, c.requestTimeout)
	defer cancel()
	k := kinds[key.kind]
	var (
		obj *metav1.PartialObjectMetadata
		err error
	)
	if k.namespaced {
		obj, err = c.client.Resource(k.resource).Namespace(key.namespace).Get(ctx, key.name, metav1.GetOptions{})
	} else {
		obj, err = c.client.Resource(k.resource).Get(ctx, key.name, metav1.GetOptions{})
	}
	var l link
	ttl := c.ttl
	switch {
	case err != nil:
		l.err = err
		c.metrics.lookups.WithLabelValues(resultError).Inc()
		log := logr.FromContextOrDiscard(ctx).WithValues("kind", key.kind.Kind, "namespace", key.namespace, "name", key.name)
		switch f, _ := classify(err); f {
		case gone:
			ttl = c.negativeTTL
			log.V(1).Info("owner lookup: object not found")
		case unknowable:
			ttl = c.errorTTL
			// Once per request, not per signal: the failure is cached.
			log.Info("owner lookup failed; signals that need this object are refused until it succeeds", "err", err, "retryAfter", ttl)
		default:
			ttl = c.negativeTTL
			log.Info("owner lookup refused; signals about this object keep their own target", "err", err, "retryAfter", ttl)
		}
	case obj == nil:
		// Not a response a real client gives; treated as a failure so
		// that no nil is dereferenced.
		l.err = fmt.Errorf("get %s %s/%s: empty response", key.kind, key.namespace, key.name)
		ttl = c.errorTTL
		c.metrics.lookups.WithLabelValues(resultError).Inc()
	default:
		l.uid = obj.UID
		l.podTemplateHash = obj.Labels["pod-template-hash"]
		if ref := metav1.GetControllerOfNoCopy(obj); ref != nil {
			cp := *ref
			l.controller = &cp
		}
		c.metrics.lookups.WithLabelValues(resultMiss).Inc()
	}

	c.mu.Lock()
	f.link = l
	delete(c.flights, key)
	c.store(key, l, c.clock.Now().Add(ttl))
	c.mu.Unlock()
	close(f.done)
}

// store records l for key until expires and evicts the least recently used
// entries beyond maxEntries. c.mu must be held.
func (c *Cache) store(key objectKey, l link, expires time.Time) {
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*entry)
		e.link, e.expires = l, expires
		c.lru.MoveToFront(el)
		return
	}
	c.entries[key] = c.lru.PushFront(&entry{key: key, link: l, expires: expires})
	for c.lru.Len() > c.maxEntries {
		oldest := c.lru.Back()
		c.lru.Remove(oldest)
		delete(c.entries, oldest.Value.(*entry).key)
		c.metrics.evictions.Inc()
	}
}
