package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is what the proxy does with connections; see the package doc.
type Mode int

const (
	// Pass forwards connections to the target.
	Pass Mode = iota
	// Refuse resets new connections at once and resets open ones when set.
	Refuse
	// Blackhole accepts new connections and never reads or writes them, and
	// stalls open ones when set.
	Blackhole
)

func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Refuse:
		return "refuse"
	case Blackhole:
		return "blackhole"
	default:
		return fmt.Sprintf("Mode(%d)", int(m))
	}
}

// dialTimeout bounds the dial to the target for one accepted connection; the
// target is on loopback, so a dial that takes longer has failed.
const dialTimeout = 10 * time.Second

// acceptRetryDelay is the pause after an Accept error other than the
// listener being closed (for example, out of file descriptors), so that such
// an error does not turn the accept loop into a busy loop.
const acceptRetryDelay = 10 * time.Millisecond

// Proxy is a loopback TCP proxy with a run-time switchable Mode. It is safe
// for concurrent use.
type Proxy struct {
	target string
	ln     *net.TCPListener

	// ctx is cancelled by Close; it aborts dials in progress and the accept
	// loop's pauses.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	accepted atomic.Uint64

	mu     sync.Mutex
	mode   Mode
	links  map[*link]struct{} // every connection accepted and not yet closed
	closed bool
}

// link is one accepted connection and, once dialled, its connection to the
// target.
type link struct {
	client *net.TCPConn
	server *net.TCPConn // nil until dialled; stays nil if stalled or reset first

	// stalled is closed when the link is stalled; never reopened.
	stalled chan struct{}
	// done is closed when the link is closed or reset; both connections are
	// closed by then.
	done chan struct{}
	// open counts the copy directions still running; the last one to end
	// closes the link.
	open atomic.Int32
}

func (l *link) isStalled() bool {
	select {
	case <-l.stalled:
		return true
	default:
		return false
	}
}

// New listens on 127.0.0.1 on a free port and forwards to target (host:port)
// in Pass mode.
func New(target string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("faultproxy: target %q: %w", target, err)
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		target: target,
		ln:     ln,
		ctx:    ctx,
		cancel: cancel,
		mode:   Pass,
		links:  make(map[*link]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address the proxy listens on, as host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// Accepted is the number of connections accepted since New, in any mode.
func (p *Proxy) Accepted() uint64 { return p.accepted.Load() }

// Active is the number of accepted connections not yet closed or reset:
// forwarding, dialling the target, or stalled.
func (p *Proxy) Active() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// SetMode switches the mode; see the package doc for what each mode does to
// new and to open connections. After Close it does nothing. It panics on a
// Mode that is not one of the constants: that is a bug in the test.
func (p *Proxy) SetMode(m Mode) {
	if m != Pass && m != Refuse && m != Blackhole {
		panic(fmt.Sprintf("faultproxy: unknown mode %v", m))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.mode = m
	switch m {
	case Refuse:
		for l := range p.links {
			p.resetLocked(l)
		}
	case Blackhole:
		for l := range p.links {
			stallLocked(l)
		}
	}
}

// Close closes the listener, resets every connection and waits for every
// goroutine of the proxy to end. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	alreadyClosed := p.closed
	p.closed = true
	var err error
	if !alreadyClosed {
		err = p.ln.Close()
		p.cancel()
		for l := range p.links {
			p.resetLocked(l)
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			t := time.NewTimer(acceptRetryDelay)
			select {
			case <-p.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		p.accepted.Add(1)
		p.admit(c)
	}
}

// admit handles one accepted connection according to the mode at this
// moment.
func (p *Proxy) admit(c *net.TCPConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.mode == Refuse {
		reset(c)
		return
	}
	l := &link{client: c, stalled: make(chan struct{}), done: make(chan struct{})}
	p.links[l] = struct{}{}
	if p.mode == Blackhole {
		// No goroutine: nothing will ever be read or written, and Refuse
		// or Close resets it.
		stallLocked(l)
		return
	}
	p.wg.Add(1)
	go p.dial(l)
}

// dial connects l to the target and starts forwarding, unless l was stalled
// or reset meanwhile.
func (p *Proxy) dial(l *link) {
	defer p.wg.Done()
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(p.ctx, "tcp", p.target)

	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if !l.isStalled() {
			// The target is down: tell the client at once.
			p.resetLocked(l)
		}
		return
	}
	server := conn.(*net.TCPConn)
	select {
	case <-l.done:
		// Reset by Refuse or Close while dialling.
		reset(server)
		return
	default:
	}
	if l.isStalled() {
		// Blackholed while dialling: the target never hears of this client.
		reset(server)
		return
	}
	l.server = server
	l.open.Store(2)
	p.wg.Add(2)
	go p.copy(l, l.server, l.client)
	go p.copy(l, l.client, l.server)
}

// copy forwards src to dst until src ends, l is reset, or l is stalled; a
// stalled copier parks until the link is reset.
func (p *Proxy) copy(l *link, dst, src *net.TCPConn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, rerr := src.Read(buf)
		if n > 0 && !l.isStalled() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				rerr = werr
			}
		}
		if rerr == nil && !l.isStalled() {
			continue
		}
		if l.isStalled() {
			<-l.done
			return
		}
		select {
		case <-l.done:
			// Reset by Refuse or Close: nothing left to do.
			return
		default:
		}
		if errors.Is(rerr, io.EOF) {
			// A clean end of this direction: pass the half-close on, and
			// close the link once the other direction has ended too.
			_ = dst.CloseWrite()
			if l.open.Add(-1) == 0 {
				p.closeLink(l)
			}
			return
		}
		// Any other error (the peer reset, or a write failed): end both
		// directions abruptly, as the peer did.
		p.mu.Lock()
		p.resetLocked(l)
		p.mu.Unlock()
		return
	}
}

// closeLink closes both connections of a link whose both directions ended
// cleanly.
func (p *Proxy) closeLink(l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-l.done:
		return
	default:
	}
	close(l.done)
	delete(p.links, l)
	_ = l.client.Close()
	if l.server != nil {
		_ = l.server.Close()
	}
}

// resetLocked resets both connections of l and forgets it. Idempotent.
func (p *Proxy) resetLocked(l *link) {
	select {
	case <-l.done:
		return
	default:
	}
	close(l.done)
	delete(p.links, l)
	reset(l.client)
	if l.server != nil {
		reset(l.server)
	}
}

// stallLocked stops all forwarding on l. A deadline in the past interrupts
// a Read or Write in progress; the copiers then see the link stalled and
// park. Idempotent.
func stallLocked(l *link) {
	select {
	case <-l.stalled:
		return
	case <-l.done:
		return
	default:
	}
	close(l.stalled)
	past := time.Unix(1, 0)
	_ = l.client.SetDeadline(past)
	if l.server != nil {
		_ = l.server.SetDeadline(past)
	}
}

// reset closes c with a TCP RST instead of a FIN, so that the peer sees
// "connection reset by peer" at once rather than an orderly end of stream.
func reset(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}
