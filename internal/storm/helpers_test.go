package storm

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// reply is what a fake gateway answers to one request.
type reply struct {
	code       int
	retryAfter string
	body       string
}

// fakeGateway imitates the gateway's HTTP contract. respond decides each
// answer from the request's 1-based number at this server; the default is
// 201 with a body that names an RR.
type fakeGateway struct {
	srv     *httptest.Server
	respond func(n int, r *http.Request, body []byte) reply

	mu       sync.Mutex
	n        int
	bodies   [][]byte
	paths    []string
	auth     []string
	ctypes   []string
	answered []int
}

func newFakeGateway(t testing.TB, respond func(n int, r *http.Request, body []byte) reply) *fakeGateway {
	t.Helper()
	g := &fakeGateway{respond: respond}
	if g.respond == nil {
		g.respond = func(int, *http.Request, []byte) reply {
			return reply{code: http.StatusCreated, body: `{"name":"rr-1"}`}
		}
	}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *fakeGateway) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	g.mu.Lock()
	g.n++
	n := g.n
	g.bodies = append(g.bodies, body)
	g.paths = append(g.paths, r.URL.Path)
	g.auth = append(g.auth, r.Header.Get("Authorization"))
	g.ctypes = append(g.ctypes, r.Header.Get("Content-Type"))
	g.mu.Unlock()

	rep := g.respond(n, r, body)
	if rep.retryAfter != "" {
		w.Header().Set("Retry-After", rep.retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.code)
	_, _ = io.WriteString(w, rep.body)

	g.mu.Lock()
	g.answered = append(g.answered, rep.code)
	g.mu.Unlock()
}

func (g *fakeGateway) requests() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

func (g *fakeGateway) URL() string { return g.srv.URL }

// deployments returns, per alert, the deployment label of each webhook the
// gateway received.
func (g *fakeGateway) deployments(t testing.TB) []string {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, b := range g.bodies {
		var msg webhookMessage
		if err := json.Unmarshal(b, &msg); err != nil {
			t.Fatalf("webhook body %q: %v", b, err)
		}
		if len(msg.Alerts) != 1 {
			t.Fatalf("webhook has %d alerts, want 1", len(msg.Alerts))
		}
		out = append(out, msg.Alerts[0].Labels["deployment"])
	}
	return out
}

// waitFor polls cond until it holds or d passes. It waits for a state
// another goroutine reaches (a timer registered); it never stands in for a
// timing assertion.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// runResult is Run's answer, for a Run started in a goroutine.
type runResult struct {
	rep *Report
	err error
}

func runAsync(ctx context.Context, cfg Config) <-chan runResult {
	ch := make(chan runResult, 1)
	go func() {
		rep, err := Run(ctx, cfg)
		ch <- runResult{rep, err}
	}()
	return ch
}
