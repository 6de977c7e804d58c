package storm

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/leasehold/leasehold/backoff"
)

// Outcome keys that are not HTTP status codes.
const (
	// OutcomeError: the last attempt got no HTTP answer (connection refused
	// or reset, timeout).
	OutcomeError = "error"
	// OutcomeCanceled: the run's context ended before the signal had a
	// final answer.
	OutcomeCanceled = "canceled"
)

// Retry causes, the keys of Report.RetriesByCause: the status code of a
// retried answer ("503", "504", "429"), or CauseConnection.
const (
	CauseUnavailable = "503"
	CauseTooMany     = "429"
	CauseConnection  = "connection"
)

// SignalResult is what happened to one signal.
type SignalResult struct {
	// Index is the signal's number, 0-based.
	Index int `json:"index"`
	// Incident is Index mod Fingerprints.
	Incident int `json:"incident"`
	// Code is the HTTP status of the final answer; 0 when there was none.
	Code int `json:"code"`
	// Outcome is Code in decimal, or OutcomeError or OutcomeCanceled.
	Outcome string `json:"outcome"`
	// Error describes the last failure when Code is not 2xx.
	Error string `json:"error,omitempty"`
	// Attempts is the number of times the signal was sent.
	Attempts int `json:"attempts"`
	// Latency is from the first send to the final answer, waits included.
	Latency time.Duration `json:"-"`
	// LatencyMs is Latency in milliseconds.
	LatencyMs float64 `json:"latencyMs"`
	// Target is the base URL the final attempt went to.
	Target string `json:"target"`
	// RemediationRequest is the name the answer gave, if it could be read.
	RemediationRequest string `json:"remediationRequest,omitempty"`
	// Fingerprint is the one the answer gave, if it could be read.
	Fingerprint string `json:"fingerprint,omitempty"`

	// retries counts the retries of this signal by cause.
	retries map[string]int
}

// Acknowledged reports whether the gateway answered 2xx.
func (r SignalResult) Acknowledged() bool { return r.Code >= 200 && r.Code < 300 }

// Counted reports whether the answer says the signal was counted into a
// RemediationRequest: 201 (created), 202 (duplicate) or 207 (a multi-alert
// webhook; a storm sends one alert per webhook, so 207 should not occur).
// 200 means the gateway ignored the signal.
func (r SignalResult) Counted() bool {
	return r.Code == http.StatusCreated || r.Code == http.StatusAccepted || r.Code == http.StatusMultiStatus
}

// sender sends signals of one run.
type sender struct {
	cfg    Config
	client *http.Client
	policy backoff.Policy
	path   string
}

func newSender(c Config) (*sender, error) {
	policy, err := backoff.NewDecorrelated(backoff.Config{
		BasePeriod: c.RetryBasePeriod,
		MaxPeriod:  c.RetryMaxPeriod,
		Rand:       c.Rand,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: retry backoff: %w", ErrInvalidConfig, err)
	}
	client := c.HTTPClient
	if client == nil {
		client = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConns:        c.Concurrency * len(c.Targets),
			MaxIdleConnsPerHost: c.Concurrency,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
			ForceAttemptHTTP2:   true,
			// #nosec G402 -- opt-in, for the local stack's self-signed certificates.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: c.InsecureSkipTLSVerify},
		}}
	}
	path := AlertmanagerPath
	if c.Payload == PayloadEvent {
		path = KubernetesEventPath
	}
	return &sender{cfg: c, client: client, policy: policy, path: path}, nil
}

// close releases idle connections of a client the sender made itself.
func (s *sender) close() {
	if s.cfg.HTTPClient == nil {
		s.client.CloseIdleConnections()
	}
}

// retryableError is an attempt that may succeed if repeated.
type retryableError struct {
	cause string
	err   error
}

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

// answer is the outcome of one attempt that got an HTTP response.
type answer struct {
	code        int
	name        string
	fingerprint string
}

