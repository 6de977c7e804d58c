// Package kubeclient configures every Kubernetes client the project makes.
//
// Three settings are never left to client-go's defaults:
//
//   - QPS and Burst are explicit. The default of 5 requests per second would
//     throttle a lock library into dominating every latency figure.
//   - Every request except a watch carries a deadline. A connection that is
//     accepted and then silently stalled (a black hole) would otherwise hang
//     the caller forever; a caller's own earlier deadline still wins.
//
// Watches are exempt because they are long-lived by design; their liveness is
// the concern of whoever runs them (informers re-establish them with their
// own timeouts).
//
// client-go retries a request inside one call, up to 10 times, after an
// answer of 429 or 5xx that carries Retry-After in seconds, and first waits
// as long as the header says. The transport edits that header before
// client-go sees it:
//
//   - A write answered 5xx loses it, so it reaches the caller after one
//     try: it may have been applied, and sending it again could apply it
//     twice (a create retried after it landed fails with AlreadyExists, an
//     update with Conflict, and both read as "not applied"). Only the caller
//     can find out, by reading.
//   - A write answered 429 loses it too. The write was not applied (flow
//     control and the max-in-flight filter refuse it before it reaches
//     storage), but the API server's flow control asks for 1 to 32 seconds
//     under sustained overload, and client-go would sleep that out inside
//     the call until the caller's deadline ended it. The caller would then
//     see a bare deadline instead of the 429, and a deadline leaves a
//     write's outcome open. Without the header the 429 reaches the caller
//     at once, as the proof that nothing was written, and the caller
//     chooses when to try again. The cost: the error no longer carries the
//     server's Retry-After (client-go fills RetryAfterSeconds from the
//     header when the body is not a Status, as flow control's is not), so
//     a caller that retries the write paces itself with its own backoff.
//   - A read answered 429 or 5xx (a watch included) waits at most one
//     second before client-go sends it again. A restarting API server
//     answers 503 with Retry-After: 5 until its handlers are installed, and
//     a read that waited that out would spend a 5s deadline doing nothing,
//     seconds after the server was ready. Callers bound their reads with
//     deadlines of a few seconds and retry on their own schedule.
package kubeclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"k8s.io/client-go/rest"
)

// Options tunes a client. Zero values take the documented defaults.
type Options struct {
	// QPS is the sustained request rate allowed. Default 200.
	QPS float32
	// Burst is the number of requests allowed above QPS for short spikes.
	// Default 400.
	Burst int
	// RequestTimeout bounds every non-watch request. Default 5s.
	RequestTimeout time.Duration
	// UserAgent names the component in the API server's audit log and
	// metrics. Default: client-go's.
	UserAgent string
}

const (
	DefaultQPS            = 200
	DefaultBurst          = 400
	DefaultRequestTimeout = 5 * time.Second
)

// Configure returns a copy of base with opts applied. base is not modified.
func Configure(base *rest.Config, opts Options) (*rest.Config, error) {
	if base == nil {
		return nil, errors.New("kubeclient: nil rest config")
	}
	if opts.QPS < 0 || opts.Burst < 0 || opts.RequestTimeout < 0 {
		return nil, fmt.Errorf("kubeclient: negative QPS (%v), Burst (%d) or RequestTimeout (%v)", opts.QPS, opts.Burst, opts.RequestTimeout)
	}
	if opts.QPS == 0 {
		opts.QPS = DefaultQPS
	}
	if opts.Burst == 0 {
		opts.Burst = DefaultBurst
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	cfg := rest.CopyConfig(base)
	cfg.QPS = opts.QPS
	cfg.Burst = opts.Burst
	if opts.UserAgent != "" {
		cfg.UserAgent = opts.UserAgent
	}
	timeout := opts.RequestTimeout
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return &deadlineTransport{next: rt, timeout: timeout}
	})
	return cfg, nil
}

// deadlineTransport puts a deadline on each non-watch request. The deadline
// covers reading the body too: it is released when the body is closed.
type deadlineTransport struct {
	next    http.RoundTripper
	timeout time.Duration
}

func (t *deadlineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if isWatch(req) {
		resp, err := t.next.RoundTrip(req)
		if err == nil {
			limitRetryAfter(req, resp)
		}
		return resp, err
	}
	ctx, cancel := context.WithTimeout(req.Context(), t.timeout)
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	limitRetryAfter(req, resp)
	return resp, nil
}

// maxReadRetryAfter caps the Retry-After that client-go waits out before it
// sends a read again, in seconds (the header's unit).
const maxReadRetryAfter = 1

// limitRetryAfter applies retryAfter to resp's header.
func limitRetryAfter(req *http.Request, resp *http.Response) {
	h := resp.Header.Get("Retry-After")
	if h == "" {
		return
	}
	switch v := retryAfter(isWrite(req), resp.StatusCode, h); v {
	case h:
	case "":
		resp.Header.Del("Retry-After")
	default:
		resp.Header.Set("Retry-After", v)
	}
}

// retryAfter returns the Retry-After that client-go should see for an
// answer with status code and Retry-After h to a write or a read; "" drops
// the header. client-go only honours whole seconds, on 429 and 5xx answers,
// so any other value is left as it is. See the package documentation.
func retryAfter(write bool, code int, h string) string {
	if write {
		if code == http.StatusTooManyRequests || code >= 500 {
			return ""
		}
		return h
	}
	if code != http.StatusTooManyRequests && code < 500 {
		return h
	}
	if n, err := strconv.Atoi(h); err == nil && n > maxReadRetryAfter {
		return strconv.Itoa(maxReadRetryAfter)
	}
	return h
}

// isWrite reports whether req may change state on the server.
func isWrite(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

func isWatch(req *http.Request) bool {
	w := req.URL.Query().Get("watch")
	return w == "true" || w == "1"
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// WrappedRoundTripper lets client-go's transport debugging see through us.
func (t *deadlineTransport) WrappedRoundTripper() http.RoundTripper { return t.next }
