package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

	// The caches hold hashes, never tokens.
	e.srv.auth.mu.Lock()
	for _, c := range []*tokenCache{e.srv.auth.accepted, e.srv.auth.rejected} {
		for el := c.order.Front(); el != nil; el = el.Next() {
			if strings.Contains(fmt.Sprintf("%+v", el.Value), goodToken) {
				t.Errorf("cache entry %+v holds the token", el.Value)
			}
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
	size := e.srv.auth.accepted.len()
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

// reviewRecorder is a TokenReviewer in front of fakeTokens: it counts the
// reviews in flight, holds those of tokens for which hold says so until
// release is closed, and can replace the audiences of every answer.
type reviewRecorder struct {
	next      *fakeTokens
	hold      func(token string) bool
	release   chan struct{}
	audiences *[]string // nil: keep the answer's
	mu        sync.Mutex
	inFlight  int
	maxFlight int
	specs     []authenticationv1.TokenReviewSpec
}

func (r *reviewRecorder) Create(ctx context.Context, tr *authenticationv1.TokenReview, opts metav1.CreateOptions) (*authenticationv1.TokenReview, error) {
	r.mu.Lock()
	r.inFlight++
	r.maxFlight = max(r.maxFlight, r.inFlight)
	r.specs = append(r.specs, tr.Spec)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inFlight--
		r.mu.Unlock()
	}()
	if r.hold != nil && r.hold(tr.Spec.Token) {
		select {
		case <-r.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	out, err := r.next.Create(ctx, tr, opts)
	if err == nil && r.audiences != nil {
		out.Status.Audiences = *r.audiences
	}
	return out, err
}

func (r *reviewRecorder) flight() (now, peak int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inFlight, r.maxFlight
}

func withToken(token string) map[string]string {
	return map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + token}
}

// A flood of distinct unknown tokens costs at most MaxTokenReviews reviews
// at a time; every other request is answered 503 with Retry-After at once,
// while those reviews are still held, so nothing queues.
func TestTokenReviewsBounded(t *testing.T) {
	const n, bound = 300, 4
	rec := &reviewRecorder{hold: func(string) bool { return true }, release: make(chan struct{})}
	e := newEnv(t, func(c *Config) {
		c.MaxTokenReviews = bound
		c.TokenReviewer = rec
	})
	rec.next = e.tokens
	body := webhook(t, firing("X", "shop", "pod", "a"))

	var wg sync.WaitGroup
	var answered atomic.Int32
	recs := make([]*httptest.ResponseRecorder, n)
	for i := range n {
		wg.Go(func() {
			recs[i] = e.do(t, http.MethodPost, PathAlertmanager, body, withToken(fmt.Sprintf("junk-%d", i)))
			answered.Add(1)
		})
	}
	// Every request but those under review is answered while the reviews
	// are held: refused without waiting for a slot.
	waitFor(t, "the requests without a review slot to be answered", func() bool { return answered.Load() == n-bound })
	if now, peak := rec.flight(); now != bound || peak != bound {
		t.Errorf("reviews in flight %d (peak %d), want %d", now, peak, bound)
	}
	close(rec.release)
	wg.Wait()

	var busy, unauth int
	for i, r := range recs {
		switch r.Code {
		case http.StatusServiceUnavailable:
			busy++
			decodeProblem(t, r, http.StatusServiceUnavailable, ProblemAuthBusy)
			if r.Header().Get("Retry-After") == "" {
				t.Errorf("request %d: 503 without Retry-After", i)
			}
		case http.StatusUnauthorized:
			unauth++
		default:
			t.Errorf("request %d: status %d, want 503 or 401", i, r.Code)
		}
	}
	if busy != n-bound || unauth != bound {
		t.Errorf("answers: %d busy, %d unauthenticated; want %d and %d", busy, unauth, n-bound, bound)
	}
	if got := e.tokens.calls.Load(); got != bound {
		t.Errorf("TokenReviews = %d, want %d", got, bound)
	}
	if got := counterValue(t, e.reg, MetricAuthRefused, map[string]string{"reason": "capacity"}); got != n-bound {
		t.Errorf("refused for capacity = %v, want %d", got, n-bound)
	}
	if n := len(e.dedup.recorded()); n != 0 {
		t.Errorf("recorded %d incidents, want 0", n)
	}
}

// A token accepted before whose entry expired is reviewed again from a
// pool of its own: unknown tokens holding every other slot do not lock a
// known sender out.
func TestKnownTokenReviewedDuringFlood(t *testing.T) {
	const bound = 2
	rec := &reviewRecorder{hold: func(tok string) bool { return tok != goodToken }, release: make(chan struct{})}
	e := newEnv(t, func(c *Config) {
		c.MaxTokenReviews = bound
		c.TokenReviewer = rec
	})
	rec.next = e.tokens
	body := webhook(t, firing("X", "shop", "pod", "a"))
	if r := e.post(t, PathAlertmanager, body); r.Code != http.StatusCreated {
		t.Fatalf("first post: status %d", r.Code)
	}
	e.clock.Step(DefaultAuthCacheTTL)

	var wg sync.WaitGroup
	for i := range bound {
		wg.Go(func() { e.do(t, http.MethodPost, PathAlertmanager, body, withToken(fmt.Sprintf("junk-%d", i))) })
	}
	defer wg.Wait()
	defer close(rec.release)
	waitFor(t, "the unknown tokens to hold every slot", func() bool { now, _ := rec.flight(); return now == bound })
	decodeProblem(t, e.do(t, http.MethodPost, PathAlertmanager, body, withToken("junk-more")), http.StatusServiceUnavailable, ProblemAuthBusy)

	if r := e.post(t, PathAlertmanager, body); r.Code != http.StatusAccepted {
		t.Errorf("known token during the flood: status %d %s, want 202", r.Code, r.Body)
	}
}

// testJWT is a JWT-shaped token with the given claims and no valid
// signature: the gateway reads the claims only to choose a review pool.
func testJWT(issuer, subject, id string) string {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	payload := enc.EncodeToString(fmt.Appendf(nil, `{"iss":%q,"sub":%q,"jti":%q}`, issuer, subject, id))
	return header + "." + payload + "." + enc.EncodeToString([]byte("signature-"+id))
}

const testIssuer = "https://kubernetes.default.svc"

// A known sender whose token rotated sends a token this replica never saw:
// the subject of its claims, accepted before, puts its review in the known
// pool, so unknown tokens holding every other slot do not lock it out.
func TestRotatedTokenOfKnownSubjectDuringFlood(t *testing.T) {
	const bound = 2
	const subject = "system:serviceaccount:monitoring:alertmanager"
	first, rotated := testJWT(testIssuer, subject, "1"), testJWT(testIssuer, subject, "2")
	rec := &reviewRecorder{hold: func(tok string) bool { return tok != first && tok != rotated }, release: make(chan struct{})}
	e := newEnv(t, func(c *Config) {
		c.MaxTokenReviews = bound
		c.TokenReviewer = rec
	})
	rec.next = e.tokens
	e.tokens.tokens[first] = e.tokens.tokens[goodToken]
	e.tokens.tokens[rotated] = e.tokens.tokens[goodToken]
	body := webhook(t, firing("X", "shop", "pod", "a"))
	if r := e.do(t, http.MethodPost, PathAlertmanager, body, withToken(first)); r.Code != http.StatusCreated {
		t.Fatalf("first post: status %d", r.Code)
	}

	var wg sync.WaitGroup
	for i := range bound {
		wg.Go(func() { e.do(t, http.MethodPost, PathAlertmanager, body, withToken(fmt.Sprintf("junk-%d", i))) })
	}
	defer wg.Wait()
	defer close(rec.release)
	waitFor(t, "the unknown tokens to hold every slot", func() bool { now, _ := rec.flight(); return now == bound })
	decodeProblem(t, e.do(t, http.MethodPost, PathAlertmanager, body, withToken(testJWT(testIssuer, "someone-else", "3"))),
		http.StatusServiceUnavailable, ProblemAuthBusy)

	if r := e.do(t, http.MethodPost, PathAlertmanager, body, withToken(rotated)); r.Code != http.StatusAccepted {
		t.Errorf("rotated token of a known subject during the flood: status %d %s, want 202", r.Code, r.Body)
	}
}

// Forged JWTs naming known subjects get at most one review of the known
// pool per subject, and all together at most half of it: the rest stays
// for the tokens accepted before, and the other forgeries compete with
// unknown tokens.
func TestForgedSubjectsHoldOneKnownSlotEach(t *testing.T) {
	const bound, perSubject = 4, 6
	for _, tc := range []struct {
		name     string
		subjects []string
		// inKnown is how many forgeries the known pool takes.
		inKnown int
	}{
		{"one subject", []string{"sa-a"}, 1},
		{"more subjects than half the pool", []string{"sa-a", "sa-b", "sa-c"}, bound / 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forged := map[string]bool{}
			for _, sub := range tc.subjects {
				for i := range perSubject {
					forged[testJWT(testIssuer, sub, fmt.Sprintf("forged-%d", i))] = true
				}
			}
			rec := &reviewRecorder{hold: func(tok string) bool { return forged[tok] }, release: make(chan struct{})}
			e := newEnv(t, func(c *Config) {
				c.MaxTokenReviews = bound
				c.TokenReviewer = rec
			})
			rec.next = e.tokens
			body := webhook(t, firing("X", "shop", "pod", "a"))
			for _, sub := range tc.subjects {
				tok := testJWT(testIssuer, sub, "real")
				e.tokens.tokens[tok] = authenticationv1.UserInfo{Username: sub}
				if r := e.do(t, http.MethodPost, PathAlertmanager, body, withToken(tok)); r.Code != http.StatusCreated && r.Code != http.StatusAccepted {
					t.Fatalf("%s: status %d", sub, r.Code)
				}
			}
			if r := e.post(t, PathAlertmanager, body); r.Code != http.StatusAccepted {
				t.Fatalf("good token: status %d", r.Code)
			}
			e.clock.Step(DefaultAuthCacheTTL)

			var wg sync.WaitGroup
			for tok := range forged {
				wg.Go(func() { e.do(t, http.MethodPost, PathAlertmanager, body, withToken(tok)) })
			}
			defer wg.Wait()
			defer close(rec.release)
			// tc.inKnown forgeries in the known pool, bound more in the
			// fresh pool; every other one refused at once.
			held := tc.inKnown + bound
			waitFor(t, "the forged tokens to be reviewed or refused", func() bool {
				now, _ := rec.flight()
				return now == held && counterValue(t, e.reg, MetricAuthRefused, map[string]string{"reason": "capacity"}) == float64(len(forged)-held)
			})
			e.srv.auth.mu.Lock()
			rotating, known := len(e.srv.auth.rotating), len(e.srv.auth.renewals)
			e.srv.auth.mu.Unlock()
			if rotating != tc.inKnown || known != tc.inKnown {
				t.Errorf("subjects under review %d, known-pool slots taken %d; want %d of each", rotating, known, tc.inKnown)
			}
			if _, peak := rec.flight(); peak != held {
				t.Errorf("reviews in flight peaked at %d, want %d", peak, held)
			}
			// The token accepted before, expired, is reviewed again from the
			// slots the forgeries could not take.
			if r := e.post(t, PathAlertmanager, body); r.Code != http.StatusAccepted {
				t.Errorf("known token during the forgeries: status %d %s, want 202", r.Code, r.Body)
			}
		})
	}
}

func TestTokenSubject(t *testing.T) {
	enc := base64.RawURLEncoding
	jwt := func(payload string) string { return "e30." + enc.EncodeToString([]byte(payload)) + ".c2ln" }
	want := subjectKey("iss", "sub")
	for _, tc := range []struct {
		name, token string
		ok          bool
	}{
		{"jwt", jwt(`{"iss":"iss","sub":"sub","exp":1}`), true},
		{"no issuer", jwt(`{"sub":"sub"}`), false},
		{"no subject", jwt(`{"iss":"iss"}`), false},
		{"two parts", "e30." + enc.EncodeToString([]byte(`{"iss":"iss","sub":"sub"}`)), false},
		{"four parts", jwt(`{"iss":"iss","sub":"sub"}`) + ".x", false},
		{"not base64url", "e30.!!.c2ln", false},
		{"not json", jwt(`iss=iss`), false},
		{"opaque", goodToken, false},
	} {
		got, ok := tokenSubject(tc.token)
		if ok != tc.ok || (ok && got != want) {
			t.Errorf("%s: tokenSubject = %x, %v; want ok %v", tc.name, got, ok, tc.ok)
		}
	}
	if subjectKey("a", "bc") == subjectKey("ab", "c") {
		t.Error("subjectKey does not separate issuer and subject")
	}
}

// Requests that join one held review and then disconnect end without an
// error log line each: a client going away is not a failure of ours.
func TestDisconnectedJoinersLogNoErrors(t *testing.T) {
	var sink logSink
	e := newEnv(t, func(c *Config) {
		c.MaxTokenReviews = 1
		c.Logger = funcr.New(sink.write, funcr.Options{})
	})
	e.tokens.gate = make(chan struct{})
	body := webhook(t, firing("X", "shop", "pod", "a"))
	const n = 50
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			req := httptest.NewRequestWithContext(ctx, http.MethodPost, PathAlertmanager, bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer junk-shared")
			req.Header.Set("Content-Type", "application/json")
			e.srv.Handler().ServeHTTP(httptest.NewRecorder(), req)
		})
	}
	waitFor(t, "every request to join the review", func() bool {
		return counterValue(t, e.reg, MetricAuthCacheLookups, map[string]string{"result": "miss"}) == n
	})
	cancel()
	wg.Wait()
	close(e.tokens.gate)
	waitFor(t, "the review to end", func() bool {
		e.srv.auth.mu.Lock()
		defer e.srv.auth.mu.Unlock()
		return len(e.srv.auth.calls) == 0
	})
	if lines := sink.find(`"authenticate"`); len(lines) != 0 {
		t.Errorf("%d error log lines for %d disconnects, want none; first: %s", len(lines), n, lines[0])
	}
	if got := e.tokens.calls.Load(); got != 1 {
		t.Errorf("TokenReviews = %d, want 1", got)
	}
}

