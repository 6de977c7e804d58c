//go:build integration

package gateway_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/leasehold/leasehold/gateway"
	"github.com/leasehold/leasehold/internal/storm"
)

// The flood's size. The defaults fit CI under -race on 2 cores and still
// send several times more unknown tokens than the review clients' rate
// allows, for longer than an accepted token stays cached (so the valid
// sender is reviewed again during the flood); the figure is
// -flood-rate 1000 -flood-duration 30s.
var (
	floodRate     = flag.Float64("flood-rate", 200, "junk-token requests per second in TestJunkTokenFloodDuringStorm")
	floodDuration = flag.Duration("flood-duration", 15*time.Second, "length of the junk-token flood in TestJunkTokenFloodDuringStorm")
	// floodGatewayArgs lets a run check that the test notices a lost
	// bound, e.g. -flood-gateway-args=--max-token-reviews=1000000.
	floodGatewayArgs = flag.String("flood-gateway-args", "", "extra flags, space-separated, for the gateways of TestJunkTokenFloodDuringStorm")
)

// floodSlowdown is how much longer than its configured duration the flood
// may take. The flood is paced by schedule, so it ends late only when its
// requests are answered late: when they queue (behind the review clients'
// rate limiters, for instance) instead of being refused at once.
const floodSlowdown = 2

// The review client rate of `leasehold gateway` (its --auth-qps and
// --auth-burst defaults), which bounds the TokenReviews a flood can cause.
const authQPS, authBurst = 20, 40

