package storm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

var fakeStart = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// stepThrough drives the fake clock through the waits a storm of one signal
// makes: before each wait it checks how many requests the gateways have
// seen, and it proves the wait is exactly want by stepping to just before
// it (the timer must still be pending, no new request sent) and then onto
// it (the next attempt must arrive without a further step).
//
// That the timer fired is judged by the next request, not by HasWaiters: the
// retried attempt may be answered 503 again and register the next wait's
// timer before this goroutine looks.
func stepThrough(t *testing.T, fc *clocktesting.FakeClock, requests func() int, waits []time.Duration) {
	t.Helper()
	for k, want := range waits {
		waitFor(t, 10*time.Second, "a retry timer", fc.HasWaiters)
		if got := requests(); got != k+1 {
			t.Fatalf("before wait %d: %d requests, want %d", k+1, got, k+1)
		}
		fc.Step(want - time.Millisecond)
		if !fc.HasWaiters() || requests() != k+1 {
			t.Fatalf("wait %d ended before %v", k+1, want)
		}
		fc.Step(time.Millisecond)
		waitFor(t, 10*time.Second, fmt.Sprintf("attempt %d, after wait %d of %v", k+2, k+1, want), func() bool {
			return requests() == k+2
		})
	}
}

func TestRetryHonoursRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter func(now time.Time) string
		wantWait   time.Duration
	}{
		{"seconds", func(time.Time) string { return "3" }, 3 * time.Second},
		{"capped at MaxRetryAfter", func(time.Time) string { return "3600" }, DefaultMaxRetryAfter},
		{"http date", func(now time.Time) string { return now.Add(2 * time.Second).Format(http.TimeFormat) }, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc := clocktesting.NewFakeClock(fakeStart)
			g := newFakeGateway(t, func(n int, _ *http.Request, _ []byte) reply {
				if n <= 2 {
					return reply{code: http.StatusServiceUnavailable, retryAfter: tc.retryAfter(fc.Now()), body: `{"title":"busy"}`}
				}
				return reply{code: http.StatusAccepted, body: `{"name":"rr-a"}`}
			})
			done := runAsync(testContext(t), Config{Targets: []string{g.URL()}, Signals: 1, Clock: fc})
			stepThrough(t, fc, g.requests, []time.Duration{tc.wantWait, tc.wantWait})
			r := <-done
			if r.err != nil {
				t.Fatalf("Run: %v", r.err)
			}
			res := r.rep.Results[0]
			if res.Code != http.StatusAccepted || res.Attempts != 3 || res.RemediationRequest != "rr-a" {
				t.Fatalf("result = %+v, want 202 after 3 attempts naming rr-a", res)
			}
			if res.Latency != 2*tc.wantWait {
				t.Errorf("latency = %v, want %v (first send to final answer, waits included)", res.Latency, 2*tc.wantWait)
			}
			if r.rep.Retries != 2 || r.rep.RetriesByCause[CauseUnavailable] != 2 || r.rep.Acknowledged != 1 {
				t.Errorf("retries %d by cause %v acknowledged %d, want 2, {503:2}, 1", r.rep.Retries, r.rep.RetriesByCause, r.rep.Acknowledged)
			}
			if err := r.rep.Check(true); err != nil {
				t.Errorf("Check = %v, want nil", err)
			}
		})
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := fakeStart
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{" 7 ", 7 * time.Second, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"99999999999999999", (1 << 20) * time.Second, true},
	} {
		got, ok := retryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestRetryWithoutRetryAfterUsesBackoff(t *testing.T) {
	fc := clocktesting.NewFakeClock(fakeStart)
	g := newFakeGateway(t, func(n int, _ *http.Request, _ []byte) reply {
		if n == 1 {
			return reply{code: http.StatusServiceUnavailable}
		}
		return reply{code: http.StatusCreated}
	})
	// Base == Max makes the decorrelated backoff deterministic.
	const wait = 250 * time.Millisecond
	done := runAsync(testContext(t), Config{Targets: []string{g.URL()}, Signals: 1, Clock: fc, RetryBasePeriod: wait, RetryMaxPeriod: wait})
	stepThrough(t, fc, g.requests, []time.Duration{wait})
	r := <-done
	if r.err != nil || r.rep.Results[0].Code != http.StatusCreated || r.rep.Results[0].Attempts != 2 {
		t.Fatalf("Run = %+v, %v; want 201 after 2 attempts", r.rep.Results, r.err)
	}
}

func TestConnectionErrorsAreRetried(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	live := newFakeGateway(t, nil)
	fc := clocktesting.NewFakeClock(fakeStart)
	const wait = 100 * time.Millisecond
	// Signal 0 goes to the dead target first, then round-robin to the live one.
	done := runAsync(testContext(t), Config{Targets: []string{deadURL, live.URL()}, Signals: 1, Clock: fc, RetryBasePeriod: wait, RetryMaxPeriod: wait})
	stepThrough(t, fc, func() int { return 1 + live.requests() }, []time.Duration{wait})
	r := <-done
	if r.err != nil {
		t.Fatalf("Run: %v", r.err)
	}
	res := r.rep.Results[0]
	if res.Code != http.StatusCreated || res.Attempts != 2 || res.Target != live.URL() {
		t.Fatalf("result = %+v, want 201 from %s on attempt 2", res, live.URL())
	}
	if r.rep.RetriesByCause[CauseConnection] != 1 {
		t.Errorf("retries by cause = %v, want connection:1", r.rep.RetriesByCause)
	}
}

func TestGivesUpAfterMaxRetries(t *testing.T) {
	for _, tc := range []struct {
		name         string
		cfg          Config
		wantAttempts int
	}{
		{"max retries", Config{MaxRetries: 4}, 5},
		{"default max retries", Config{}, 1 + DefaultMaxRetries},
		{"no retry", Config{NoRetry: true, MaxRetries: 4}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGateway(t, func(int, *http.Request, []byte) reply {
				// Retry-After 0: no waits, so the real clock is fine.
				return reply{code: http.StatusServiceUnavailable, retryAfter: "0", body: `{"title":"overloaded"}`}
			})
			cfg := tc.cfg
			cfg.Targets = []string{g.URL()}
			cfg.Signals = 1
			rep, err := Run(testContext(t), cfg)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			res := rep.Results[0]
			if g.requests() != tc.wantAttempts || res.Attempts != tc.wantAttempts {
				t.Fatalf("gateway saw %d requests, result says %d attempts; want %d", g.requests(), res.Attempts, tc.wantAttempts)
			}
			if res.Code != http.StatusServiceUnavailable || res.Outcome != "503" || !strings.Contains(res.Error, "overloaded") {
				t.Errorf("result = %+v, want final 503 with the body in the error", res)
			}
			if rep.Failed != 1 || rep.Acknowledged != 0 || rep.Latency.Count != 1 {
				t.Errorf("failed %d acknowledged %d latency count %d, want 1, 0, 1", rep.Failed, rep.Acknowledged, rep.Latency.Count)
			}
			if err := rep.Check(true); !errors.Is(err, ErrUnacknowledged) {
				t.Errorf("Check = %v, want ErrUnacknowledged", err)
			}
		})
	}
}

