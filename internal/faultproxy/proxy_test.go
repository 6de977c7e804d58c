package faultproxy_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/faultproxy"
)

func TestNewRejectsBadTarget(t *testing.T) {
	for _, target := range []string{"", "127.0.0.1", "https://127.0.0.1:6443"} {
		if p, err := faultproxy.New(target); err == nil {
			_ = p.Close()
			t.Errorf("New(%q) = nil error", target)
		}
	}
}

func TestProxyListensOnLoopback(t *testing.T) {
	p := newProxy(t, "127.0.0.1:1")
	host, port, err := net.SplitHostPort(p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addr() = %s, want 127.0.0.1 on a chosen port", p.Addr())
	}
	if p.Mode() != faultproxy.Pass {
		t.Fatalf("initial mode %v, want pass", p.Mode())
	}
	if p.Target() != "127.0.0.1:1" {
		t.Fatalf("Target() = %s", p.Target())
	}
}

func TestPassForwardsBothWaysWithHalfClose(t *testing.T) {
	echo := newEchoServer(t)
	p := newProxy(t, echo.addr())
	c := dial(t, p)

	roundTrip(t, c, "hello")
	// A megabyte checks that the copy loop forwards more than one buffer
	// and keeps the order; the reader runs concurrently so that neither
	// side's buffers fill.
	big := make([]byte, 1<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(big))
		_, _ = io.ReadFull(c, b)
		got <- b
	}()
	if _, err := c.Write(big); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(<-got, big) {
		t.Fatal("1 MiB came back altered")
	}

	// The client's half-close reaches the server, whose half-close comes
	// back as EOF after the last echoed bytes.
	if _, err := c.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	data, err := readErr(t, c)
	if err != nil || string(data) != "bye" {
		t.Fatalf("after half-close: read %q, err %v; want \"bye\" and EOF", data, err)
	}
	if err := echo.nextEnd(t); err != nil {
		t.Fatalf("echo server saw %v, want a clean EOF", err)
	}
	waitFor(t, "the connection to be closed", func() bool { return p.Active() == 0 })
	if p.Accepted() != 1 || echo.accepted.Load() != 1 {
		t.Fatalf("accepted: proxy %d, server %d; want 1 and 1", p.Accepted(), echo.accepted.Load())
	}
}

func TestPassResetsClientWhenTargetIsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	p := newProxy(t, target)
	assertDialReset(t, p)
	waitFor(t, "the connection to be forgotten", func() bool { return p.Active() == 0 })
}

func TestRefuseResetsNewConnections(t *testing.T) {
	echo := newEchoServer(t)
	p := newProxy(t, echo.addr())
	p.SetMode(faultproxy.Refuse)

	for range 3 {
		assertDialReset(t, p)
	}
	if p.Accepted() != 3 || p.Active() != 0 {
		t.Fatalf("accepted %d, active %d; want 3 and 0", p.Accepted(), p.Active())
	}
	if n := echo.accepted.Load(); n != 0 {
		t.Fatalf("target saw %d connections, want 0", n)
	}

	p.SetMode(faultproxy.Pass)
	roundTrip(t, dial(t, p), "back")
}

func TestRefuseResetsOpenConnectionsOnBothSides(t *testing.T) {
	echo := newEchoServer(t)
	p := newProxy(t, echo.addr())
	c := dial(t, p)
	roundTrip(t, c, "before")

	p.SetMode(faultproxy.Refuse)
	assertReset(t, c)
	if err := echo.nextEnd(t); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("target side: err = %v, want ECONNRESET", err)
	}
	if p.Active() != 0 {
		t.Fatalf("active %d after Refuse, want 0", p.Active())
	}
}

func TestBlackholeAcceptsAndNeverForwardsNewConnections(t *testing.T) {
	echo := newEchoServer(t)
	p := newProxy(t, echo.addr())
	p.SetMode(faultproxy.Blackhole)

	c := dial(t, p)
	waitFor(t, "the proxy to accept", func() bool { return p.Accepted() == 1 && p.Active() == 1 })
	assertSilent(t, c, "anyone there?")
	if n := echo.accepted.Load(); n != 0 {
		t.Fatalf("target saw %d connections, want 0", n)
	}
}