// TestJunkTokenFloodDuringStorm floods three authenticating gateway
// processes with requests carrying distinct unknown (and some malformed)
// bearer tokens while a storm of valid signals, sent with a real
// ServiceAccount token for the gateway's audience, runs over them. Every
// valid signal must be counted exactly, /readyz must never fail, every
// junk request must be answered 401 or 503, and the TokenReviews must stay
// within what the review clients' rate limit allows over the flood's
// configured duration, far below one per junk request. The flood must be
// refused for capacity, not queued: requests that wait for a review would
// stretch the flood, and the reviews with it.
func TestJunkTokenFloodDuringStorm(t *testing.T) {
	const gateways = 3
	if *floodDuration <= gateway.DefaultAuthCacheTTL {
		t.Fatalf("-flood-duration %v must be longer than the auth cache TTL (%v), so that the valid sender is reviewed again during the flood", *floodDuration, gateway.DefaultAuthCacheTTL)
	}
	if *floodRate <= gateways*authQPS {
		t.Fatalf("-flood-rate %v must be above the review rate of the gateways (%d/s), or the review pools are never full", *floodRate, gateways*authQPS)
	}
	ctx := t.Context()
	ns := newNamespace(t, "flood")
	token := senderToken(t, ns, gateway.DefaultAudience)
	gws := startGateways(t, ns, gateways, strings.Fields(*floodGatewayArgs)...)
	t.Cleanup(func() {
		for _, gw := range gws {
			if err := gw.Stop(20 * time.Second); err != nil {
				t.Errorf("%s: %v\n%s", gw.Name, err, gw.Tail(4000))
			}
		}
		amCheckLogs(t, gatewayProcs(gws)...)
	})
	before := scrapeAuth(t, gws)

	probeCtx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	var probing, flooding sync.WaitGroup
	ready := &readinessProbe{}
	probing.Go(func() { ready.run(probeCtx, gws) })
	flood := &junkFlood{}
	start := time.Now()
	flooding.Go(func() { flood.run(ctx, gws, *floodRate, *floodDuration) })

	// The valid signals, spread over the flood.
	const signals, fingerprints = 300, 10
	rep, err := storm.Run(ctx, storm.Config{
		Targets:      urls(gws),
		Signals:      signals,
		Fingerprints: fingerprints,
		Concurrency:  50,
		Rate:         float64(signals) / floodDuration.Seconds(),
		Token:        token,
		Kube:         cp.Config,
		RRNamespace:  ns,
		NoAPIMetrics: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	flooding.Wait() // the flood ends by its duration
	elapsed := time.Since(start)
	stopProbe()
	probing.Wait()
	after := scrapeAuth(t, gws)

	if err := rep.Check(true); err != nil {
		t.Errorf("storm of valid signals: %v\noutcomes %v retries %v", err, rep.Outcomes, rep.RetriesByCause)
	}
	if rep.Verification == nil {
		t.Error("the storm did not verify the requests")
	}
	polls, failures, firstFailure := ready.result()
	if polls == 0 || failures > 0 {
		t.Errorf("/readyz: %d of %d polls failed; first: %s", failures, polls, firstFailure)
	}
	sent, codes, other := flood.result()
	for code, n := range codes {
		if code != http.StatusUnauthorized && code != http.StatusServiceUnavailable {
			t.Errorf("%d junk requests answered %d, want only 401 and 503", n, code)
		}
	}
	if other != "" {
		t.Errorf("junk answers: %s", other)
	}
	reviews := after.tokenReviews - before.tokenReviews
	// What the review clients' token buckets allow, for every gateway,
	// from the flood's start until a review of its last request is given
	// up (the request timeout after it was sent). From the configured
	// duration, not the elapsed time: a flood that queues for reviews
	// instead of being refused takes longer and would buy more.
	limit := float64(len(gws)) * (authBurst + authQPS*(*floodDuration+gateway.DefaultRequestTimeout).Seconds())
	if reviews > limit {
		t.Errorf("%v TokenReviews for %d junk requests in %v, more than the review clients' rate allows (%v)", reviews, sent, elapsed.Round(time.Millisecond), limit)
	}
	capacity := after.capacity - before.capacity
	if capacity == 0 {
		t.Errorf("no junk request refused for capacity: the review pools never filled, so their bound was not exercised")
	}
	if elapsed > floodSlowdown**floodDuration {
		t.Errorf("the flood took %v, more than %d times its %v: its requests queued instead of being refused", elapsed.Round(time.Millisecond), floodSlowdown, *floodDuration)
	}
	if sent < int(*floodRate*floodDuration.Seconds()*0.9) {
		t.Errorf("only %d junk requests sent, want about %v: the flood did not happen", sent, *floodRate*floodDuration.Seconds())
	}
	t.Logf("junk: %d requests in %v (%.0f/s), answers %v; TokenReviews %v (%.3f per junk request, limit %v); refused malformed %v, for capacity %v; "+
		"readyz: %d polls, %d failed; valid signals: %d, outcomes %v, retries %v",
		sent, elapsed.Round(time.Millisecond), float64(sent)/elapsed.Seconds(), codes, reviews, reviews/float64(max(sent, 1)), limit,
		after.malformed-before.malformed, capacity, polls, failures, rep.Signals, rep.Outcomes, rep.RetriesByCause)
}

// senderToken creates a ServiceAccount in ns that may create
// RemediationRequests there (what the access review asks) and returns a
// token of it issued for audience.
func senderToken(t *testing.T, ns, audience string) string {
	t.Helper()
	ctx := t.Context()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "sender", Namespace: ns}}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "signal-sender", Namespace: ns},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"leasehold.dev"}, Resources: []string{"remediationrequests"}, Verbs: []string{"create"}}},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "signal-sender", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: ns}},
	}
	if err := admin.Create(ctx, sa); err != nil {
		t.Fatal(err)
	}
	if err := admin.Create(ctx, role); err != nil {
		t.Fatal(err)
	}
	if err := admin.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	clientset, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	return tr.Status.Token
}

// readinessProbe polls /readyz of every gateway every 100ms and counts the
// polls that did not answer 200.
type readinessProbe struct {
	mu           sync.Mutex
	polls, fails int
	first        string
}