// Every 5xx is retried, as Alertmanager retries them: a 504 (outcome
// unknown) and a 500 as well as a 503.
func TestServerErrorsAreRetried(t *testing.T) {
	for _, code := range []int{http.StatusInternalServerError, http.StatusGatewayTimeout} {
		fc := clocktesting.NewFakeClock(fakeStart)
		g := newFakeGateway(t, func(n int, _ *http.Request, _ []byte) reply {
			if n == 1 {
				return reply{code: code}
			}
			return reply{code: http.StatusCreated}
		})
		const wait = 250 * time.Millisecond
		done := runAsync(testContext(t), Config{Targets: []string{g.URL()}, Signals: 1, Clock: fc, RetryBasePeriod: wait, RetryMaxPeriod: wait})
		stepThrough(t, fc, g.requests, []time.Duration{wait})
		r := <-done
		if r.err != nil || r.rep.Results[0].Code != http.StatusCreated || r.rep.Results[0].Attempts != 2 {
			t.Fatalf("%d: Run = %+v, %v; want 201 after 2 attempts", code, r.rep.Results, r.err)
		}
		if got := r.rep.RetriesByCause[strconv.Itoa(code)]; got != 1 {
			t.Errorf("%d: retries by cause %v, want 1 for %d", code, r.rep.RetriesByCause, code)
		}
	}
}