// Rejected tokens have a cache of their own: a burst of bad tokens, many
// more than the cache holds, leaves an accepted token cached.
func TestRejectionsDoNotEvictAccepted(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AuthCacheSize = 4 })
	body := webhook(t, firing("X", "shop", "pod", "a"))
	if r := e.post(t, PathAlertmanager, body); r.Code != http.StatusCreated {
		t.Fatalf("good token: status %d", r.Code)
	}
	for i := range 100 {
		decodeProblem(t, e.do(t, http.MethodPost, PathAlertmanager, body, withToken(fmt.Sprintf("bad-%d", i))),
			http.StatusUnauthorized, ProblemUnauthenticated)
	}
	before := e.tokens.calls.Load()
	if r := e.post(t, PathAlertmanager, body); r.Code != http.StatusAccepted {
		t.Fatalf("good token after the burst: status %d", r.Code)
	}
	if got := e.tokens.calls.Load(); got != before {
		t.Errorf("the good token was reviewed again after 100 bad ones (%d reviews, want %d): evicted", got, before)
	}
	e.srv.auth.mu.Lock()
	acc, rej := e.srv.auth.accepted.len(), e.srv.auth.rejected.len()
	e.srv.auth.mu.Unlock()
	if acc != 1 || rej != 4 {
		t.Errorf("cache sizes: accepted %d, rejected %d; want 1 and 4", acc, rej)
	}
}

