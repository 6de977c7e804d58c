package gateway

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
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

// maxTokenLength bounds the bearer tokens worth a review. Service-account
// and OIDC tokens are a few kilobytes at most.
const maxTokenLength = 8192

// errReviewsBusy: the token is not cached and every review slot of its
// pool is taken. Nothing was asked; the sender may retry.
var errReviewsBusy = errors.New("too many token reviews in flight")

// Values of the reason label of gateway_auth_refused_total.
const (
	refusedMalformed = "malformed"
	refusedCapacity  = "capacity"
)

// authenticator validates bearer tokens with TokenReview (and optionally
// SubjectAccessReview) and caches the decisions.
//
// What an unauthenticated caller can cost is bounded: a token that is not
// RFC 6750-shaped, or longer than maxTokenLength, is rejected without a
// review; at most maxReviews reviews of unknown tokens run at once, and a
// request that finds them all taken is refused at once instead of waiting.
// Re-reviews of tokens accepted before (their cache entry expired) have a
// pool of their own, so a flood of unknown tokens cannot lock out the
// senders already known.
//
// A sender's token changes (projected tokens are rotated; a replica has
// not seen the new one yet), so a known sender also has to be recognized
// by a token this replica never saw. A JWT whose issuer and subject, read
// without checking its signature, are those of a token accepted before is
// reviewed from the known pool too. Its claims may be forged, so such
// reviews are limited to one in flight per subject and to half the known
// pool: forged tokens naming known subjects never take the slots of the
// tokens accepted before, and delay a real rotation by at most one review
// at a time. The TokenReview still decides; the claims only pick the pool.
//
// Accepted and rejected decisions live in two caches, so rejections can
// never evict an accepted token. Keys are the SHA-256 of the token, so no
// cache holds a token. An allowed decision is trusted for ttl, a rejection
// for negTTL; an API error is never cached. Concurrent requests with the
// same uncached token share one review: an alert storm from one client
// costs one TokenReview, not one per request.
type authenticator struct {
	tokens    TokenReviewer
	access    AccessReviewer // nil: no access review
	namespace string
	audience  string
	clock     clock.PassiveClock
	ttl       time.Duration
	negTTL    time.Duration
	// timeout bounds one review. It runs detached from the request that
	// started it (other requests may wait for it), so it needs its own.
	timeout time.Duration
	metrics *metrics
	// fresh bounds the reviews of tokens not accepted before; renewals
	// those of tokens whose accepted entry expired, and of tokens of a
	// subject accepted before, which also take a slot of rotations.
	fresh, renewals, rotations reviewPool

	mu sync.Mutex
	// accepted keeps expired entries until they are pushed out: an expired
	// entry still marks its token as known for the renewals pool.
	accepted *tokenCache
	rejected *tokenCache
	// subjects holds the issuer and subject of the JWTs accepted, by
	// subjectKey, newest acceptance last; decisions in it are unused.
	subjects *tokenCache
	calls    map[tokenKey]*reviewCall
	// rotating holds the subjects with a review in flight from rotations.
	rotating map[tokenKey]struct{}
}

// tokenKey is the SHA-256 of a token.
type tokenKey = [sha256.Size]byte

// reviewCall is one review in progress; done is closed when d and err are
// set.
type reviewCall struct {
	done chan struct{}
	d    decision
	err  error
	// subject is the subjectKey of the token, if it is a JWT that has one.
	subject    tokenKey
	hasSubject bool
	// rotation: the review holds the subject's slot of rotations.
	rotation bool
}

func newAuthenticator(cfg Config, m *metrics) *authenticator {
	a := &authenticator{
		tokens:    cfg.TokenReviewer,
		namespace: cfg.Namespace,
		audience:  cfg.Audience,
		clock:     cfg.Clock,
		ttl:       cfg.AuthCacheTTL,
		negTTL:    cfg.AuthCacheNegativeTTL,
		timeout:   cfg.RequestTimeout,
		metrics:   m,
		fresh:     newReviewPool(cfg.MaxTokenReviews),
		renewals:  newReviewPool(cfg.MaxTokenReviews),
		// Half the known pool, rounded down: the rest stays for the tokens
		// accepted before, whatever forged claims ask for.
		rotations: newReviewPool(cfg.MaxTokenReviews / 2),
		accepted:  newTokenCache(cfg.AuthCacheSize),
		rejected:  newTokenCache(cfg.AuthCacheSize),
		subjects:  newTokenCache(cfg.AuthCacheSize),
		calls:     make(map[tokenKey]*reviewCall),
		rotating:  make(map[tokenKey]struct{}),
	}
	if cfg.AccessReview {
		a.access = cfg.AccessReviewer
	}
	return a
}

