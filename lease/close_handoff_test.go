package lease

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// As TestAcquireGrantedAHandoffThatCloseReleasedIsClosed, but the handed-off
// Lease is taken over before Close releases it. The waiter is still an
// acquisition ended by Close, so its error matches ErrClosed, and ErrLost
// too, since the release found the takeover.
func TestAcquireEndedByCloseOfATakenOverHandoffIsClosed(t *testing.T) {
	e := newEnv(t)
	l := e.locker("pod-a")
	lk, err := l.TryAcquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	ctx := &gatedContext{Context: context.Background(), entered: make(chan struct{}), open: make(chan struct{})}
	res := make(chan error, 1)
	go func() {
		w, err := l.Acquire(ctx, "k")
		if w != nil {
			err = fmt.Errorf("Acquire returned a lock (Err %v)", w.Err())
		}
		res <- err
	}()
	<-ctx.entered
	if err := lk.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.foreign("k", "pod-b/1")
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	l.mu.Lock()
	handed := l.slots["k"].holder
	l.mu.Unlock()
	eventually(t, "Close released the handed-off lock and found the takeover", func() bool { return errors.Is(handed.Err(), ErrLost) })
	t.Logf("handed-off lock: Err %v", handed.Err())
	close(ctx.open)
	err = receive(t, res, "Acquire")
	if err := receive(t, closed, "Close"); err != nil {
		t.Fatalf("Close = %v", err)
	}
	t.Logf("Acquire = %v", err)
	if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrLost) {
		t.Fatalf("Acquire = %v, want ErrClosed and ErrLost", err)
	}
}
