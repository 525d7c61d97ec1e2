package command

import (
	"context"
	"sync"
)

// streamLocks queues the Handle calls of one Handler that target the same
// stream. Without it, N concurrent commands to a hot stream all load and
// decide, one append wins and N-1 retry: the work is quadratic and the latency
// of the losers grows with the back-off. Queued, each command loads once and
// its append meets no conflict from this process; optimistic concurrency still
// guards against other processes and other Handlers.
type streamLocks struct {
	mu    sync.Mutex
	locks map[string]*streamLock
}

type streamLock struct {
	held    chan struct{} // holds a token while the lock is taken
	waiters int           // callers holding or waiting; the entry goes at 0
}

// lock takes stream's lock, or returns ctx's error if ctx ends first. The
// caller must call unlock(stream) once it holds the lock.
func (l *streamLocks) lock(ctx context.Context, stream string) error {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[string]*streamLock{}
	}
	e := l.locks[stream]
	if e == nil {
		e = &streamLock{held: make(chan struct{}, 1)}
		l.locks[stream] = e
	}
	e.waiters++
	l.mu.Unlock()
	select {
	case e.held <- struct{}{}:
		return nil
	case <-ctx.Done():
		l.release(stream, e)
		return context.Cause(ctx)
	}
}

func (l *streamLocks) unlock(stream string) {
	l.mu.Lock()
	e := l.locks[stream]
	l.mu.Unlock()
	<-e.held
	l.release(stream, e)
}

func (l *streamLocks) release(stream string, e *streamLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.waiters--; e.waiters == 0 {
		delete(l.locks, stream)
	}
}
