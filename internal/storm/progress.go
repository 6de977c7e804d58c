package storm

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
	"k8s.io/utils/clock"
)

// redrawEvery bounds how often the terminal line is redrawn: often enough to
// look live, rarely enough to cost nothing next to the storm.
const redrawEvery = 100 * time.Millisecond

// progress shows how far a storm is. It is driven by completions, not by a
// ticker, so it starts no goroutine; a storm whose signals all hang shows
// nothing new until they end, which RequestTimeout bounds.
type progress struct {
	w        io.Writer
	terminal bool
	clock    clock.PassiveClock
	total    int
	start    time.Time

	mu       sync.Mutex
	done     int
	acked    int
	lastDraw time.Time
	// nextTenth is the next multiple of 10% that gets a plain line.
	nextTenth int
}

func newProgress(w io.Writer, c clock.PassiveClock, total int) *progress {
	if w == nil {
		return nil
	}
	p := &progress{w: w, clock: c, total: total, start: c.Now(), nextTenth: 1}
	if f, ok := w.(*os.File); ok {
		p.terminal = term.IsTerminal(int(f.Fd()))
	}
	return p
}

// add records one signal's final result. Safe for concurrent use; nil is a
// no-op.
func (p *progress) add(res SignalResult) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	if res.Acknowledged() {
		p.acked++
	}
	now := p.clock.Now()
	if p.terminal {
		if p.done == p.total || now.Sub(p.lastDraw) >= redrawEvery {
			p.lastDraw = now
			fmt.Fprintf(p.w, "\r%s", p.line(now))
		}
		return
	}
	// One line however many tenths this signal completed (all of them
	// when the storm has fewer than ten signals).
	crossed := false
	for p.nextTenth <= 10 && p.done*10 >= p.nextTenth*p.total {
		p.nextTenth++
		crossed = true
	}
	if crossed {
		fmt.Fprintf(p.w, "%s\n", p.line(now))
	}
}

// finish ends the terminal line so that what follows starts on its own.
func (p *progress) finish() {
	if p == nil || !p.terminal {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w)
}

func (p *progress) line(now time.Time) string {
	const width = 30
	filled := 0
	if p.total > 0 {
		filled = p.done * width / p.total
	}
	rate := 0.0
	if el := now.Sub(p.start); el > 0 {
		rate = float64(p.done) / el.Seconds()
	}
	return fmt.Sprintf("[%s%s] %d/%d %3d%%  acked %d  %.1f/s",
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled),
		p.done, p.total, percentOf(p.done, p.total), p.acked, rate)
}

func percentOf(n, total int) int {
	if total == 0 {
		return 100
	}
	return n * 100 / total
}
