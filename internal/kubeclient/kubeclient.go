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
package kubeclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
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
		return t.next.RoundTrip(req)
	}
	ctx, cancel := context.WithTimeout(req.Context(), t.timeout)
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	if resp.StatusCode >= 500 && isWrite(req) {
		resp.Header.Del("Retry-After")
	}
	return resp, nil
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
