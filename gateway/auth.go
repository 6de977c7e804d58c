package gateway

import (
	"container/list"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// TokenReviewer validates a bearer token with the API server. A client-go
// clientset's AuthenticationV1().TokenReviews() implements it.
type TokenReviewer interface {
	Create(ctx context.Context, review *authenticationv1.TokenReview, opts metav1.CreateOptions) (*authenticationv1.TokenReview, error)
}

// AccessReviewer asks the API server whether a user may do something. A
// client-go clientset's AuthorizationV1().SubjectAccessReviews() implements
// it.
type AccessReviewer interface {
	Create(ctx context.Context, review *authorizationv1.SubjectAccessReview, opts metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error)
}

// The permission the access review asks about: the gateway creates
// RemediationRequests on the caller's behalf.
const (
	AccessVerb     = "create"
	AccessResource = "remediationrequests"
)

// verdict is what the API server said about a token.
type verdict int

const (
	allowed verdict = iota
	unauthenticated
	forbidden
)

// decision is a cached verdict with what the answer needs.
type decision struct {
	verdict verdict
	// user is the authenticated username; empty when unauthenticated.
	user string
	// reason is the API server's explanation, for logs.
	reason string
}

// authenticator validates bearer tokens with TokenReview (and optionally
// SubjectAccessReview) and caches the decisions.
//
// The cache key is the SHA-256 of the token, so the cache never holds a
// token. An allowed decision lives ttl, a rejection negTTL; an API error is
// never cached. Concurrent requests with the same uncached token share one
// review: an alert storm from one client costs one TokenReview, not one per
// request.
type authenticator struct {
	tokens    TokenReviewer
	access    AccessReviewer // nil: no access review
	namespace string
	clock     clock.PassiveClock
	ttl       time.Duration
	negTTL    time.Duration
	size      int
	// timeout bounds one review. It runs detached from the request that
	// started it (other requests may wait for it), so it needs its own.
	timeout time.Duration
	metrics *metrics

	mu      sync.Mutex
	entries map[[sha256.Size]byte]*list.Element // of *cacheEntry
	order   *list.List                          // oldest insertion first
	calls   map[[sha256.Size]byte]*reviewCall
}

type cacheEntry struct {
	key     [sha256.Size]byte
	d       decision
	expires time.Time
}

// reviewCall is one review in progress; done is closed when d and err are
// set.
type reviewCall struct {
	done chan struct{}
	d    decision
	err  error
}

func newAuthenticator(cfg Config, m *metrics) *authenticator {
	a := &authenticator{
		tokens:    cfg.TokenReviewer,
		namespace: cfg.Namespace,
		clock:     cfg.Clock,
		ttl:       cfg.AuthCacheTTL,
		negTTL:    cfg.AuthCacheNegativeTTL,
		size:      cfg.AuthCacheSize,
		timeout:   cfg.RequestTimeout,
		metrics:   m,
		entries:   make(map[[sha256.Size]byte]*list.Element),
		order:     list.New(),
		calls:     make(map[[sha256.Size]byte]*reviewCall),
	}
	if cfg.AccessReview {
		a.access = cfg.AccessReviewer
	}
	return a
}

// authenticate returns the decision for token. An error means the API
// server could not be asked (or ctx ended first); it says nothing about
// the token.
func (a *authenticator) authenticate(ctx context.Context, token string) (decision, error) {
	key := sha256.Sum256([]byte(token))
	a.mu.Lock()
	if el, ok := a.entries[key]; ok {
		e := el.Value.(*cacheEntry)
		if a.clock.Now().Before(e.expires) {
			a.mu.Unlock()
			a.metrics.authCache.WithLabelValues("hit").Inc()
			return e.d, nil
		}
		a.removeLocked(el)
	}
	call, shared := a.calls[key]
	if !shared {
		call = &reviewCall{done: make(chan struct{})}
		a.calls[key] = call
		// Detached from ctx: requests that join this call must not fail
		// because the first one gave up.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.timeout)
		go func() {
			defer cancel()
			d, err := a.review(rctx, token)
			a.finish(key, call, d, err)
		}()
	}
	a.mu.Unlock()
	a.metrics.authCache.WithLabelValues("miss").Inc()
	select {
	case <-call.done:
		return call.d, call.err
	case <-ctx.Done():
		return decision{}, ctx.Err()
	}
}

// finish publishes a review's result and caches it unless it is an error.
func (a *authenticator) finish(key [sha256.Size]byte, call *reviewCall, d decision, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	call.d, call.err = d, err
	delete(a.calls, key)
	close(call.done)
	if err != nil {
		return
	}
	ttl := a.ttl
	if d.verdict != allowed {
		ttl = a.negTTL
	}
	if el, ok := a.entries[key]; ok {
		a.removeLocked(el)
	}
	now := a.clock.Now()
	// Make room: drop expired entries at the old end, then the oldest
	// while still full.
	for front := a.order.Front(); front != nil; front = a.order.Front() {
		if len(a.entries) < a.size && now.Before(front.Value.(*cacheEntry).expires) {
			break
		}
		a.removeLocked(front)
	}
	a.entries[key] = a.order.PushBack(&cacheEntry{key: key, d: d, expires: now.Add(ttl)})
}

func (a *authenticator) removeLocked(el *list.Element) {
	delete(a.entries, el.Value.(*cacheEntry).key)
	a.order.Remove(el)
}

// review asks the API server about token: who is it, and, with access
// reviews on, may that user create RemediationRequests in our namespace.
func (a *authenticator) review(ctx context.Context, token string) (decision, error) {
	tr, err := a.tokens.Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token},
	}, metav1.CreateOptions{})
	if err != nil {
		a.metrics.authReviews.WithLabelValues("token", "error").Inc()
		return decision{}, fmt.Errorf("token review: %w", err)
	}
	if !tr.Status.Authenticated {
		a.metrics.authReviews.WithLabelValues("token", "denied").Inc()
		reason := tr.Status.Error
		if reason == "" {
			reason = "token not authenticated"
		}
		return decision{verdict: unauthenticated, reason: reason}, nil
	}
	a.metrics.authReviews.WithLabelValues("token", "allowed").Inc()
	user := tr.Status.User
	if a.access == nil {
		return decision{verdict: allowed, user: user.Username}, nil
	}
	extra := make(map[string]authorizationv1.ExtraValue, len(user.Extra))
	for k, v := range user.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar, err := a.access.Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   user.Username,
			UID:    user.UID,
			Groups: user.Groups,
			Extra:  extra,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: a.namespace,
				Verb:      AccessVerb,
				Group:     v1alpha1.GroupVersion.Group,
				Resource:  AccessResource,
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		a.metrics.authReviews.WithLabelValues("access", "error").Inc()
		return decision{}, fmt.Errorf("access review for %q: %w", user.Username, err)
	}
	if !sar.Status.Allowed || sar.Status.Denied {
		a.metrics.authReviews.WithLabelValues("access", "denied").Inc()
		return decision{verdict: forbidden, user: user.Username, reason: sar.Status.Reason}, nil
	}
	a.metrics.authReviews.WithLabelValues("access", "allowed").Inc()
	return decision{verdict: allowed, user: user.Username}, nil
}

// bearerToken extracts the token of an "Authorization: Bearer <token>"
// header. The scheme is case-insensitive (RFC 7235).
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