// authenticate returns the decision for token. An error means the API
// server was not asked or could not be (errReviewsBusy, an API error, or
// ctx ended first); it says nothing about the token.
func (a *authenticator) authenticate(ctx context.Context, token string) (decision, error) {
	if m, ok := ctx.Value(authResultKey{}).(*authResult); ok && m.token == token {
		return m.d, m.err
	}
	if err := checkTokenShape(token); err != nil {
		a.metrics.authRefused.WithLabelValues(refusedMalformed).Inc()
		return decision{verdict: unauthenticated, reason: err.Error()}, nil
	}
	key := sha256.Sum256([]byte(token))
	now := a.clock.Now()
	a.mu.Lock()
	e, known := a.accepted.get(key)
	if known && now.Before(e.expires) {
		a.mu.Unlock()
		a.metrics.authCache.WithLabelValues("hit").Inc()
		return e.d, nil
	}
	if e, ok := a.rejected.get(key); ok {
		if now.Before(e.expires) {
			a.mu.Unlock()
			a.metrics.authCache.WithLabelValues("hit").Inc()
			return e.d, nil
		}
		a.rejected.remove(key)
	}
	a.metrics.authCache.WithLabelValues("miss").Inc()
	var subject tokenKey
	var hasSubject bool
	if _, shared := a.calls[key]; !shared && !known {
		// The claims choose the pool of a token not accepted before.
		// Parsing them (up to the token size limit) is done outside a.mu,
		// so that a flood of JWT-shaped junk does not serialize every
		// other request's cache lookup behind it.
		a.mu.Unlock()
		subject, hasSubject = tokenSubject(token)
		a.mu.Lock()
	}
	call, shared := a.calls[key]
	if !shared {
		call = &reviewCall{done: make(chan struct{})}
		call.subject, call.hasSubject = subject, hasSubject
		release, ok := a.admit(call, known)
		if !ok {
			a.mu.Unlock()
			a.metrics.authRefused.WithLabelValues(refusedCapacity).Inc()
			return decision{}, errReviewsBusy
		}
		a.calls[key] = call
		// Detached from ctx: requests that join this call must not fail
		// because the first one gave up.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.timeout)
		go func() {
			defer release()
			defer cancel()
			d, err := a.review(rctx, token)
			a.finish(key, call, d, err)
		}()
	}
	a.mu.Unlock()
	select {
	case <-call.done:
		return call.d, call.err
	case <-ctx.Done():
		return decision{}, ctx.Err()
	}
}

// admit takes the review slots for call, without waiting, and returns
// what gives them back: one of renewals for a token accepted before; one
// of renewals and the subject's one of rotations for a token whose subject
// was accepted before, while they are free; else one of fresh. a.mu must
// be held.
func (a *authenticator) admit(call *reviewCall, known bool) (release func(), ok bool) {
	if known {
		return a.renewals.release, a.renewals.tryAcquire()
	}
	if call.hasSubject {
		_, subjectKnown := a.subjects.get(call.subject)
		_, busy := a.rotating[call.subject]
		if subjectKnown && !busy && a.rotations.tryAcquire() {
			if a.renewals.tryAcquire() {
				call.rotation = true
				a.rotating[call.subject] = struct{}{}
				return func() {
					a.renewals.release()
					a.rotations.release()
				}, true
			}
			a.rotations.release()
		}
	}
	// An unknown token, or a known subject whose slots are taken: a
	// forged token may hold them, so the real one still gets its chance
	// with the rest.
	return a.fresh.release, a.fresh.tryAcquire()
}

// finish publishes a review's result and caches it unless it is an error.
func (a *authenticator) finish(key tokenKey, call *reviewCall, d decision, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	call.d, call.err = d, err
	delete(a.calls, key)
	if call.rotation {
		delete(a.rotating, call.subject)
	}
	close(call.done)
	if err != nil {
		return
	}
	now := a.clock.Now()
	if d.verdict == allowed {
		a.rejected.remove(key)
		a.accepted.put(key, d, now.Add(a.ttl))
		if call.hasSubject {
			// Only the claims of a token the API server accepted: its
			// signature was checked there.
			a.subjects.put(call.subject, decision{}, now.Add(a.ttl))
		}
		return
	}
	a.accepted.remove(key)
	a.rejected.put(key, d, now.Add(a.negTTL))
}