func TestFinalAnswersAreNotRetried(t *testing.T) {
	for _, code := range []int{http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized, http.StatusConflict, http.StatusRequestEntityTooLarge} {
		g := newFakeGateway(t, func(int, *http.Request, []byte) reply {
			return reply{code: code, body: `{"title":"x"}`}
		})
		rep, err := Run(testContext(t), Config{Targets: []string{g.URL()}, Signals: 3})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if g.requests() != 3 || rep.Attempts != 3 || rep.Outcomes[strconv.Itoa(code)] != 3 {
			t.Errorf("%d: %d requests, %d attempts, outcomes %v; want 3 each", code, g.requests(), rep.Attempts, rep.Outcomes)
		}
		wantAck := 0
		if code == http.StatusOK {
			wantAck = 3
		}
		if rep.Acknowledged != wantAck || rep.Counted != 0 {
			t.Errorf("%d: acknowledged %d counted %d, want %d, 0", code, rep.Acknowledged, rep.Counted, wantAck)
		}
	}
}

func TestCancelDuringRetryWait(t *testing.T) {
	fc := clocktesting.NewFakeClock(fakeStart)
	g := newFakeGateway(t, func(int, *http.Request, []byte) reply {
		return reply{code: http.StatusServiceUnavailable, retryAfter: "1"}
	})
	ctx, cancel := context.WithCancel(testContext(t))
	done := runAsync(ctx, Config{Targets: []string{g.URL()}, Signals: 1, Clock: fc})
	waitFor(t, 10*time.Second, "a retry timer", fc.HasWaiters)
	cancel()
	r := <-done
	if !errors.Is(r.err, context.Canceled) || r.rep == nil {
		t.Fatalf("Run = %v, %v; want a partial report and context.Canceled", r.rep, r.err)
	}
	if res := r.rep.Results[0]; res.Outcome != OutcomeCanceled || res.Attempts != 1 {
		t.Errorf("result = %+v, want canceled after 1 attempt", res)
	}
	if r.rep.Latency.Count != 0 {
		t.Errorf("latency count = %d, want 0: a cancelled signal has no final answer", r.rep.Latency.Count)
	}
}

func TestReadAnswer(t *testing.T) {
	for in, want := range map[string][2]string{
		`{"index":0,"outcome":"created","remediationRequest":"rr-2","fingerprint":"ab"}`: {"rr-2", "ab"},
		`{"name":"rr-1"}`: {"rr-1", ""},
		`{"remediationRequest":{"name":"rr-3","count":4}}`:    {"rr-3", ""},
		`{"remediationRequest":{"metadata":{"name":"rr-4"}}}`: {"rr-4", ""},
		`{"outcome":"duplicate","fingerprint":"cd"}`:          {"", "cd"},
		`{"fingerprint":7}`: {"", ""},
		`not json`:          {"", ""},
		``:                  {"", ""},
	} {
		name, fp := readAnswer([]byte(in))
		if name != want[0] || fp != want[1] {
			t.Errorf("readAnswer(%s) = %q, %q; want %q, %q", in, name, fp, want[0], want[1])
		}
	}
}
