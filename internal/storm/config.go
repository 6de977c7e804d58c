package storm

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/gateway"
	"github.com/leasehold/leasehold/gateway/dedup"
)

// Payload is the kind of signal a storm sends.
type Payload string

const (
	// PayloadAlert sends Alertmanager webhooks (version 4), one firing alert
	// each, to /api/v1/signals/alertmanager.
	PayloadAlert Payload = "alert"
	// PayloadEvent sends core/v1 Warning Events to
	// /api/v1/signals/kubernetes-event.
	PayloadEvent Payload = "event"
)

// Defaults applied to zero fields of Config.
const (
	DefaultSignals        = 100
	DefaultMaxConcurrency = 100
	DefaultFingerprints   = 1
	DefaultCluster        = "local"
	DefaultNamespace      = "storm"
	DefaultMaxRetries     = 20
	DefaultMaxRetryAfter  = 5 * time.Second
	// DefaultRequestTimeout outlasts the longest a gateway with default
	// settings takes to answer: its request deadline plus the time a write
	// in flight at that deadline may take to learn its outcome. An attempt
	// abandoned earlier would be retried while its count may still land.
	DefaultRequestTimeout  = gateway.DefaultRequestTimeout + dedup.MaxOutcomeWait + 10*time.Second
	DefaultMaxIdle         = 10 * time.Second
	DefaultMinIdle         = time.Second
	DefaultRetryBasePeriod = 100 * time.Millisecond
	DefaultRetryMaxPeriod  = 2 * time.Second
)

// ErrInvalidConfig is wrapped by every error Run returns for a Config it
// cannot use. Invalid values are reported, never replaced by defaults.
var ErrInvalidConfig = errors.New("storm: invalid config")

// Config describes one storm. Zero values take the defaults documented on
// each field.
type Config struct {
	// Targets are gateway base URLs (http or https, no query), used
	// round-robin: attempt a of signal i goes to Targets[(i+a-1) mod len].
	// Required.
	Targets []string

	// Signals is the total number of signals. Default 100.
	Signals int
	// Concurrency is the number of signals in flight at once. Default
	// min(Signals, 100): small storms are sent all at once.
	Concurrency int
	// Rate paces the storm, in signals started per second across all
	// workers: signal i is first sent no earlier than i/Rate seconds after
	// the start, so 600 signals at 40/s last about 15s. It paces first
	// attempts only; retries keep their own backoff. Concurrency still
	// bounds the signals in flight: when the gateways answer more slowly
	// than the schedule needs, signals whose time has passed start as soon
	// as a worker is free, so the storm catches up rather than shifting
	// every later signal. Default 0: no pacing, each signal starts as soon
	// as a worker is free.
	Rate float64
	// Fingerprints is the number of distinct incidents: signal i belongs to
	// incident i mod Fingerprints. Default 1; at most Signals.
	Fingerprints int
	// Payload is the kind of signal. Default PayloadAlert.
	Payload Payload

	// Cluster must equal the gateway's cluster name: it is part of every
	// expected fingerprint. Default "local".
	Cluster string
	// Namespace is the namespace the signals name (the alert's namespace
	// label, the event's involvedObject). Default "storm".
	Namespace string
	// RunID is in every target name, so that two runs never join each
	// other's RemediationRequests. Lowercase letters, digits and '-', at
	// most 20 characters. Default NewRunID().
	RunID string

	// Token is sent as "Authorization: Bearer <Token>" when set.
	Token string
	// InsecureSkipTLSVerify accepts any server certificate, for the local
	// stack's self-signed ones. Ignored when HTTPClient is set.
	InsecureSkipTLSVerify bool
	// HTTPClient sends the signals. Default: a client with connection reuse
	// sized for Concurrency. Its Timeout should be zero: RequestTimeout
	// bounds each attempt.
	HTTPClient *http.Client
	// RequestTimeout bounds each attempt. Default DefaultRequestTimeout.
	RequestTimeout time.Duration

	// NoRetry sends each signal once. By default a signal answered 429 or
	// any 5xx, or whose attempt failed without an answer, is sent again.
	NoRetry bool
	// MaxRetries bounds the attempts after the first. Default 20.
	MaxRetries int
	// MaxRetryAfter caps the wait a Retry-After header can ask for.
	// Default 5s.
	MaxRetryAfter time.Duration
	// RetryBasePeriod and RetryMaxPeriod shape the decorrelated-jitter
	// backoff used when an answer carries no Retry-After. Defaults 100ms
	// and 2s.
	RetryBasePeriod time.Duration
	RetryMaxPeriod  time.Duration

	// Kube, when set, enables verification of the RemediationRequests in
	// RRNamespace and, unless NoAPIMetrics, API server request accounting.
	// Run applies kubeclient.Configure to it.
	Kube *rest.Config
	// RRNamespace is where the gateways write RemediationRequests.
	// Required with Kube.
	RRNamespace string
	// NoAPIMetrics skips scraping the API server's /metrics.
	NoAPIMetrics bool
	// NoIdleCorrection reports the raw request counts of the run, without
	// subtracting the background rate measured over an idle interval after
	// it.
	NoIdleCorrection bool
	// MinIdle and MaxIdle bound the idle interval, which otherwise equals
	// the run's duration. Defaults 1s and 10s.
	MinIdle time.Duration
	MaxIdle time.Duration

	// Progress receives a progress display; nil shows none. A terminal
	// (an *os.File for which golang.org/x/term.IsTerminal holds) gets one
	// line redrawn in place, anything else a line at every 10%.
	Progress io.Writer

	// Clock measures latencies and drives retry and idle timers. Default
	// clock.RealClock{}.
	Clock clock.Clock
	// Rand returns uniform values in [0, 1) for retry jitter; it must be
	// safe for concurrent use. Default math/rand/v2.Float64.
	Rand func() float64
}

var runIDPattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?$`)

// resolve fills defaults and validates, in this one place, and reports every
// problem at once.
func (c Config) resolve() (Config, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}

	if len(c.Targets) == 0 {
		bad("no targets")
	}
	targets := make([]string, 0, len(c.Targets))
	for _, t := range c.Targets {
		u, err := url.Parse(t)
		switch {
		case err != nil:
			bad("target %q: %v", t, err)
			continue
		case u.Scheme != "http" && u.Scheme != "https":
			bad("target %q: scheme must be http or https", t)
			continue
		case u.Host == "":
			bad("target %q: no host", t)
			continue
		case u.RawQuery != "" || u.Fragment != "":
			bad("target %q: query and fragment not allowed", t)
			continue
		}
		targets = append(targets, strings.TrimRight(t, "/"))
	}
	c.Targets = targets

	if c.Signals == 0 {
		c.Signals = DefaultSignals
	}
	if c.Signals < 0 {
		bad("signals %d is negative", c.Signals)
	}
	if c.Concurrency == 0 {
		c.Concurrency = min(max(c.Signals, 1), DefaultMaxConcurrency)
	}
	if c.Concurrency < 0 {
		bad("concurrency %d is negative", c.Concurrency)
	}
	// NaN fails every comparison, so it is named explicitly.
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		bad("rate %v must be finite and not negative (0: no pacing)", c.Rate)
	}
	if c.Fingerprints == 0 {
		c.Fingerprints = DefaultFingerprints
	}
	if c.Fingerprints < 0 || c.Fingerprints > c.Signals {
		bad("fingerprints %d must lie in [1, signals=%d]", c.Fingerprints, c.Signals)
	}
	switch c.Payload {
	case "":
		c.Payload = PayloadAlert
	case PayloadAlert, PayloadEvent:
	default:
		bad("payload %q must be %q or %q", c.Payload, PayloadAlert, PayloadEvent)
	}
	if c.Cluster == "" {
		c.Cluster = DefaultCluster
	}
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.RunID == "" {
		c.RunID = NewRunID()
	} else if !runIDPattern.MatchString(c.RunID) {
		bad("run id %q must be lowercase letters, digits and '-', at most 20 characters", c.RunID)
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if c.RetryBasePeriod == 0 {
		c.RetryBasePeriod = DefaultRetryBasePeriod
	}
	if c.RetryMaxPeriod == 0 {
		c.RetryMaxPeriod = DefaultRetryMaxPeriod
	}
	if c.MinIdle == 0 {
		c.MinIdle = DefaultMinIdle
	}
	if c.MaxIdle == 0 {
		c.MaxIdle = DefaultMaxIdle
	}
	for name, d := range map[string]time.Duration{
		"request timeout": c.RequestTimeout, "max retry-after": c.MaxRetryAfter,
		"retry base period": c.RetryBasePeriod, "retry max period": c.RetryMaxPeriod,
		"min idle": c.MinIdle, "max idle": c.MaxIdle,
	} {
		if d < 0 {
			bad("%s %v is negative", name, d)
		}
	}
	if c.MaxRetries < 0 {
		bad("max retries %d is negative", c.MaxRetries)
	}
	if c.RetryMaxPeriod < c.RetryBasePeriod {
		bad("retry max period %v is less than base period %v", c.RetryMaxPeriod, c.RetryBasePeriod)
	}
	if c.MaxIdle < c.MinIdle {
		bad("max idle %v is less than min idle %v", c.MaxIdle, c.MinIdle)
	}
	if c.Kube != nil && c.RRNamespace == "" {
		bad("a kube config needs the RemediationRequest namespace")
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	return c, errors.Join(errs...)
}

// NewRunID returns a short random id: 6 characters from [a-z0-9], about 31
// bits, so that consecutive runs practically never share target names.
func NewRunID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return string(b)
}
