// Package fakeapi gives the fake clientset of client-go the semantics of a
// real API server for Leases, which its object tracker lacks: a
// resourceVersion that increases on every write (deletes included) and is
// stored in the object, optimistic concurrency on Update, UID and
// resourceVersion preconditions on Delete, label selectors on List, and
// single-object watches that start after a given resourceVersion.
//
// Every call still goes through the clientset, so tests count calls with
// Clientset.Actions() and inject failures with PrependReactor, which runs
// before this package's reactors.
package fakeapi

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
)

var leasesResource = schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}

// Server stores Leases. The zero value is not usable; call New.
type Server struct {
	mu       sync.Mutex
	rv       int64
	uid      int64
	leases   map[types.NamespacedName]*coordinationv1.Lease
	history  []event // every change, for watches that start at an older resourceVersion
	watchers map[*watcher]struct{}
}

type event struct {
	rv  int64
	typ watch.EventType
	obj *coordinationv1.Lease
}

// New returns an empty Server whose first resourceVersion is above 1000,
// like a real cluster's.
func New() *Server {
	return &Server{
		rv:       1000,
		leases:   make(map[types.NamespacedName]*coordinationv1.Lease),
		watchers: make(map[*watcher]struct{}),
	}
}

// Clientset returns a fake clientset whose Lease calls this Server serves.
func (s *Server) Clientset() *fake.Clientset {
	cs := fake.NewClientset()
	s.Install(cs)
	return cs
}

// Install prepends this Server's reactors for Leases to cs.
func (s *Server) Install(cs *fake.Clientset) {
	cs.PrependReactor("*", "leases", s.react)
	cs.PrependWatchReactor("leases", s.watch)
}

// Get returns a copy of the stored Lease, or nil.
func (s *Server) Get(namespace, name string) *coordinationv1.Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.leases[types.NamespacedName{Namespace: namespace, Name: name}]; l != nil {
		return l.DeepCopy()
	}
	return nil
}

// Put stores lease as another client would (create or unconditional
// update), bypassing the clientset, and returns the stored copy.
func (s *Server) Put(lease *coordinationv1.Lease) *coordinationv1.Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	obj := lease.DeepCopy()
	key := types.NamespacedName{Namespace: obj.Namespace, Name: obj.Name}
	if old := s.leases[key]; old != nil {
		obj.UID = old.UID
		obj.CreationTimestamp = old.CreationTimestamp
		return s.storeLocked(key, obj, watch.Modified)
	}
	s.uid++
	obj.UID = types.UID(fmt.Sprintf("uid-%d", s.uid))
	obj.CreationTimestamp = metav1.NewTime(time.Unix(0, 0))
	return s.storeLocked(key, obj, watch.Added)
}

// Delete removes a Lease unconditionally, as another client could, and
// reports whether it existed.
func (s *Server) Delete(namespace, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := types.NamespacedName{Namespace: namespace, Name: name}
	if s.leases[key] == nil {
		return false
	}
	s.deleteLocked(key)
	return true
}

// Len returns the number of stored Leases.
func (s *Server) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.leases)
}

