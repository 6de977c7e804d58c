package kubeclient_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/leasehold/leasehold/internal/kubeclient"
)

// stallServer accepts requests and never answers until the test ends, like a
// black-holed API server.
func stallServer(t *testing.T) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") == "true" {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	return srv
}

func TestConfigureSetsRateLimits(t *testing.T) {
	cfg, err := kubeclient.Configure(&rest.Config{Host: "https://example.invalid"}, kubeclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.QPS != kubeclient.DefaultQPS || cfg.Burst != kubeclient.DefaultBurst {
		t.Fatalf("QPS/Burst = %v/%d, want %v/%d", cfg.QPS, cfg.Burst, kubeclient.DefaultQPS, kubeclient.DefaultBurst)
	}
	cfg, err = kubeclient.Configure(cfg, kubeclient.Options{QPS: 7, Burst: 9, UserAgent: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.QPS != 7 || cfg.Burst != 9 || cfg.UserAgent != "x" {
		t.Fatalf("got QPS %v Burst %d UserAgent %q", cfg.QPS, cfg.Burst, cfg.UserAgent)
	}
}

func TestConfigureRejectsNegative(t *testing.T) {
	for _, o := range []kubeclient.Options{{QPS: -1}, {Burst: -1}, {RequestTimeout: -time.Second}} {
		if _, err := kubeclient.Configure(&rest.Config{}, o); err == nil {
			t.Errorf("Configure(%+v) = nil error", o)
		}
	}
	if _, err := kubeclient.Configure(nil, kubeclient.Options{}); err == nil {
		t.Error("Configure(nil) = nil error")
	}
}

func TestStalledRequestHitsDeadline(t *testing.T) {
	srv := stallServer(t)
	cfg, err := kubeclient.Configure(&rest.Config{Host: srv.URL}, kubeclient.Options{RequestTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The caller passes no deadline of its own: the transport must supply one.
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+"/api/v1/namespaces", nil)
	_, err = hc.Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stalled GET: err = %v, want context.DeadlineExceeded", err)
	}
}

func TestWatchIsNotCut(t *testing.T) {
	srv := stallServer(t)
	cfg, err := kubeclient.Configure(&rest.Config{Host: srv.URL}, kubeclient.Options{RequestTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/namespaces?watch=true", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer resp.Body.Close()
	// A read outlives the request timeout several times over and ends only
	// because the test cancels it: proof that no deadline was attached.
	done := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(make([]byte, 1))
		done <- err
	}()
	timer := time.NewTimer(200 * time.Millisecond)
	defer timer.Stop()
	select {
	case err := <-done:
		t.Fatalf("watch body read ended early: %v", err)
	case <-timer.C:
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("watch read after cancel returned nil error")
	}
}

// A write answered 500 with Retry-After reaches the caller after one try:
// it may have been applied, and only the caller can find out. A read
// answered the same way is retried by client-go as usual.
func TestWriteWithServerErrorIsNotRetried(t *testing.T) {
	var puts, gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			puts.Add(1)
		} else {
			if gets.Add(1) > 1 {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c","namespace":"ns"}}`))
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"ServerTimeout","code":500}`))
	}))
	defer srv.Close()
	cfg, err := kubeclient.Configure(&rest.Config{Host: srv.URL}, kubeclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "ns", ResourceVersion: "1"}}
	if _, err := cs.CoreV1().ConfigMaps("ns").Update(context.Background(), cm, metav1.UpdateOptions{}); !apierrors.IsServerTimeout(err) {
		t.Fatalf("update: err = %v, want the ServerTimeout", err)
	}
	if n := puts.Load(); n != 1 {
		t.Fatalf("the write was sent %d times, want 1", n)
	}
	if _, err := cs.CoreV1().ConfigMaps("ns").Get(context.Background(), "c", metav1.GetOptions{}); err != nil {
		t.Fatalf("get: %v", err)
	}
	if n := gets.Load(); n != 2 {
		t.Fatalf("the read was sent %d times, want 2 (one retry)", n)
	}
}

// A read answered 503 with Retry-After: 5, as a restarting API server
// answers before its handlers are installed, is sent again after at most
// one second: within a read deadline shorter than the five seconds asked
// for, it gets the answer the server gives once it is ready.
func TestReadRetryAfterIsCapped(t *testing.T) {
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if gets.Add(1) == 1 {
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"ServiceUnavailable","code":503,` +
				`"details":{"retryAfterSeconds":5}}`))
			return
		}
		_, _ = w.Write([]byte(`{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c","namespace":"ns"}}`))
	}))
	defer srv.Close()
	cfg, err := kubeclient.Configure(&rest.Config{Host: srv.URL}, kubeclient.Options{})
	if err != nil {
		t.Fatal(err)
	}

	// What client-go's retry sees: the header, capped.
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+"/api/v1/namespaces/ns/configmaps/c", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Retry-After"); resp.StatusCode != http.StatusServiceUnavailable || got != "1" {
		t.Fatalf("answer %d with Retry-After %q, want 503 with 1", resp.StatusCode, got)
	}

	// Through client-go: the retry comes within a 3s deadline.
	gets.Store(0)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := cs.CoreV1().ConfigMaps("ns").Get(ctx, "c", metav1.GetOptions{}); err != nil {
		t.Fatalf("get: %v", err)
	}
	if n := gets.Load(); n != 2 {
		t.Fatalf("the read was sent %d times, want 2 (one retry)", n)
	}
}

// A write refused with 429 reaches the caller after one try, as the 429,
// however long a Retry-After the server's flow control asked for. It was
// not applied; had client-go slept the header out, the caller's deadline
// would have ended the call and the caller would see a bare deadline,
// which cannot tell an applied write from a refused one.
func TestWriteRefusedWithTooManyRequestsIsNotRetried(t *testing.T) {
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Retry-After", "32")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte("Too many requests, please try again later.\n"))
	}))
	defer srv.Close()
	cfg, err := kubeclient.Configure(&rest.Config{Host: srv.URL}, kubeclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = cs.CoreV1().ConfigMaps("ns").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c"}}, metav1.CreateOptions{})
	if !apierrors.IsTooManyRequests(err) {
		t.Fatalf("create: err = %v, want the 429", err)
	}
	if n := posts.Load(); n != 1 {
		t.Fatalf("the write was sent %d times, want 1", n)
	}
}

// A watch answered 503 or 429 with a long Retry-After is capped like any
// other read: client-go sees at most one second, so a watch to a
// restarting API server is re-established soon after the server is ready.
func TestWatchRetryAfterIsCapped(t *testing.T) {
	for _, code := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(code)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","code":` + strconv.Itoa(code) + `}`))
		}))
		cfg, err := kubeclient.Configure(&rest.Config{Host: srv.URL}, kubeclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		hc, err := rest.HTTPClientFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+"/api/v1/namespaces/ns/configmaps?watch=true", nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		srv.Close()
		if got := resp.Header.Get("Retry-After"); resp.StatusCode != code || got != "1" {
			t.Errorf("watch answered %d with Retry-After %q, want %d with 1", resp.StatusCode, got, code)
		}
	}
}
