package owner

import (
	"container/list"
	"time"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// memory holds the last resolution of each object a signal named, so that
// an object deleted while signals about it still arrive (a Pod replaced in
// the middle of an incident) keeps resolving to the workload it had. An
// entry lives ttl after the last Resolve of its object (each renews it,
// whatever it ends in), so it lasts as long as its incident keeps sending
// signals; at most maxEntries
// are kept, the least recently used evicted first. It is not safe for
// concurrent use: the Cache's mutex guards it.
type memory struct {
	ttl        time.Duration
	maxEntries int
	entries    map[objectKey]*list.Element // value: *remembered
	lru        *list.List
	evicted    func()
}

// remembered is one resolution: to the workload (with no cluster), or to
// the object itself (self).
type remembered struct {
	key     objectKey
	to      v1alpha1.TargetRef
	self    bool
	expires time.Time
}

func newMemory(ttl time.Duration, maxEntries int, evicted func()) *memory {
	return &memory{ttl: ttl, maxEntries: maxEntries, entries: make(map[objectKey]*list.Element), lru: list.New(), evicted: evicted}
}

// put records that key resolved to to (or to itself) at now.
func (m *memory) put(key objectKey, to v1alpha1.TargetRef, self bool, now time.Time) {
	to.Cluster = ""
	if el, ok := m.entries[key]; ok {
		r := el.Value.(*remembered)
		r.to, r.self, r.expires = to, self, now.Add(m.ttl)
		m.lru.MoveToFront(el)
		return
	}
	m.entries[key] = m.lru.PushFront(&remembered{key: key, to: to, self: self, expires: now.Add(m.ttl)})
	for m.lru.Len() > m.maxEntries {
		oldest := m.lru.Back()
		m.lru.Remove(oldest)
		delete(m.entries, oldest.Value.(*remembered).key)
		m.evicted()
	}
}

// get returns the resolution of key if one is remembered and has not
// expired at now, and renews it: a signal about the object is arriving.
func (m *memory) get(key objectKey, now time.Time) (remembered, bool) {
	el, ok := m.entries[key]
	if !ok {
		return remembered{}, false
	}
	r := el.Value.(*remembered)
	if !now.Before(r.expires) {
		m.lru.Remove(el)
		delete(m.entries, key)
		return remembered{}, false
	}
	r.expires = now.Add(m.ttl)
	m.lru.MoveToFront(el)
	return *r, true
}