// checkTokenShape accepts what RFC 6750 allows as a bearer token
// (b64token: letters, digits, "-._~+/", then optional trailing "="), up to
// maxTokenLength bytes. Anything else cannot be a token the API server
// issued, so it is not worth a review.
func checkTokenShape(token string) error {
	if len(token) > maxTokenLength {
		return fmt.Errorf("token of %d bytes is longer than %d", len(token), maxTokenLength)
	}
	i := 0
	for i < len(token) && isTokenChar(token[i]) {
		i++
	}
	if i == 0 {
		return errors.New("token does not start with a token character")
	}
	for ; i < len(token); i++ {
		if token[i] != '=' {
			return fmt.Errorf("character at offset %d is not allowed in a bearer token", i)
		}
	}
	return nil
}

// tokenSubject returns the subjectKey of token if it is a JWT (three
// dot-separated base64url parts) whose payload names an issuer and a
// subject. The signature is not checked: the result only chooses the pool
// the token's review is taken from. The cost is bounded by maxTokenLength,
// which the caller has checked.
func tokenSubject(token string) (tokenKey, bool) {
	_, rest, ok := strings.Cut(token, ".")
	if !ok {
		return tokenKey{}, false
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sig, ".") {
		return tokenKey{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return tokenKey{}, false
	}
	var claims struct {
		Issuer  string `json:"iss"`
		Subject string `json:"sub"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil || claims.Issuer == "" || claims.Subject == "" {
		return tokenKey{}, false
	}
	return subjectKey(claims.Issuer, claims.Subject), true
}

// subjectKey is the SHA-256 of an issuer and a subject: distinct pairs
// give distinct inputs, and the cache holds 32 bytes whatever their size.
func subjectKey(issuer, subject string) tokenKey {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s%s", len(issuer), issuer, subject)
	var k tokenKey
	h.Sum(k[:0])
	return k
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~+/", c) >= 0
}

// reviewPool is a counting semaphore that never waits.
type reviewPool chan struct{}

func newReviewPool(n int) reviewPool { return make(reviewPool, n) }

func (p reviewPool) tryAcquire() bool {
	select {
	case p <- struct{}{}:
		return true
	default:
		return false
	}
}

func (p reviewPool) release() { <-p }

// tokenCache is a bounded map of decisions by token hash. When full, the
// oldest insertion goes; since every entry of one cache has the same TTL,
// that is also the first to expire. It does not drop expired entries by
// itself: the caller decides what an expired entry still means.
type tokenCache struct {
	size    int
	entries map[tokenKey]*list.Element // of *cacheEntry
	order   *list.List                 // oldest insertion first
}

type cacheEntry struct {
	key     tokenKey
	d       decision
	expires time.Time
}

func newTokenCache(size int) *tokenCache {
	return &tokenCache{size: size, entries: make(map[tokenKey]*list.Element), order: list.New()}
}

// get returns the entry of key, expired or not.
func (c *tokenCache) get(key tokenKey) (*cacheEntry, bool) {
	el, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	return el.Value.(*cacheEntry), true
}

// put stores d for key until expires, as the newest entry.
func (c *tokenCache) put(key tokenKey, d decision, expires time.Time) {
	c.remove(key)
	for len(c.entries) >= c.size && c.order.Len() > 0 {
		c.removeElement(c.order.Front())
	}
	if c.size > 0 {
		c.entries[key] = c.order.PushBack(&cacheEntry{key: key, d: d, expires: expires})
	}
}

func (c *tokenCache) remove(key tokenKey) {
	if el, ok := c.entries[key]; ok {
		c.removeElement(el)
	}
}

func (c *tokenCache) removeElement(el *list.Element) {
	delete(c.entries, el.Value.(*cacheEntry).key)
	c.order.Remove(el)
}

func (c *tokenCache) len() int { return len(c.entries) }

// authResultKey carries, in a request's context, the decision reached for
// its token before the handler ran (see Server.reviewGate), so that the
// handler's own authenticate call does not review the token again.
type authResultKey struct{}

type authResult struct {
	token string
	d     decision
	err   error
}

func withAuthResult(ctx context.Context, token string, d decision, err error) context.Context {
	return context.WithValue(ctx, authResultKey{}, &authResult{token: token, d: d, err: err})
}

// review asks the API server about token: who is it, and, with access
// reviews on, may that user create RemediationRequests in our namespace.
func (a *authenticator) review(ctx context.Context, token string) (decision, error) {
	tr, err := a.tokens.Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{a.audience}},
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
	// An API server that ignores spec.audiences answers with none: such a
	// token is valid for the API server itself, not for us.
	if !slices.Contains(tr.Status.Audiences, a.audience) {
		a.metrics.authReviews.WithLabelValues("token", "denied").Inc()
		return decision{verdict: unauthenticated, reason: fmt.Sprintf("token not issued for audience %q (audiences %q)", a.audience, tr.Status.Audiences)}, nil
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