// A token that cannot be a bearer token is rejected 401 without a review.
func TestMalformedTokenNotReviewed(t *testing.T) {
	e := newEnv(t, nil)
	body := webhook(t, firing("X", "shop", "pod", "a"))
	malformed := map[string]string{
		"inner space":      "Bearer abc def",
		"quote":            `Bearer abc"def`,
		"comma":            "Bearer abc,def",
		"non-ASCII":        "Bearer abcdéf",
		"control":          "Bearer abc\x01def",
		"padding first":    "Bearer =abc",
		"padding inside":   "Bearer ab=cd",
		"too long":         "Bearer " + strings.Repeat("a", maxTokenLength+1),
		"only padding":     "Bearer ==",
		"semicolon suffix": "Bearer abc;",
	}
	for name, header := range malformed {
		t.Run(name, func(t *testing.T) {
			r := e.do(t, http.MethodPost, PathAlertmanager, body, map[string]string{"Content-Type": "application/json", "Authorization": header})
			decodeProblem(t, r, http.StatusUnauthorized, ProblemUnauthenticated)
			if got := r.Header().Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate = %q, want invalid_token", got)
			}
		})
	}
	if got := e.tokens.calls.Load(); got != 0 {
		t.Errorf("TokenReviews = %d, want 0", got)
	}
	if got := counterValue(t, e.reg, MetricAuthRefused, map[string]string{"reason": "malformed"}); got != float64(len(malformed)) {
		t.Errorf("refused as malformed = %v, want %d", got, len(malformed))
	}

	// Every character RFC 6750 allows, padding and the length limit pass
	// the shape check and go to a review.
	for _, tok := range []string{
		"AZaz09-._~+/",
		"abc==",
		strings.Repeat("a", maxTokenLength),
	} {
		if err := checkTokenShape(tok); err != nil {
			t.Errorf("checkTokenShape(%.20q...): %v, want nil", tok, err)
		}
	}
}

