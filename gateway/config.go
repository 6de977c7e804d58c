package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/gateway/dedup"
	"github.com/leasehold/leasehold/gateway/owner"
	"github.com/leasehold/leasehold/gateway/signal"
	"github.com/leasehold/leasehold/internal/skewclock"
)

// Config configures a Server. Zero values are replaced by the documented
// defaults in one place (withDefaults); New rejects invalid values instead
// of replacing them.
type Config struct {
	// Dedup records the incidents. Required.
	Dedup dedup.Deduplicator

	// Resolver maps the object a signal names to its workload. Default
	// owner.Identity{} (every object is its own workload).
	Resolver owner.Resolver

	// Cluster names the cluster of signals that do not carry one. Required:
	// a DNS-1123 subdomain of at most 63 characters.
	Cluster string

	// ClusterLabel is the alert label that names the cluster, a Prometheus
	// label name. Default: the decoder's default ("cluster").
	ClusterLabel string

	// Namespace is the gateway's own namespace: the namespace of the access
	// review. Required when AccessReview is on.
	Namespace string

	// InsecureNoAuth turns authentication off: every caller may post
	// signals. For local runs only; New logs a warning when it is set.
	InsecureNoAuth bool

	// TokenReviewer validates bearer tokens (a client-go
	// AuthenticationV1().TokenReviews()). Required unless InsecureNoAuth.
	TokenReviewer TokenReviewer

	// Audience is the audience a bearer token must have been issued for:
	// sent in the TokenReview's spec.audiences and required in its
	// status.audiences. A token for the API server's own audience is
	// refused, so a token sent to the gateway cannot be replayed against
	// the API server. Default DefaultAudience.
	Audience string

	// AccessReview makes the gateway also ask, for every authenticated
	// caller, whether it may create remediationrequests.leasehold.dev in
	// Namespace. Off when false (the zero value): any authenticated caller
	// may post. `leasehold gateway` turns it on unless told otherwise.
	AccessReview bool

	// AccessReviewer answers the access reviews (a client-go
	// AuthorizationV1().SubjectAccessReviews()). Required when AccessReview.
	AccessReviewer AccessReviewer

	// AuthCacheTTL is how long an allowed token is trusted without asking
	// the API server again. Default 10s. A revoked token keeps working for
	// up to this long.
	AuthCacheTTL time.Duration

	// AuthCacheNegativeTTL is how long a rejected token (unauthenticated or
	// forbidden) is remembered. Default 2s: short, so that a caller whose
	// permission was just granted waits little, and long enough that a
	// client hammering with a bad token does not hammer the API server.
	AuthCacheNegativeTTL time.Duration

	// AuthCacheSize bounds each of the two token caches, accepted and
	// rejected. Default 4096. When one is full, its oldest entry goes;
	// rejections never push out an accepted token.
	AuthCacheSize int

	// MaxTokenReviews bounds the token reviews in flight (a TokenReview,
	// and the SubjectAccessReview that follows it) for tokens not in the
	// cache. A request that finds every slot taken is answered 503 with
	// Retry-After at once (problem type authentication-busy), so
	// unauthenticated traffic cannot turn into unbounded API load. Tokens
	// accepted before whose cache entry expired have MaxTokenReviews slots
	// of their own. Default 16.
	MaxTokenReviews int

	// MaxBodyBytes bounds a request body; larger bodies are answered 413.
	// Default 1 MiB.
	MaxBodyBytes int64

	// MaxInFlight caps the signals being recorded at once by the whole
	// server. A request that cannot reserve its slots at once is answered
	// 503 without waiting: under overload the gateway sheds load instead of
	// queueing until every request times out. Default 1000.
	MaxInFlight int

	// BatchConcurrency bounds the alerts of one webhook recorded at the
	// same time, by as many goroutines. A webhook reserves
	// min(BatchConcurrency, its firing alerts) slots of MaxInFlight, all or
	// none. Default min(32, MaxInFlight); at most MaxInFlight.
	BatchConcurrency int

	// RequestTimeout is the deadline of every request, applied to its
	// context. A signal not yet taken into a write when it passes is
	// answered 503 (not counted); one whose write is in flight is answered
	// with that write's outcome once known, up to dedup.MaxOutcomeWait
	// later. Default 10s.
	RequestTimeout time.Duration

	// RetryAfter is the value of the Retry-After header on 503 answers,
	// rounded up to whole seconds. Default 1s.
	RetryAfter time.Duration

	// ReadyCheck reports whether the API server is reachable; /readyz
	// fails while it returns an error. Default: always ready. /readyz also
	// fails once shutdown has begun, whatever ReadyCheck says.
	ReadyCheck func(ctx context.Context) error

	// Addr is the listen address of ListenAndServe. Default ":8080".
	Addr string

	// TLSCertFile and TLSKeyFile, both or neither, make the server speak
	// HTTPS. The pair is loaded by New, so a bad file fails at start.
	TLSCertFile string
	TLSKeyFile  string

	// ShutdownTimeout bounds the graceful shutdown: the time in-flight
	// requests get to finish once the server stops accepting. Requests
	// whose signals are in a write then still wait for its outcome, up to
	// dedup.MaxOutcomeWait more. Default 15s.
	ShutdownTimeout time.Duration

	// Registerer receives the metrics (all named gateway_*). Nil means the
	// metrics are kept but not registered.
	Registerer prometheus.Registerer

	// Gatherer is served on /metrics. Default: Registerer, if it is also a
	// Gatherer (a *prometheus.Registry is); otherwise /metrics answers 404.
	Gatherer prometheus.Gatherer

	// Logger is used when a request's context carries none. Default
	// logr.Discard().
	Logger logr.Logger

	// Clock is the source of time (ReceivedAt of incidents, the auth cache,
	// durations). Default clock.RealClock{}.
	Clock clock.PassiveClock

	// ClockOffset is FOR TESTS ONLY: a fixed offset added to Clock's Now, to
	// simulate a replica whose wall clock is wrong. Default 0 (none).
	ClockOffset time.Duration
}

