package faultproxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/leasehold/leasehold/internal/faultproxy"
)

// testTimeout bounds every wait in the unit tests; it is a safety net for a
// broken proxy, never the thing a test measures.
const testTimeout = 10 * time.Second

// quiet is how long a test listens for bytes that must not arrive. A proxy
// that forwards when it should not answers within microseconds on loopback,
// so a failure shows well inside it; a pass proves nothing arrived in it.
const quiet = 200 * time.Millisecond

// echoServer echoes every byte back and, when the client half-closes,
// half-closes too: the client then reads everything echoed and an EOF.
type echoServer struct {
	ln       *net.TCPListener
	accepted atomic.Int64
	received atomic.Int64
	// ends gets each connection's end: nil for a clean EOF, else the error.
	ends chan error

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newEchoServer(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln, ends: make(chan error, 64)}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.close)
	return s
}

func (s *echoServer) addr() string { return s.ln.Addr().String() }

func (s *echoServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptTCP()
		if err != nil {
			return
		}
		s.accepted.Add(1)
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Add(1)
		go s.echo(c)
	}
}

func (s *echoServer) echo(c *net.TCPConn) {
	defer s.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		s.received.Add(int64(n))
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				s.end(werr)
				return
			}
		}
		if errors.Is(err, io.EOF) {
			_ = c.CloseWrite()
			s.end(nil)
			return
		}
		if err != nil {
			s.end(err)
			return
		}
	}
}

// end records a connection's end; beyond the channel's capacity (tests
// that read ends make only a few connections) ends are dropped so that a
// busy test never blocks the server.
func (s *echoServer) end(err error) {
	select {
	case s.ends <- err:
	default:
	}
}

func (s *echoServer) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// nextEnd waits for the next connection to end on the echo server.
func (s *echoServer) nextEnd(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.ends:
		return err
	case <-time.After(testTimeout):
		t.Fatal("no connection ended on the echo server")
		return nil
	}
}

// newProxy starts a proxy to target and closes it at the end of the test.
func newProxy(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(target)
	if err != nil {
		t.Fatalf("New(%s): %v", target, err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// dial connects to the proxy and closes the connection at the end of the test.
func dial(t *testing.T, p *faultproxy.Proxy) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), testTimeout)
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.TCPConn)
}

// roundTrip writes msg and reads it back, bounded by testTimeout.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read back %q: %v", msg, err)
	}
	if string(got) != msg {
		t.Fatalf("read back %q, want %q", got, msg)
	}
}

// readErr reads from c until an error, bounded by testTimeout, and returns
// the error; bytes read are returned too.
func readErr(t *testing.T, c net.Conn) ([]byte, error) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: no end within %s", testTimeout)
	}
	return data, err
}

// assertDialReset checks that a new connection to p is reset: the RST may
// arrive before connect returns (connect then fails) or after.
func assertDialReset(t *testing.T, p *faultproxy.Proxy) {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), testTimeout)
	if err != nil {
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("dial: err = %v, want ECONNRESET", err)
		}
		return
	}
	defer c.Close()
	assertReset(t, c)
}

// assertReset checks that c was reset by the proxy.
func assertReset(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := readErr(t, c); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: err = %v, want ECONNRESET", err)
	}
}

// assertSilent checks that nothing arrives on c for the quiet period after
// writing msg.
func assertSilent(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	if err := c.SetReadDeadline(time.Now().Add(quiet)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled connection: read %q, err %v; want nothing until the deadline", buf[:n], err)
	}
}

// waitFor polls cond until it holds, bounded by testTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, testTimeout, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}