// The review asks for the configured audience, and a token the API server
// accepts for another audience (or without saying which) is rejected.
func TestTokenAudience(t *testing.T) {
	for _, tc := range []struct {
		name      string
		audience  string // Config.Audience
		answered  *[]string
		wantAsked string
		wantCode  int
	}{
		{"default audience echoed", "", nil, DefaultAudience, http.StatusCreated},
		{"configured audience echoed", "alerts.example.com", nil, "alerts.example.com", http.StatusCreated},
		{"no audience in the answer", "", &[]string{}, DefaultAudience, http.StatusUnauthorized},
		{"API server audience", "", &[]string{"https://kubernetes.default.svc"}, DefaultAudience, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &reviewRecorder{audiences: tc.answered}
			e := newEnv(t, func(c *Config) {
				c.Audience = tc.audience
				c.TokenReviewer = rec
			})
			rec.next = e.tokens
			r := e.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "a")))
			if r.Code != tc.wantCode {
				t.Errorf("status %d %s, want %d", r.Code, r.Body, tc.wantCode)
			}
			if tc.wantCode == http.StatusUnauthorized {
				decodeProblem(t, r, http.StatusUnauthorized, ProblemUnauthenticated)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(rec.specs) != 1 || !slices.Equal(rec.specs[0].Audiences, []string{tc.wantAsked}) {
				t.Errorf("reviews asked %+v, want one with audiences [%s]", rec.specs, tc.wantAsked)
			}
		})
	}
}
