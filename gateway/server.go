package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/leasehold/leasehold/gateway/dedup"
	"github.com/leasehold/leasehold/gateway/signal"
)

// Routes served by the Handler.
const (
	PathAlertmanager    = "/api/v1/signals/alertmanager"
	PathKubernetesEvent = "/api/v1/signals/kubernetes-event"
	PathHealthz         = "/healthz"
	PathReadyz          = "/readyz"
	PathMetrics         = "/metrics"
)

// Server is the gateway's HTTP front end. It is safe for concurrent use.
// Handler may be served by any http.Server; Serve and ListenAndServe add
// TLS, graceful shutdown and readiness that follows it.
type Server struct {
	cfg     Config
	tls     *tls.Config
	metrics *metrics
	auth    *authenticator // nil when cfg.InsecureNoAuth
	slots   slots
	handler http.Handler

	// The decoders; fields so that tests can stand in for them.
	decodeAlerts func(body []byte, opts signal.Options) ([]signal.Item, error)
	decodeEvent  func(body []byte, opts signal.Options) (signal.Item, error)
	signalOpts   signal.Options

	served       atomic.Bool
	shuttingDown atomic.Bool

	// mu guards drained; active counts handlers running. Once drained is
	// set, no handler starts, so active.Wait cannot race with Add.
	mu      sync.Mutex
	drained bool
	active  sync.WaitGroup
}

// New validates cfg, fills its defaults and returns a Server. With
// InsecureNoAuth it logs a warning on cfg.Logger.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("gateway: invalid config: %w", err)
	}
	tlsCfg, err := cfg.loadTLS()
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:          cfg,
		tls:          tlsCfg,
		metrics:      m,
		slots:        slots{max: int64(cfg.MaxInFlight), gauge: m.inFlight},
		decodeAlerts: signal.DecodeAlertmanager,
		decodeEvent:  signal.DecodeKubernetesEvent,
		signalOpts:   signal.Options{Cluster: cfg.Cluster, ClusterLabel: cfg.ClusterLabel},
	}
	if cfg.InsecureNoAuth {
		cfg.Logger.Error(nil, "WARNING: authentication is OFF (insecure-no-auth): anyone who can reach this server can create RemediationRequests; use it for local runs only")
	} else {
		s.auth = newAuthenticator(cfg, m)
	}
	s.handler = s.routes()
	return s, nil
}

// AuthMode describes the authentication in force, for a startup line:
// "none (insecure)", "token-review" or "token-review+access-review".
func (s *Server) AuthMode() string {
	switch {
	case s.cfg.InsecureNoAuth:
		return "none (insecure)"
	case s.cfg.AccessReview:
		return "token-review+access-review"
	default:
		return "token-review"
	}
}

// Handler returns the handler of every route. Requests to other paths are
// answered 404.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(PathAlertmanager, s.instrument(routeAlertmanager, s.reviewGate(s.handleAlertmanager)))
	mux.Handle(PathKubernetesEvent, s.instrument(routeKubernetesEvent, s.reviewGate(s.handleKubernetesEvent)))
	mux.Handle(PathHealthz, s.instrument(routeHealthz, s.handleHealthz))
	mux.Handle(PathReadyz, s.instrument(routeReadyz, s.handleReadyz))
	mux.Handle(PathMetrics, s.instrument(routeMetrics, s.handleMetrics()))
	mux.Handle("/", s.instrument(routeOther, func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, newProblem(r, http.StatusNotFound, ProblemNotFound, "no route for "+r.URL.Path))
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		if s.drained {
			s.mu.Unlock()
			w.Header().Set("Connection", "close")
			writeProblem(w, newProblem(r, http.StatusServiceUnavailable, ProblemShuttingDown, "the server is shutting down"))
			return
		}
		s.active.Add(1)
		s.mu.Unlock()
		defer s.active.Done()
		mux.ServeHTTP(w, r)
	})
}

// instrument applies the request deadline, puts a logger in the context
// and counts the answer.
func (s *Server) instrument(route string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.cfg.Clock.Now()
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		log, err := logr.FromContext(ctx)
		if err != nil {
			log = s.cfg.Logger
		}
		ctx = logr.NewContext(ctx, log.WithValues("route", route))
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r.WithContext(withReceivedAt(ctx, start)))
		code := sw.status
		if code == 0 {
			code = http.StatusOK
		}
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		s.metrics.duration.WithLabelValues(route).Observe(s.cfg.Clock.Since(start).Seconds())
	})
}

// reviewGate authenticates the bearer token of a signal request before h
// runs, and answers a request that would need a review while every review
// slot is taken: 503 with Retry-After and problem type
// authentication-busy, without waiting and without an error log line per
// request, since under a flood of unknown tokens that is the normal
// answer. Every other outcome is left to h, which finds the decision in
// the request's context instead of asking again. Requests without a
// bearer token or with another method than POST pass untouched, so h
// still checks the method first.
func (s *Server) reviewGate(h http.HandlerFunc) http.HandlerFunc {
	if s.auth == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearerToken(r)
		if r.Method != http.MethodPost || !ok {
			h(w, r)
			return
		}
		ctx := r.Context()
		d, err := s.auth.authenticate(ctx, token)
		if errors.Is(err, errReviewsBusy) {
			w.Header().Set("Retry-After", retryAfterSeconds(s.cfg.RetryAfter))
			writeProblem(w, newProblem(r, http.StatusServiceUnavailable, ProblemAuthBusy,
				fmt.Sprintf("%d token reviews are in flight, the most allowed; the signal was not counted and may be sent again", s.cfg.MaxTokenReviews)))
			return
		}
		h(w, r.WithContext(withAuthResult(ctx, token, d, err)))
	}
}

