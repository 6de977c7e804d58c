package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	authenticationv1 "k8s.io/api/authentication/v1"
)

func TestUnauthenticated(t *testing.T) {
	e := newEnv(t, nil)
	body := webhook(t, firing("X", "shop", "pod", "a"))
	for _, tc := range []struct {
		name, header, wantChallenge string
	}{
		{"no header", "", `Bearer realm="leasehold-gateway"`},
		{"basic", "Basic dXNlcjpwYXNz", `Bearer realm="leasehold-gateway"`},
		{"empty token", "Bearer ", `Bearer realm="leasehold-gateway"`},
		{"bad token", "Bearer nope", `Bearer realm="leasehold-gateway", error="invalid_token"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			headers := map[string]string{"Content-Type": "application/json"}
			if tc.header != "" {
				headers["Authorization"] = tc.header
			}
			rec := e.do(t, http.MethodPost, PathAlertmanager, body, headers)
			decodeProblem(t, rec, http.StatusUnauthorized, ProblemUnauthenticated)
			if got := rec.Header().Get("WWW-Authenticate"); got != tc.wantChallenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tc.wantChallenge)
			}
		})
	}
	// The scheme is case-insensitive.
	rec := e.do(t, http.MethodPost, PathAlertmanager, body, map[string]string{"Content-Type": "application/json", "Authorization": "bearer " + goodToken})
	if rec.Code != http.StatusCreated {
		t.Errorf("lower-case scheme: status %d, want 201", rec.Code)
	}
	if n := len(e.dedup.recorded()); n != 1 {
		t.Errorf("recorded %d incidents, want 1 (only the authenticated one)", n)
	}
}

// With access reviews on, an authenticated user also needs create on
// remediationrequests.leasehold.dev in the gateway's namespace.
func TestAccessReview(t *testing.T) {
	access := &fakeAccess{allowed: map[string]bool{"alertmanager": true}}
	e := newEnv(t, func(c *Config) {
		c.AccessReview = true
		c.AccessReviewer = access
	})
	e.tokens.tokens["intruder-token"] = authenticationv1.UserInfo{Username: "intruder"}
	body := webhook(t, firing("X", "shop", "pod", "a"))

	if rec := e.post(t, PathAlertmanager, body); rec.Code != http.StatusCreated {
		t.Fatalf("allowed user: status %d, want 201; body %s", rec.Code, rec.Body)
	}
	access.mu.Lock()
	spec := access.last
	access.mu.Unlock()
	ra := spec.ResourceAttributes
	if spec.User != "alertmanager" || spec.UID != "uid-1" || len(spec.Groups) != 1 || spec.Groups[0] != "monitoring" ||
		ra == nil || ra.Verb != "create" || ra.Group != "leasehold.dev" || ra.Resource != "remediationrequests" || ra.Namespace != "leasehold-system" {
		t.Errorf("access review spec %+v (resource %+v), want create remediationrequests.leasehold.dev in leasehold-system for alertmanager", spec, ra)
	}

	rec := e.do(t, http.MethodPost, PathAlertmanager, body, map[string]string{"Content-Type": "application/json", "Authorization": "Bearer intruder-token"})
	p := decodeProblem(t, rec, http.StatusForbidden, ProblemForbidden)
	if !strings.Contains(p.Detail, `"intruder"`) || !strings.Contains(p.Detail, "remediationrequests.leasehold.dev") {
		t.Errorf("detail %q, want the user and the resource", p.Detail)
	}
	if n := len(e.dedup.recorded()); n != 1 {
		t.Errorf("recorded %d incidents, want 1", n)
	}
	if err := (Config{Dedup: e.dedup, Cluster: testCluster, TokenReviewer: e.tokens, AccessReview: true}).withDefaults().validate(); err == nil {
		t.Error("AccessReview without AccessReviewer and Namespace validated")
	}
}

// The API server failing a review is a 503 with Retry-After, and the
// failure is not cached.
func TestAuthUnavailable(t *testing.T) {
	e := newEnv(t, nil)
	e.tokens.err = errors.New("connection refused")
	body := webhook(t, firing("X", "shop", "pod", "a"))
	rec := e.post(t, PathAlertmanager, body)
	decodeProblem(t, rec, http.StatusServiceUnavailable, ProblemAuthUnavailable)
	if rec.Header().Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	e.tokens.err = nil
	if rec := e.post(t, PathAlertmanager, body); rec.Code != http.StatusCreated {
		t.Errorf("after recovery: status %d, want 201", rec.Code)
	}
	if n := e.tokens.calls.Load(); n != 2 {
		t.Errorf("TokenReview calls = %d, want 2 (an error is not cached)", n)
	}
}

// Decisions are cached under the token's hash: allowed ones for
// AuthCacheTTL, rejected ones for AuthCacheNegativeTTL, on the injected
// clock.
func TestTokenCache(t *testing.T) {
	e := newEnv(t, nil)
	body := webhook(t, firing("X", "shop", "pod", "a"))
	bad := map[string]string{"Content-Type": "application/json", "Authorization": "Bearer nope"}
	calls := func() int32 { return e.tokens.calls.Load() }

	for range 3 {
		if rec := e.post(t, PathAlertmanager, body); rec.Code >= 300 {
			t.Fatalf("status %d", rec.Code)
		}
	}
	if calls() != 1 {
		t.Fatalf("TokenReview calls after 3 requests = %d, want 1", calls())
	}
	e.clock.Step(DefaultAuthCacheTTL - time.Nanosecond)
	e.post(t, PathAlertmanager, body)
	if calls() != 1 {
		t.Fatalf("calls just before the positive TTL = %d, want 1", calls())
	}
	e.clock.Step(time.Nanosecond)
	e.post(t, PathAlertmanager, body)
	if calls() != 2 {
		t.Fatalf("calls at the positive TTL = %d, want 2", calls())
	}

	for range 3 {
		decodeProblem(t, e.do(t, http.MethodPost, PathAlertmanager, body, bad), http.StatusUnauthorized, ProblemUnauthenticated)
	}
	if calls() != 3 {
		t.Fatalf("calls after 3 bad requests = %d, want 3", calls())
	}
	e.clock.Step(DefaultAuthCacheNegativeTTL - time.Nanosecond)
	e.do(t, http.MethodPost, PathAlertmanager, body, bad)
	if calls() != 3 {
		t.Fatalf("calls just before the negative TTL = %d, want 3", calls())
	}
	e.clock.Step(time.Nanosecond)
	e.do(t, http.MethodPost, PathAlertmanager, body, bad)
	if calls() != 4 {
		t.Fatalf("calls at the negative TTL = %d, want 4", calls())
	}

	// The cache holds hashes, never tokens.
	e.srv.auth.mu.Lock()
	for el := e.srv.auth.order.Front(); el != nil; el = el.Next() {
		if strings.Contains(fmt.Sprintf("%+v", el.Value), goodToken) {
			t.Errorf("cache entry %+v holds the token", el.Value)
		}
	}
	e.srv.auth.mu.Unlock()
	if got := counterValue(t, e.reg, MetricAuthReviews, map[string]string{"review": "token", "result": "allowed"}); got != 2 {
		t.Errorf("token reviews allowed = %v, want 2", got)
	}
}

// The cache is bounded: past AuthCacheSize the oldest entry goes.
func TestTokenCacheBounded(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AuthCacheSize = 2 })
	body := webhook(t, firing("X", "shop", "pod", "a"))
	send := func(token string) {
		t.Helper()
		rec := e.do(t, http.MethodPost, PathAlertmanager, body, map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + token})
		if rec.Code >= 300 {
			t.Fatalf("token %s: status %d", token, rec.Code)
		}
	}
	for _, tok := range []string{"t1", "t2", "t3"} {
		e.tokens.tokens[tok] = authenticationv1.UserInfo{Username: tok}
		send(tok)
	}
	if n := e.tokens.calls.Load(); n != 3 {
		t.Fatalf("calls = %d, want 3", n)
	}
	e.srv.auth.mu.Lock()
	size := len(e.srv.auth.entries)
	e.srv.auth.mu.Unlock()
	if size != 2 {
		t.Errorf("cache holds %d entries, want 2", size)
	}
	send("t3") // newest: cached
	send("t2") // cached
	if n := e.tokens.calls.Load(); n != 3 {
		t.Errorf("calls = %d after t2 and t3 again, want 3", n)
	}
	send("t1") // evicted first
	if n := e.tokens.calls.Load(); n != 4 {
		t.Errorf("calls = %d after t1 again, want 4", n)
	}
}

// Concurrent requests with one uncached token share one TokenReview.
func TestTokenReviewShared(t *testing.T) {
	const n = 8
	e := newEnv(t, nil)
	e.tokens.gate = make(chan struct{})
	body := webhook(t, firing("X", "shop", "pod", "a"))
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() { codes[i] = e.post(t, PathAlertmanager, body).Code })
	}
	waitFor(t, "every request to wait for the review", func() bool {
		return counterValue(t, e.reg, MetricAuthCacheLookups, map[string]string{"result": "miss"}) == n
	})
	close(e.tokens.gate)
	wg.Wait()
	if c := e.tokens.calls.Load(); c != 1 {
		t.Errorf("TokenReview calls = %d, want 1", c)
	}
	for i, c := range codes {
		if c != http.StatusCreated && c != http.StatusAccepted {
			t.Errorf("request %d: status %d", i, c)
		}
	}
}

// A request whose deadline passes while it waits for a review is a 503
// with Retry-After: nothing was counted, so the sender may send it again.
// The review itself goes on for the others.
func TestAuthDeadline(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RequestTimeout = 20 * time.Millisecond })
	// The review outlives the request (it is shared), so that the only
	// deadline that can pass is the request's.
	e.srv.auth.timeout = time.Hour
	e.tokens.gate = make(chan struct{})
	defer close(e.tokens.gate)
	rec := e.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "a")))
	if got := rec.Header().Get("Retry-After"); got == "" {
		t.Error("no Retry-After on the 503")
	}
	decodeProblem(t, rec, http.StatusServiceUnavailable, ProblemDeadline)
	e.dedup.mu.Lock()
	defer e.dedup.mu.Unlock()
	if n := len(e.dedup.incidents); n != 0 {
		t.Errorf("incidents recorded = %d, want 0", n)
	}
}

func TestInsecureNoAuthWarns(t *testing.T) {
	var sink logSink
	e := newEnv(t, func(c *Config) {
		c.InsecureNoAuth = true
		c.TokenReviewer = nil
		c.Logger = funcr.New(sink.write, funcr.Options{})
	})
	if lines := sink.find("authentication is OFF"); len(lines) != 1 {
		t.Errorf("warning lines = %q, want one", sink.lines)
	}
	rec := e.do(t, http.MethodPost, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "a")), map[string]string{"Content-Type": "application/json"})
	if rec.Code != http.StatusCreated {
		t.Errorf("no token, auth off: status %d, want 201", rec.Code)
	}
	if e.tokens.calls.Load() != 0 {
		t.Error("TokenReview called with auth off")
	}
	if got := e.srv.AuthMode(); got != "none (insecure)" {
		t.Errorf("AuthMode = %q", got)
	}

	var quiet logSink
	newEnv(t, func(c *Config) { c.Logger = funcr.New(quiet.write, funcr.Options{}) })
	if lines := quiet.find("authentication is OFF"); len(lines) != 0 {
		t.Errorf("warning logged with auth on: %q", lines)
	}
}

func TestBearerToken(t *testing.T) {
	for header, want := range map[string]string{
		"Bearer abc":     "abc",
		"bearer abc":     "abc",
		"BEARER  abc ":   "abc",
		"Bearer":         "",
		"Bearer ":        "",
		"Basic abc":      "",
		"":               "",
		"Bearerabc":      "",
		"Token abc":      "",
		"Bearer a.b.c-d": "a.b.c-d",
	} {
		r, _ := http.NewRequest(http.MethodPost, "/", nil)
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		got, ok := bearerToken(r)
		if got != want || ok != (want != "") {
			t.Errorf("bearerToken(%q) = %q, %v; want %q", header, got, ok, want)
		}
	}
}
