package dedup

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/kubeclient"
	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/lease/leasetest"
)

// throttle429 is what the API server's flow control answers a request it
// does not admit: 429, Retry-After, and a plain text body.
func throttle429(w http.ResponseWriter, retryAfter string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Retry-After", retryAfter)
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write([]byte("Too many requests, please try again later.\n"))
}

// A write refused with 429 through a client built with internal/kubeclient
// reaches the caller at once as the 429, whatever Retry-After the server
// asked for, and is taken as not applied. client-go would otherwise sleep
// out the header inside the call and the caller would see only its own
// deadline, which leaves the write's outcome open.
func TestWriteRefusedWith429IsDefinite(t *testing.T) {
	for _, retryAfter := range []string{"32", "1"} {
		t.Run(retryAfter, func(t *testing.T) {
			var posts atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				posts.Add(1)
				throttle429(w, retryAfter)
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
			// Shorter than what client-go would wait in both cases (32s, or
			// ten tries a second apart), so that without the rewrite the
			// deadline ends the call.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err = cs.CoreV1().ConfigMaps("ns").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c"}}, metav1.CreateOptions{})
			if !apierrors.IsTooManyRequests(err) {
				t.Fatalf("err = %v, want the 429", err)
			}
			if ambiguous(err) {
				t.Errorf("a write refused with 429 is ambiguous: %v", err)
			}
			if n := posts.Load(); n != 1 {
				t.Errorf("the write was sent %d times, want 1", n)
			}
		})
	}
}

// An API server under flow-control overload lists, but refuses every
// create and read with 429, Retry-After: 1. Nothing is written, so the
// caller learns at once that its signal was not counted (ErrUnavailable,
// which the gateway answers 503 with Retry-After), without a read back.
// The Recorder runs on a fake clock stepped while Record waits, so that a
// regression (the 429 hidden behind the write's deadline, then read back
// for the whole budget) fails in about a second, not after 43.
func TestCreateRefusedWith429IsNotCounted(t *testing.T) {
	var posts, gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/remediationrequests"):
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"kind":"RemediationRequestList","apiVersion":"leasehold.dev/v1alpha1","metadata":{},"items":[]}`))
			return
		case r.Method == http.MethodPost:
			posts.Add(1)
		default:
			gets.Add(1)
		}
		throttle429(w, "1")
	}))
	defer srv.Close()
	cfg, err := kubeclient.Configure(&rest.Config{Host: srv.URL}, kubeclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	gv := v1alpha1.GroupVersion
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(gv.WithKind("RemediationRequest"), meta.RESTScopeNamespace)
	mapper.Add(gv.WithKind("RemediationRequestList"), meta.RESTScopeNamespace)
	c, err := client.New(cfg, client.Options{Scheme: scheme, Mapper: mapper})
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC))
	rec, err := New(c, leasetest.New(t, lease.Options{}), Options{Namespace: testNS, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rec.Close(context.Background()) }()

	type out struct {
		err error
		at  time.Time
	}
	done := make(chan out, 1)
	start := clk.Now()
	go func() {
		_, err := rec.Record(context.Background(), incident("A"))
		done <- out{err, clk.Now()}
	}()
	var o out
	waitFor(t, func() bool {
		select {
		case o = <-done:
			return true
		default:
			if clk.HasWaiters() {
				clk.Step(100 * time.Millisecond)
			}
			return false
		}
	})
	if errors.Is(o.err, ErrUnknownOutcome) || !errors.Is(o.err, ErrUnavailable) || !apierrors.IsTooManyRequests(o.err) {
		t.Fatalf("err = %v after %v on the Recorder's clock, want ErrUnavailable carrying the 429", o.err, o.at.Sub(start))
	}
	if p, g := posts.Load(), gets.Load(); p != 1 || g != 0 {
		t.Errorf("%d creates and %d reads back, want 1 and 0", p, g)
	}
}