type receivedAtKey struct{}

func withReceivedAt(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, receivedAtKey{}, t)
}

func receivedAt(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(receivedAtKey{}).(time.Time)
	return t, ok
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// allowMethods answers 405 with Allow unless r's method is one of methods.
func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	allow := ""
	for i, m := range methods {
		if i > 0 {
			allow += ", "
		}
		allow += m
	}
	w.Header().Set("Allow", allow)
	writeProblem(w, newProblem(r, http.StatusMethodNotAllowed, ProblemMethod,
		fmt.Sprintf("method %s not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow)))
	return false
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	writeText(w, http.StatusOK, "ok")
}

// handleReadyz fails once shutdown has begun, so that no new traffic is
// routed here, and while the API server is unreachable, since without it no
// signal can be recorded.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	if s.shuttingDown.Load() {
		writeProblem(w, newProblem(r, http.StatusServiceUnavailable, ProblemShuttingDown, "the server is shutting down"))
		return
	}
	if err := s.cfg.ReadyCheck(r.Context()); err != nil {
		writeProblem(w, newProblem(r, http.StatusServiceUnavailable, ProblemNotReady, "API server check failed: "+err.Error()))
		return
	}
	writeText(w, http.StatusOK, "ok")
}

func (s *Server) handleMetrics() http.HandlerFunc {
	var prom http.Handler
	if s.cfg.Gatherer != nil {
		prom = promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{})
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		if prom == nil {
			writeProblem(w, newProblem(r, http.StatusNotFound, ProblemMetricsDisabled, "no Gatherer configured"))
			return
		}
		prom.ServeHTTP(w, r)
	}
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body + "\n"))
}

// ListenAndServe listens on cfg.Addr and calls Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("gateway: listen: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve answers requests on ln (with TLS if configured) until ctx ends,
// then shuts down gracefully: /readyz fails at once, ln is closed, idle
// connections are closed, and in-flight requests get ShutdownTimeout to
// finish. Requests still running then have their contexts cancelled and
// their connections closed; a handler whose signal is in a write still
// waits for that write's outcome, up to dedup.MaxOutcomeWait. Serve
// returns only after every handler has returned, so that the caller can
// then release what the handlers used (the locker): nil after a graceful
// shutdown, an error if the listener failed or the shutdown timed out.
// Serve may be called once; it closes ln.
//
// Request contexts carry the values of ctx (a logger, for instance) but not
// its cancellation: ending ctx starts a graceful shutdown, it does not abort
// the requests in flight.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.served.CompareAndSwap(false, true) {
		ln.Close()
		return errors.New("gateway: Serve called more than once")
	}
	log, err := logr.FromContext(ctx)
	if err != nil {
		log = s.cfg.Logger
	}
	base, hardStop := context.WithCancel(logr.NewContext(context.WithoutCancel(ctx), log))
	defer hardStop()
	srv := &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.tls,
		BaseContext:       func(net.Listener) context.Context { return base },
		ReadHeaderTimeout: s.cfg.RequestTimeout,
		ReadTimeout:       s.cfg.RequestTimeout,
		// A request whose deadline passed while its signal was in a write
		// waits for that write's outcome, so that its answer says whether
		// the signal was counted; leave time for it and for the answer.
		WriteTimeout: s.cfg.RequestTimeout + dedup.MaxOutcomeWait + 5*time.Second,
		// Keep-alive connections of senders that post every few seconds
		// (Alertmanager's group_interval) stay open between posts.
		IdleTimeout: 2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() {
		if s.tls != nil {
			errc <- srv.ServeTLS(ln, "", "")
			return
		}
		errc <- srv.Serve(ln)
	}()
	log.Info("serving", "addr", ln.Addr().String(), "tls", s.tls != nil, "auth", s.AuthMode())

	select {
	case err := <-errc:
		s.shuttingDown.Store(true)
		hardStop()
		_ = srv.Close()
		s.drain()
		return fmt.Errorf("gateway: serve: %w", err)
	case <-ctx.Done():
	}
	s.shuttingDown.Store(true)
	log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	shutdownErr := srv.Shutdown(sctx)
	if shutdownErr != nil {
		// Out of time: abort what is left. The handlers' contexts end and
		// their connections close, so their callers see connection errors
		// and retry elsewhere (a signal whose write was applied is then
		// counted again: the price of a shutdown that outlasts
		// ShutdownTimeout). A handler not yet in a write returns at once;
		// one whose signal is in a write still waits for that write, up to
		// dedup.MaxOutcomeWait, and drain below waits for it, so that the
		// caller releases the locker only after the last write.
		hardStop()
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error(err, "serve")
	}
	s.drain()
	if shutdownErr != nil {
		return fmt.Errorf("gateway: shutdown: in-flight requests did not finish within %s: %w", s.cfg.ShutdownTimeout, shutdownErr)
	}
	log.Info("shut down")
	return nil
}

// drain stops new handlers from starting and waits for the running ones.
func (s *Server) drain() {
	s.mu.Lock()
	s.drained = true
	s.mu.Unlock()
	s.active.Wait()
}

// slots is the in-flight cap: a counting semaphore that never waits.
type slots struct {
	max   int64
	n     atomic.Int64
	gauge interface{ Add(float64) }
}

// tryAcquire takes k slots, all or none.
func (s *slots) tryAcquire(k int) bool {
	for {
		cur := s.n.Load()
		if cur+int64(k) > s.max {
			return false
		}
		if s.n.CompareAndSwap(cur, cur+int64(k)) {
			s.gauge.Add(float64(k))
			return true
		}
	}
}

func (s *slots) release(k int) {
	s.n.Add(-int64(k))
	s.gauge.Add(-float64(k))
}
