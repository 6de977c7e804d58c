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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// Cache is the Resolver that follows controller ownerReferences through the
// API server and remembers each object it read for a short time. It is safe
// for concurrent use. Each request runs in a goroutine of its own that ends
// with the request (within RequestTimeout), so a Cache needs no Close.
type Cache struct {
	client         metadata.Interface
	cluster        string
	ttl            time.Duration
	negativeTTL    time.Duration
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
}

var _ Resolver = (*Cache)(nil)

// New returns a Cache that reads object metadata through client. The client
// needs get on the resources of the kind table (see the package
// documentation); a missing permission makes resolution fall back, not
// fail.
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
		maxEntries:     opts.MaxEntries,
		requestTimeout: opts.RequestTimeout,
		clock:          opts.Clock,
		metrics:        m,
		entries:        make(map[objectKey]*list.Element),
		lru:            list.New(),
		flights:        make(map[objectKey]*flight),
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

// link is what one lookup learns about an object: its UID and its
// controller reference (nil if it has none), or the error that prevented
// reading it.
type link struct {
	uid        types.UID
	controller *metav1.OwnerReference
	err        error
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
// chain cannot be followed. It never blocks longer than ctx allows; when ctx
// ends first it falls back.
func (c *Cache) Resolve(ctx context.Context, obj v1alpha1.TargetRef) (v1alpha1.TargetRef, bool) {
	log := logr.FromContextOrDiscard(ctx)
	if obj.Cluster != c.cluster {
		c.metrics.resolves.WithLabelValues(outcomeSkipped).Inc()
		log.V(1).Info("owner resolution skipped: another cluster", "target", obj.String(), "cluster", c.cluster)
		return obj, false
	}
	k, ok := kinds[schema.GroupKind{Group: obj.Group(), Kind: obj.Kind}]
	if !ok || (k.namespaced && obj.Namespace == "") || obj.Name == "" {
		c.metrics.resolves.WithLabelValues(outcomeSkipped).Inc()
		log.V(1).Info("owner resolution skipped: kind not resolvable or object incompletely named", "target", obj.String(), "apiVersion", obj.APIVersion)
		return obj, false
	}
	cur := objectKey{kind: schema.GroupKind{Group: obj.Group(), Kind: obj.Kind}, name: obj.Name}
	if k.namespaced {
		cur.namespace = obj.Namespace
	}
	curAPIVersion := obj.APIVersion
	// wantUID is the UID the reference that led to cur names: an object
	// re-created under the same name is not the owner.
	var wantUID types.UID
	seen := make([]objectKey, 0, 4)
	fallback := func(reason string, keysAndValues ...any) (v1alpha1.TargetRef, bool) {
		c.metrics.resolves.WithLabelValues(outcomeFallback).Inc()
		c.metrics.fallbacks.WithLabelValues(reason).Inc()
		log.V(1).Info("owner resolution fell back to the object itself", append([]any{"target", obj.String(), "reason", reason,
			"at", cur.kind.Kind + "/" + cur.name}, keysAndValues...)...)
		return obj, false
	}
	for hops := 0; ; hops++ {
		if slices.Contains(seen, cur) {
			return fallback(reasonCycle)
		}
		seen = append(seen, cur)
		l := c.lookup(ctx, cur)
		if l.err != nil {
			return fallback(errorReason(l.err), "err", l.err)
		}
		if wantUID != "" && l.uid != wantUID {
			return fallback(reasonOwnerReplaced, "wantUID", wantUID, "uid", l.uid)
		}
		if l.controller == nil {
			if hops == 0 {
				c.metrics.resolves.WithLabelValues(outcomeSelf).Inc()
				return obj, false
			}
			c.metrics.resolves.WithLabelValues(outcomeOwner).Inc()
			return v1alpha1.TargetRef{
				Cluster:    obj.Cluster,
				APIVersion: curAPIVersion,
				Kind:       cur.kind.Kind,
				Namespace:  cur.namespace,
				Name:       cur.name,
			}, true
		}
		if hops == MaxHops {
			return fallback(reasonTooLong)
		}
		ref := l.controller
		gv, err := schema.ParseGroupVersion(ref.APIVersion)
		if err != nil || ref.Name == "" {
			return fallback(reasonUnknownOwner, "ownerAPIVersion", ref.APIVersion, "ownerKind", ref.Kind)
		}
		next := objectKey{kind: schema.GroupKind{Group: gv.Group, Kind: ref.Kind}, name: ref.Name}
		nk, ok := kinds[next.kind]
		if !ok {
			return fallback(reasonUnknownOwner, "ownerAPIVersion", ref.APIVersion, "ownerKind", ref.Kind)
		}
		if nk.namespaced {
			// A namespaced owner is in its dependent's namespace; a
			// cluster-scoped object cannot have one.
			if cur.namespace == "" {
				return fallback(reasonUnknownOwner, "ownerAPIVersion", ref.APIVersion, "ownerKind", ref.Kind)
			}
			next.namespace = cur.namespace
		}
		wantUID = ref.UID
		curAPIVersion = ref.APIVersion
		cur = next
	}
}

// errorReason classifies a failed lookup for fallbacks_total.
func errorReason(err error) string {
	switch {
	case errors.Is(err, context.Canceled):
		return reasonCanceled
	case apierrors.IsNotFound(err):
		return reasonNotFound
	case apierrors.IsForbidden(err):
		return reasonForbidden
	case errors.Is(err, context.DeadlineExceeded), apierrors.IsTimeout(err), apierrors.IsServerTimeout(err):
		return reasonTimeout
	default:
		return reasonAPIError
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
			return link{err: err}
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
		return link{err: ctx.Err()}
	}
}

// fetch reads key's metadata, records the answer for TTL (NegativeTTL if
// the read failed), ends the flight and wakes its waiters.
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
		ttl = c.negativeTTL
		c.metrics.lookups.WithLabelValues(resultError).Inc()
		log := logr.FromContextOrDiscard(ctx).WithValues("kind", key.kind.Kind, "namespace", key.namespace, "name", key.name)
		if apierrors.IsNotFound(err) {
			log.V(1).Info("owner lookup: object not found")
		} else {
			// Once per request, not per signal: the failure is cached.
			log.Info("owner lookup failed; signals about this object keep their own target until it succeeds", "err", err, "retryAfter", ttl)
		}
	case obj == nil:
		// Not a response a real client gives; treated as a failure so
		// that no nil is dereferenced.
		l.err = fmt.Errorf("get %s %s/%s: empty response", key.kind, key.namespace, key.name)
		ttl = c.negativeTTL
		c.metrics.lookups.WithLabelValues(resultError).Inc()
	default:
		l.uid = obj.UID
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