// Defaults, in one place with withDefaults.
const (
	DefaultAuthCacheTTL         = 10 * time.Second
	DefaultAuthCacheNegativeTTL = 2 * time.Second
	DefaultAuthCacheSize        = 4096
	DefaultMaxTokenReviews      = 16
	DefaultAudience             = "leasehold-gateway"
	DefaultMaxBodyBytes         = 1 << 20
	DefaultMaxInFlight          = 1000
	DefaultBatchConcurrency     = 32
	DefaultRequestTimeout       = 10 * time.Second
	DefaultRetryAfter           = time.Second
	DefaultAddr                 = ":8080"
	DefaultShutdownTimeout      = 15 * time.Second
)

// withDefaults returns c with zero values replaced by defaults. It is the
// only place defaults live.
func (c Config) withDefaults() Config {
	if c.Resolver == nil {
		c.Resolver = owner.Identity{}
	}
	if c.AuthCacheTTL == 0 {
		c.AuthCacheTTL = DefaultAuthCacheTTL
	}
	if c.AuthCacheNegativeTTL == 0 {
		c.AuthCacheNegativeTTL = DefaultAuthCacheNegativeTTL
	}
	if c.AuthCacheSize == 0 {
		c.AuthCacheSize = DefaultAuthCacheSize
	}
	if c.MaxTokenReviews == 0 {
		c.MaxTokenReviews = DefaultMaxTokenReviews
	}
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.BatchConcurrency == 0 {
		c.BatchConcurrency = min(DefaultBatchConcurrency, c.MaxInFlight)
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = DefaultRetryAfter
	}
	if c.ReadyCheck == nil {
		c.ReadyCheck = func(context.Context) error { return nil }
	}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Gatherer == nil {
		if g, ok := c.Registerer.(prometheus.Gatherer); ok {
			c.Gatherer = g
		}
	}
	if c.Logger.GetSink() == nil {
		c.Logger = logr.Discard()
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.ClockOffset != 0 {
		c.Clock = skewclock.NewPassive(c.Clock, c.ClockOffset)
	}
	return c
}

// validate checks a defaulted Config and reports every problem at once.
func (c Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Dedup == nil {
		bad("Dedup is required")
	}
	if err := (signal.Options{Cluster: c.Cluster, ClusterLabel: c.ClusterLabel}).Validate(); err != nil {
		bad("%w", err)
	}
	if c.InsecureNoAuth && c.AccessReview {
		bad("AccessReview cannot be on when InsecureNoAuth is")
	}
	if !c.InsecureNoAuth && c.TokenReviewer == nil {
		bad("TokenReviewer is required unless InsecureNoAuth is set")
	}
	if c.AccessReview {
		if c.AccessReviewer == nil {
			bad("AccessReviewer is required when AccessReview is on")
		}
		if c.Namespace == "" {
			bad("Namespace is required when AccessReview is on")
		}
	}
	if c.AuthCacheTTL < 0 || c.AuthCacheNegativeTTL < 0 || c.AuthCacheSize < 0 {
		bad("AuthCacheTTL (%v), AuthCacheNegativeTTL (%v) and AuthCacheSize (%d) must not be negative",
			c.AuthCacheTTL, c.AuthCacheNegativeTTL, c.AuthCacheSize)
	}
	if c.MaxTokenReviews < 0 {
		bad("MaxTokenReviews (%d) must not be negative", c.MaxTokenReviews)
	}
	if c.MaxBodyBytes < 0 {
		bad("MaxBodyBytes (%d) must not be negative", c.MaxBodyBytes)
	}
	if c.MaxInFlight < 0 {
		bad("MaxInFlight (%d) must not be negative", c.MaxInFlight)
	}
	if c.BatchConcurrency < 0 || c.BatchConcurrency > c.MaxInFlight {
		bad("BatchConcurrency (%d) must lie in [1, MaxInFlight (%d)]", c.BatchConcurrency, c.MaxInFlight)
	}
	if c.RequestTimeout < 0 || c.RetryAfter < 0 || c.ShutdownTimeout < 0 {
		bad("RequestTimeout (%v), RetryAfter (%v) and ShutdownTimeout (%v) must not be negative",
			c.RequestTimeout, c.RetryAfter, c.ShutdownTimeout)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("TLSCertFile and TLSKeyFile go together")
	}
	return errors.Join(errs...)
}

// loadTLS returns the server's TLS configuration, or nil for plain HTTP.
func (c Config) loadTLS() (*tls.Config, error) {
	if c.TLSCertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS key pair: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