func (p *readinessProbe) run(ctx context.Context, gws []*gatewayProcess) {
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, gw := range gws {
			req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, gw.URL+gateway.PathReadyz, nil)
			if err != nil {
				panic(err) // a fixed, valid URL
			}
			resp, err := client.Do(req)
			failure := ""
			switch {
			case err != nil:
				failure = err.Error()
			case resp.StatusCode != http.StatusOK:
				failure = resp.Status
			}
			if resp != nil {
				resp.Body.Close()
			}
			p.mu.Lock()
			p.polls++
			if failure != "" {
				p.fails++
				if p.first == "" {
					p.first = gw.Name + ": " + failure
				}
			}
			p.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (p *readinessProbe) result() (polls, fails int, first string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.polls, p.fails, p.first
}

// junkFlood posts valid webhooks with bearer tokens no one issued, each
// distinct, one in ten not even shaped like a token, round-robin over the
// gateways at a fixed rate.
type junkFlood struct {
	sent  atomic.Int64
	mu    sync.Mutex
	codes map[int]int
	other []string
}

func (f *junkFlood) run(ctx context.Context, gws []*gatewayProcess, rate float64, d time.Duration) {
	f.codes = map[int]int{}
	body := junkBody()
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256},
	}
	defer client.CloseIdleConnections()
	total := int(rate * d.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	work := make(chan int)
	var wg sync.WaitGroup
	for range 128 {
		wg.Go(func() {
			for i := range work {
				f.post(ctx, client, gws[i%len(gws)].URL+gateway.PathAlertmanager, junkToken(i), body)
			}
		})
	}
	// Paced by schedule, not by answers: a slow gateway gets the flood
	// anyway, as it would from a client that does not wait.
	start := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; i < total; {
		select {
		case <-ctx.Done():
			i = total
			continue
		case <-tick.C:
		}
		due := min(total, int(time.Since(start)/interval)+1)
		for ; i < due; i++ {
			select {
			case work <- i:
			case <-ctx.Done():
				i = total
			}
		}
	}
	close(work)
	wg.Wait()
}

func (f *junkFlood) post(ctx context.Context, client *http.Client, url, token string, body string) {
	f.sent.Add(1)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		panic(err) // a fixed, valid URL
	}
	req.Header.Set("Content-Type", gateway.ContentTypeJSON)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		if len(f.other) < 5 {
			f.other = append(f.other, err.Error())
		}
		return
	}
	resp.Body.Close()
	f.codes[resp.StatusCode]++
}

func (f *junkFlood) result() (sent int, codes map[int]int, other string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return int(f.sent.Load()), f.codes, strings.Join(f.other, "; ")
}

// junkToken is a random token of valid shape, or every tenth one with a
// character no bearer token has.
func junkToken(i int) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	if i%10 == 0 {
		return tok + "!"
	}
	return tok
}

func junkBody() string {
	return fmt.Sprintf(`{"version":"4","status":"firing","receiver":"junk","groupKey":"{}:{}","alerts":[{"status":"firing","labels":{"alertname":"Junk","namespace":"junk","pod":"junk"},"startsAt":%q}]}`,
		time.Now().UTC().Format(time.RFC3339))
}

// authCounters are the gateways' authentication counters, summed.
type authCounters struct {
	tokenReviews, malformed, capacity float64
}

func scrapeAuth(t *testing.T, gws []*gatewayProcess) authCounters {
	t.Helper()
	var c authCounters
	for _, gw := range gws {
		resp, err := amHTTP.Get(gw.URL + gateway.PathMetrics)
		if err != nil {
			t.Fatalf("%s: scrape: %v", gw.Name, err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: parse /metrics: %v", gw.Name, err)
		}
		for _, m := range families[gateway.MetricAuthReviews].GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "review" && lp.GetValue() == "token" {
					c.tokenReviews += m.GetCounter().GetValue()
				}
			}
		}
		for _, m := range families[gateway.MetricAuthRefused].GetMetric() {
			for _, lp := range m.GetLabel() {
				switch {
				case lp.GetName() != "reason":
				case lp.GetValue() == "malformed":
					c.malformed += m.GetCounter().GetValue()
				case lp.GetValue() == "capacity":
					c.capacity += m.GetCounter().GetValue()
				}
			}
		}
	}
	return c
}
