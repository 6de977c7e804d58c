//go:build integration

package owner_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/leasehold/leasehold/internal/controlplane"
	"github.com/leasehold/leasehold/internal/kubeclient"
)

// itNS is the namespace the integration tests write their objects in.
const itNS = "owner-it"

var (
	cp    *controlplane.ControlPlane
	admin kubernetes.Interface
)

// TestMain starts one control plane for the package (the unit tests run
// too under the integration tag) and then checks, like the unit TestMain,
// that no goroutine is left: every lookup's goroutine ends with its
// request, and client connections end when the control plane stops.
func TestMain(m *testing.M) {
	code := controlplane.Run(m, controlplane.Options{Namespaces: []string{itNS}}, func(c *controlplane.ControlPlane) error {
		cp = c
		var err error
		admin, err = kubernetes.NewForConfig(c.Config)
		return err
	})
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left after all tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// getCounter counts the GET requests a client sends, on the wire.
type getCounter struct {
	mu sync.Mutex
	n  int
}

func (c *getCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		if req.Method == http.MethodGet {
			c.mu.Lock()
			c.n++
			c.mu.Unlock()
		}
		return rt.RoundTrip(req)
	})
}

func (c *getCounter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// metadataClient returns a metadata client on the control plane, as user
// (admin when empty), counting its GET requests.
func metadataClient(t testing.TB, user string) (metadata.Interface, *getCounter) {
	t.Helper()
	cfg, err := kubeclient.Configure(cp.Config, kubeclient.Options{UserAgent: "owner-integration-test"})
	if err != nil {
		t.Fatalf("configure: %v", err)
	}
	if user != "" {
		cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	}
	counter := &getCounter{}
	cfg.Wrap(counter.wrap)
	client, err := metadata.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("metadata client: %v", err)
	}
	return client, counter
}

// ctxTimeout is a test context with a deadline that ends with the test.
func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
