//go:build integration

package lease_test

import (
	"slices"
	"syscall"
	"testing"
	"time"
)

// shortLease keeps the kill and pause tests to seconds. RenewInterval and
// SafetyMargin take their defaults (a third and a tenth of it).
const shortLease = 5 * time.Second

// renewalsPastOneLease is how many renewals of a fresh lock span more than
// one lease duration at the default renew interval (a third of it).
const renewalsPastOneLease = 4

// TestIntegrationKillHolder kills the holder with SIGKILL while two other
// processes wait for the key. Nobody releases the Lease; the contenders
// must take it over by observation, exactly one of them, with one Update.
func TestIntegrationKillHolder(t *testing.T) {
	key := uniqueKey(t)
	hs := newHarness(t)
	opts := childOptions{leaseDuration: shortLease, acquireTimeout: 30 * time.Second}

	h := hs.start("holder", key, opts)
	h.send(t, "acquire")
	ha := h.expect(t, "ACQUIRED", 20*time.Second)
	if p := ha.get(t, "path"); p != "create" {
		t.Fatalf("holder acquired a free key by %s, want create", p)
	}

	c1 := hs.start("contender-1", key, opts)
	c2 := hs.start("contender-2", key, opts)
	for _, c := range []*child{c1, c2} {
		c.send(t, "acquire")
		c.expect(t, "WAITING", 20*time.Second)
	}

	// Keep the holder alive and renewing for more than a lease duration
	// while both contenders watch: a contender that judged expiry by its
	// first sight of the Lease, or by the remote renewTime, would take over
	// the live Lease now. The change they observed last is then a renewal
	// delivered by their watch; expiry by observation counts from there.
	h.takeAll("RENEWED")
	var lastChange time.Time
	for range renewalsPastOneLease {
		lastChange = h.expect(t, "RENEWED", 2*shortLease).read
	}
	for _, c := range []*child{c1, c2} {
		for _, verb := range []string{"ACQUIRED", "FAILED"} {
			if c.has(verb) {
				t.Fatalf("%s reported %s while the holder was alive and renewing", c.name, verb)
			}
		}
	}
	if h.has("ENDED") {
		t.Fatal("the holder lost its lock while alive and renewing")
	}
	killed := time.Now()
	h.signal(syscall.SIGKILL)

	winner, wa := expectAny(t, []*child{c1, c2}, "ACQUIRED", 4*shortLease)
	loser := c1
	if winner == c1 {
		loser = c2
	}
	t.Logf("kill -9 -> takeover by %s: %v after the kill, %v after the holder's last renewal was reported (lease %v); calls: %s",
		winner.name, wa.at(t, "at").Sub(killed).Round(time.Millisecond), wa.at(t, "at").Sub(lastChange).Round(time.Millisecond),
		shortLease, wa.raw)

	// Both processes read one host's wall clock, so this order is exact:
	// nobody may take over a Lease whose holder was still renewing it.
	if at := wa.at(t, "at"); !at.After(killed) {
		t.Errorf("%s acquired at %v, before the holder was killed at %v", winner.name, at, killed)
	}
	if p := wa.get(t, "path"); p != "takeover" {
		t.Errorf("winner acquired by %s, want takeover", p)
	}
	if n := wa.int(t, "takeovers"); n != 1 {
		t.Errorf("winner's takeovers_total went up by %d, want 1", n)
	}
	// The winner's only Update is the takeover: it did not try early (that
	// would be a Conflict or a stolen live Lease) and needed no retry.
	if n := wa.int(t, "updates"); n != 1 {
		t.Errorf("winner made %d Updates while acquiring, want exactly 1 (the takeover)", n)
	}
	newer(t, ha.token(t), wa.token(t))

	// Hold for more than a lease duration: a loser that judged expiry wrongly
	// (by the remote renewTime, or missing the winner's renewals) would take
	// over now. Its Release being clean proves nobody wrote meanwhile.
	for n := int64(0); n < renewalsPastOneLease; {
		n = winner.expect(t, "RENEWED", 2*shortLease).int(t, "n")
	}
	for _, verb := range []string{"ACQUIRED", "FAILED"} {
		if loser.has(verb) {
			t.Fatalf("%s reported %s while %s held the lock", loser.name, verb, winner.name)
		}
	}
	winner.send(t, "release")
	if e := winner.expect(t, "RELEASED", 10*time.Second).get(t, "error"); e != "nil" {
		t.Fatalf("winner's Release: %s, want nil (someone wrote its Lease while it held it)", e)
	}

	la := loser.expect(t, "ACQUIRED", 2*shortLease)
	t.Logf("%s acquired after the release by %s: %s", loser.name, la.get(t, "path"), la.raw)
	if p := la.get(t, "path"); p != "create" && p != "takeover" {
		t.Errorf("loser acquired by %s, want create or takeover", p)
	}
	newer(t, wa.token(t), la.token(t))

	loser.send(t, "release")
	if e := loser.expect(t, "RELEASED", 10*time.Second).get(t, "error"); e != "nil" {
		t.Errorf("loser's Release: %s, want nil", e)
	}
	winner.exit(t)
	loser.exit(t)
}