func TestBlackholeStallsOpenConnectionsUntilReset(t *testing.T) {
	echo := newEchoServer(t)
	p := newProxy(t, echo.addr())
	c := dial(t, p)
	roundTrip(t, c, "before")
	before := echo.received.Load()

	p.SetMode(faultproxy.Blackhole)
	assertSilent(t, c, "during")
	if got := echo.received.Load(); got != before {
		t.Fatalf("target received %d bytes during the stall", got-before)
	}

	// Back to Pass: new connections work, the stalled one stays stalled,
	// and neither side of it was closed.
	p.SetMode(faultproxy.Pass)
	roundTrip(t, dial(t, p), "new")
	assertSilent(t, c, "after")
	if got := echo.received.Load(); got != before+int64(len("new")) {
		t.Fatalf("target received %d bytes, want only the new connection's %d", got-before, len("new"))
	}
	select {
	case err := <-echo.ends:
		t.Fatalf("a target-side connection ended (%v) while only stalled", err)
	default:
	}
	if p.Active() != 2 {
		t.Fatalf("active %d, want 2 (stalled and new)", p.Active())
	}

	// Refuse resets the stalled connection, on both sides.
	p.SetMode(faultproxy.Refuse)
	assertReset(t, c)
	for range 2 {
		if err := echo.nextEnd(t); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("target side: err = %v, want ECONNRESET", err)
		}
	}
	if p.Active() != 0 {
		t.Fatalf("active %d after Refuse, want 0", p.Active())
	}
}

func TestCloseEndsEverything(t *testing.T) {
	echo := newEchoServer(t)
	p, err := faultproxy.New(echo.addr())
	if err != nil {
		t.Fatal(err)
	}
	forwarding := dial(t, p)
	roundTrip(t, forwarding, "x")
	stalled := dial(t, p)
	roundTrip(t, stalled, "y")
	p.SetMode(faultproxy.Blackhole)
	p.SetMode(faultproxy.Pass)
	fresh := dial(t, p)
	roundTrip(t, fresh, "z")
	p.SetMode(faultproxy.Blackhole)
	blackholed := dial(t, p)
	waitFor(t, "four connections", func() bool { return p.Active() == 4 })

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if p.Active() != 0 {
		t.Fatalf("active %d after Close", p.Active())
	}
	for _, c := range []net.Conn{forwarding, stalled, fresh, blackholed} {
		assertReset(t, c)
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), testTimeout); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial after Close: err = %v, want ECONNREFUSED", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	p.SetMode(faultproxy.Pass) // a no-op, not a panic
}

func TestSetModePanicsOnUnknownMode(t *testing.T) {
	p := newProxy(t, "127.0.0.1:1")
	defer func() {
		if recover() == nil {
			t.Fatal("SetMode(Mode(7)) did not panic")
		}
	}()
	p.SetMode(faultproxy.Mode(7))
}

func TestModeString(t *testing.T) {
	for m, want := range map[faultproxy.Mode]string{
		faultproxy.Pass: "pass", faultproxy.Refuse: "refuse", faultproxy.Blackhole: "blackhole", faultproxy.Mode(9): "Mode(9)",
	} {
		if got := m.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(m), got, want)
		}
	}
}

// TestModeSwitchesUnderTraffic flips modes while clients dial and talk, for
// the race detector and for deadlocks; Close must still end everything.
func TestModeSwitchesUnderTraffic(t *testing.T) {
	echo := newEchoServer(t)
	p, err := faultproxy.New(echo.addr())
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 8)
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", p.Addr(), testTimeout)
				if err != nil {
					continue
				}
				// Any outcome is allowed here; the short deadline only keeps
				// a stalled connection from holding this client.
				_ = c.SetDeadline(time.Now().Add(20 * time.Millisecond))
				_, _ = c.Write([]byte("ping"))
				_, _ = c.Read(buf)
				_ = c.Close()
			}
		}()
	}
	for i := range 60 {
		p.SetMode([]faultproxy.Mode{faultproxy.Pass, faultproxy.Blackhole, faultproxy.Pass, faultproxy.Refuse}[i%4])
		// Some traffic in each mode before the next switch.
		prev := p.Accepted()
		waitFor(t, "a connection", func() bool { return p.Accepted() > prev })
	}
	close(stop)
	wg.Wait()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if p.Active() != 0 {
		t.Fatalf("active %d after Close", p.Active())
	}
	if p.Accepted() == 0 {
		t.Fatal("no connection was accepted")
	}
}