// send delivers signal i (belonging to inc) and returns its result. It
// never returns early without a result: every signal is accounted for.
func (s *sender) send(ctx context.Context, i int, inc *incident) SignalResult {
	res := SignalResult{Index: i, Incident: inc.index}
	maxAttempts := 1
	if !s.cfg.NoRetry {
		maxAttempts += s.cfg.MaxRetries
	}
	// lastCode is the status of the latest attempt, 0 if it got no answer.
	lastCode := 0
	start := s.cfg.Clock.Now()
	ans, err := backoff.Retry(ctx, func(ctx context.Context) (answer, error) {
		target := s.cfg.Targets[(i+res.Attempts)%len(s.cfg.Targets)]
		res.Attempts++
		res.Target = target
		a, err := s.attempt(ctx, target, inc.body)
		lastCode = a.code
		return a, err
	},
		backoff.WithPolicy(s.policy),
		backoff.WithMaxAttempts(maxAttempts),
		backoff.WithClock(s.cfg.Clock),
		backoff.WithNotify(func(err error, _ int, _ time.Duration) {
			if re, ok := errors.AsType[*retryableError](err); ok {
				if res.retries == nil {
					res.retries = make(map[string]int)
				}
				res.retries[re.cause]++
			}
		}),
	)
	res.Latency = s.cfg.Clock.Since(start)
	res.LatencyMs = float64(res.Latency) / float64(time.Millisecond)
	switch {
	case err == nil:
		res.Code, res.RemediationRequest, res.Fingerprint = ans.code, ans.name, ans.fingerprint
		res.Outcome = strconv.Itoa(res.Code)
	case ctx.Err() != nil:
		// The run ended while the signal waited or was in flight; Code
		// keeps the last answer, if any, for the record.
		res.Code = lastCode
		res.Outcome = OutcomeCanceled
		res.Error = err.Error()
	case lastCode != 0:
		// Out of attempts, or a final answer that is not worth repeating.
		res.Code = lastCode
		res.Outcome = strconv.Itoa(res.Code)
		res.Error = err.Error()
	default:
		res.Outcome = OutcomeError
		res.Error = err.Error()
	}
	return res
}

// attempt sends body once. A 2xx answer is success; 429 and every 5xx are
// retryable, as Alertmanager retries them (with the server's Retry-After as
// the wait, capped, when it gives one), as is a failure without an answer;
// any other answer is final.
func (s *sender) attempt(ctx context.Context, target string, body []byte) (answer, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target+s.path, bytes.NewReader(body))
	if err != nil {
		return answer{}, backoff.Permanent(fmt.Errorf("request to %s: %w", target, err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "leasehold-storm")
	if s.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		// The request may have been counted before the connection broke;
		// the report's bounds allow for that.
		return answer{}, &retryableError{cause: CauseConnection, err: fmt.Errorf("post %s: %w", target, err)}
	}
	defer resp.Body.Close()
	// Enough for any answer the gateway gives; the rest is drained so the
	// connection can be reused.
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_, _ = io.Copy(io.Discard, resp.Body)

	a := answer{code: resp.StatusCode}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		a.name, a.fingerprint = readAnswer(data)
		return a, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		cause := strconv.Itoa(resp.StatusCode)
		err := &retryableError{cause: cause, err: fmt.Errorf("%s answered %d: %s", target, resp.StatusCode, snippet(data))}
		if wait, ok := retryAfter(resp.Header.Get("Retry-After"), s.cfg.Clock.Now()); ok {
			return a, backoff.RetryAfter(min(wait, s.cfg.MaxRetryAfter), err)
		}
		return a, err
	default:
		return a, backoff.Permanent(fmt.Errorf("%s answered %d: %s", target, resp.StatusCode, snippet(data)))
	}
}

// retryAfter parses a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		// Larger values are capped by the caller; this keeps the
		// multiplication from overflowing.
		return time.Duration(min(n, 1<<20)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// readAnswer picks the RemediationRequest's name and the fingerprint out of
// a 2xx answer without depending on its exact shape: the name is a
// top-level "remediationRequest", "name" or "rr" string, or the name of such
// an object; the fingerprint a top-level "fingerprint" string. Either is
// empty when absent.
func readAnswer(data []byte) (name, fingerprint string) {
	var body map[string]json.RawMessage
	if json.Unmarshal(data, &body) != nil {
		return "", ""
	}
	if raw, ok := body["fingerprint"]; ok {
		_ = json.Unmarshal(raw, &fingerprint)
	}
	for _, key := range []string{"remediationRequest", "name", "rr"} {
		raw, ok := body[key]
		if !ok {
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) == nil && s != "" {
			return s, fingerprint
		}
		var obj struct {
			Name     string `json:"name"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if json.Unmarshal(raw, &obj) == nil {
			if obj.Name != "" {
				return obj.Name, fingerprint
			}
			if obj.Metadata.Name != "" {
				return obj.Metadata.Name, fingerprint
			}
		}
	}
	return "", fingerprint
}

// snippet shortens a response body for an error message.
func snippet(data []byte) string {
	s := strings.TrimSpace(string(data))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}