func (s *Server) react(action clienttesting.Action) (bool, runtime.Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := action.GetNamespace()
	switch action.GetVerb() {
	case "get":
		a := action.(clienttesting.GetAction)
		key := types.NamespacedName{Namespace: ns, Name: a.GetName()}
		l := s.leases[key]
		if l == nil {
			return true, nil, apierrors.NewNotFound(leasesResource, a.GetName())
		}
		return true, l.DeepCopy(), nil

	case "list":
		a := action.(clienttesting.ListAction)
		sel := labels.Everything()
		if r := a.GetListRestrictions(); r.Labels != nil {
			sel = r.Labels
		}
		list := &coordinationv1.LeaseList{ListMeta: metav1.ListMeta{ResourceVersion: strconv.FormatInt(s.rv, 10)}}
		for k, l := range s.leases {
			if (ns == "" || k.Namespace == ns) && sel.Matches(labels.Set(l.Labels)) {
				list.Items = append(list.Items, *l.DeepCopy())
			}
		}
		return true, list, nil

	case "create":
		obj, err := leaseFrom(action.(clienttesting.CreateAction).GetObject(), ns)
		if err != nil {
			return true, nil, err
		}
		if obj.ResourceVersion != "" {
			return true, nil, apierrors.NewBadRequest("resourceVersion should not be set on objects to be created")
		}
		key := types.NamespacedName{Namespace: obj.Namespace, Name: obj.Name}
		if s.leases[key] != nil {
			return true, nil, apierrors.NewAlreadyExists(leasesResource, obj.Name)
		}
		s.uid++
		obj.UID = types.UID(fmt.Sprintf("uid-%d", s.uid))
		obj.CreationTimestamp = metav1.NewTime(time.Unix(0, 0))
		return true, s.storeLocked(key, obj, watch.Added), nil

	case "update":
		obj, err := leaseFrom(action.(clienttesting.UpdateAction).GetObject(), ns)
		if err != nil {
			return true, nil, err
		}
		key := types.NamespacedName{Namespace: obj.Namespace, Name: obj.Name}
		old := s.leases[key]
		if old == nil {
			return true, nil, apierrors.NewNotFound(leasesResource, obj.Name)
		}
		// Leases allow unconditional updates (empty resourceVersion).
		if obj.ResourceVersion != "" && obj.ResourceVersion != old.ResourceVersion {
			return true, nil, apierrors.NewConflict(leasesResource, obj.Name,
				fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
		}
		if obj.UID != "" && obj.UID != old.UID {
			return true, nil, apierrors.NewConflict(leasesResource, obj.Name, fmt.Errorf("UID mismatch"))
		}
		obj.UID = old.UID
		obj.CreationTimestamp = old.CreationTimestamp
		return true, s.storeLocked(key, obj, watch.Modified), nil

	case "delete":
		a := action.(clienttesting.DeleteAction)
		key := types.NamespacedName{Namespace: ns, Name: a.GetName()}
		old := s.leases[key]
		if old == nil {
			return true, nil, apierrors.NewNotFound(leasesResource, a.GetName())
		}
		if p := a.GetDeleteOptions().Preconditions; p != nil {
			if p.UID != nil && *p.UID != old.UID {
				return true, nil, apierrors.NewConflict(leasesResource, a.GetName(),
					fmt.Errorf("precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, old.UID))
			}
			if p.ResourceVersion != nil && *p.ResourceVersion != old.ResourceVersion {
				return true, nil, apierrors.NewConflict(leasesResource, a.GetName(),
					fmt.Errorf("precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, old.ResourceVersion))
			}
		}
		s.deleteLocked(key)
		return true, nil, nil
	}
	return true, nil, apierrors.NewMethodNotSupported(leasesResource, action.GetVerb())
}

func (s *Server) storeLocked(key types.NamespacedName, obj *coordinationv1.Lease, typ watch.EventType) *coordinationv1.Lease {
	s.rv++
	obj.ResourceVersion = strconv.FormatInt(s.rv, 10)
	s.leases[key] = obj
	s.broadcastLocked(event{rv: s.rv, typ: typ, obj: obj.DeepCopy()})
	return obj.DeepCopy()
}

func (s *Server) deleteLocked(key types.NamespacedName) {
	old := s.leases[key]
	delete(s.leases, key)
	s.rv++
	gone := old.DeepCopy()
	gone.ResourceVersion = strconv.FormatInt(s.rv, 10)
	s.broadcastLocked(event{rv: s.rv, typ: watch.Deleted, obj: gone})
}

func (s *Server) broadcastLocked(ev event) {
	s.history = append(s.history, ev)
	for w := range s.watchers {
		w.offer(ev)
	}
}

func (s *Server) watch(action clienttesting.Action) (bool, watch.Interface, error) {
	a, ok := action.(clienttesting.WatchAction)
	if !ok {
		return true, nil, apierrors.NewBadRequest("not a watch")
	}
	r := a.GetWatchRestrictions()
	w := &watcher{
		s:      s,
		ns:     action.GetNamespace(),
		labels: r.Labels,
		fields: r.Fields,
		ch:     make(chan watch.Event, 1024),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.ResourceVersion != "" && r.ResourceVersion != "0" {
		from, err := strconv.ParseInt(r.ResourceVersion, 10, 64)
		if err != nil {
			return true, nil, apierrors.NewBadRequest("bad resourceVersion")
		}
		for _, ev := range s.history {
			if ev.rv > from {
				w.offer(ev)
			}
		}
	}
	s.watchers[w] = struct{}{}
	return true, w, nil
}

type watcher struct {
	s      *Server
	ns     string
	labels labels.Selector
	fields fields.Selector
	ch     chan watch.Event
	once   sync.Once
}

// offer delivers ev if it matches; s.mu is held, which also serialises it
// with Stop.
func (w *watcher) offer(ev event) {
	if w.ns != "" && ev.obj.Namespace != w.ns {
		return
	}
	if w.labels != nil && !w.labels.Matches(labels.Set(ev.obj.Labels)) {
		return
	}
	if w.fields != nil && !w.fields.Matches(fields.Set{"metadata.name": ev.obj.Name, "metadata.namespace": ev.obj.Namespace}) {
		return
	}
	select {
	case w.ch <- watch.Event{Type: ev.typ, Object: ev.obj.DeepCopy()}:
	default: // a consumer this far behind would be closed by a real server too
	}
}

func (w *watcher) Stop() {
	w.once.Do(func() {
		w.s.mu.Lock()
		delete(w.s.watchers, w)
		close(w.ch)
		w.s.mu.Unlock()
	})
}

func (w *watcher) ResultChan() <-chan watch.Event { return w.ch }

// leaseFrom copies the Lease a create or update carries, defaulting its
// namespace to the request's as the API server does.
func leaseFrom(obj runtime.Object, ns string) (*coordinationv1.Lease, error) {
	l, ok := obj.(*coordinationv1.Lease)
	if !ok {
		return nil, apierrors.NewBadRequest("not a lease")
	}
	l = l.DeepCopy()
	if l.Namespace == "" {
		l.Namespace = ns
	}
	return l, nil
}