// TestIntegrationPausedHolder freezes the holder (SIGSTOP) for longer than
// its lease, lets a contender take over, then resumes it. The resumed
// holder must see ErrLost from Err before writing, and the write it sends
// anyway, as a stale in-flight write would, must be rejected by the token
// check of the protected resource.
func TestIntegrationPausedHolder(t *testing.T) {
	key := uniqueKey(t)
	hs := newHarness(t)
	rec := newRecorder(t)
	opts := childOptions{leaseDuration: shortLease, acquireTimeout: 30 * time.Second, recorderURL: rec.srv.URL}

	h := hs.start("holder", key, opts)
	h.send(t, "acquire")
	ha := h.expect(t, "ACQUIRED", 20*time.Second)
	step(t, h, "nil", "accepted")

	c := hs.start("contender", key, opts)
	c.send(t, "acquire")
	c.expect(t, "WAITING", 20*time.Second)

	stopped := time.Now()
	h.signal(syscall.SIGSTOP)
	ca := c.expect(t, "ACQUIRED", 4*shortLease)
	t.Logf("takeover of the stopped holder: %v after SIGSTOP (lease %v): %s",
		ca.at(t, "at").Sub(stopped).Round(time.Millisecond), shortLease, ca.raw)
	if p := ca.get(t, "path"); p != "takeover" {
		t.Fatalf("contender acquired by %s, want takeover", p)
	}
	newer(t, ha.token(t), ca.token(t))
	step(t, c, "nil", "accepted")

	// The step command is queued before the holder resumes, so its first
	// action may be the protected write, with its lock object intact and
	// no timer fired yet. Whether its renewer or the step runs first, Err
	// must say lost.
	h.send(t, "step")
	h.signal(syscall.SIGCONT)
	e := checkStep(t, h, "lost", "rejected")
	t.Logf("resumed holder: %s", e.raw)
	// The step read Context before Err, both long past the safe deadline:
	// Context must already be done, whether or not the renewer's timer had
	// fired yet.
	if c := e.get(t, "context"); c != "done" {
		t.Errorf("resumed holder: Context was %s when Err said lost, want done", c)
	}
	if cause := h.expect(t, "ENDED", 10*time.Second).get(t, "cause"); cause != "lost" {
		t.Errorf("resumed holder's Context ended with %s, want lost", cause)
	}
	// Release of a lost lock returns ErrLost and must not touch the new
	// holder's Lease.
	h.send(t, "release")
	if e := h.expect(t, "RELEASED", 10*time.Second).get(t, "error"); e != "lost" {
		t.Errorf("resumed holder's Release: %s, want lost", e)
	}

	step(t, c, "nil", "accepted")
	c.send(t, "release")
	if e := c.expect(t, "RELEASED", 10*time.Second).get(t, "error"); e != "nil" {
		t.Errorf("contender's Release: %s, want nil (its Lease was touched)", e)
	}

	accepted, rejected := rec.records()
	type stepOf struct {
		holder string
		step   int
	}
	var got []stepOf
	for _, r := range accepted {
		got = append(got, stepOf{r.Holder, r.Step})
	}
	hHolder, cHolder := ha.get(t, "holder"), ca.get(t, "holder")
	want := []stepOf{{hHolder, 1}, {cHolder, 1}, {cHolder, 2}}
	if !slices.Equal(got, want) {
		t.Errorf("accepted records %v, want %v", got, want)
	}
	if len(rejected) != 1 || rejected[0].Holder != hHolder || rejected[0].Step != 2 || rejected[0].Token != ha.get(t, "token") {
		t.Errorf("rejected records %+v, want only the resumed holder's step 2 with its old token %s", rejected, ha.get(t, "token"))
	}
	h.exit(t)
	c.exit(t)
}

// step makes c do one protected write and checks what Err said before it
// and whether the recorder accepted it.
func step(t *testing.T, c *child, wantErr, wantResult string) {
	t.Helper()
	c.send(t, "step")
	checkStep(t, c, wantErr, wantResult)
}

// checkStep checks the outcome of a step command already sent, and
// returns its ERR event.
func checkStep(t *testing.T, c *child, wantErr, wantResult string) message {
	t.Helper()
	errEv := c.expect(t, "ERR", 10*time.Second)
	if e := errEv.get(t, "err"); e != wantErr {
		t.Errorf("%s: Err() before the write: %s, want %s", c.name, e, wantErr)
	}
	m := c.expect(t, "RECORD", 10*time.Second)
	if r := m.get(t, "result"); r != wantResult {
		t.Errorf("%s: write %s, want %s (%s)", c.name, r, wantResult, m.raw)
	}
	if wantResult == "rejected" && m.get(t, "status") != "409" {
		t.Errorf("%s: write rejected with status %s, want 409 (stale token)", c.name, m.get(t, "status"))
	}
	return errEv
}
