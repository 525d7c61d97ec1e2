package eventstoretest

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"runtime"
	"sync"
	"testing"

	"github.com/eventline/eventline/eventstore"
)

// bulk is the log length for cancellation tests: more records than a backend
// plausibly fetches in one page, so that a read cancelled after its first
// record must notice the cancellation before it reaches the end.
const bulk = 2500

// testCancellation checks that a cancelled context ends Append, ReadAll,
// ReadStream and Subscribe promptly with the context's error, and that no
// goroutine outlives them.
func testCancellation(t *testing.T, s eventstore.Store) {
	appendMany(t, s, "bulk", bulk)

	// Warm up whatever the backend starts lazily and keeps for its lifetime
	// (a connection pool, a shared poller), so that only leaks count.
	warm := subscribe(t, s, eventstore.Start)
	warm.next(t, 1)
	warm.cancel()
	waitDone(t, warm.done, "a cancelled subscription")
	baseline := runtime.NumGoroutine()

	t.Run("AlreadyCancelled", func(t *testing.T) {
		ctx := cancelled(t)
		head := mustHead(t, s)
		if _, err := s.Append(ctx, "bulk", eventstore.Any, ev("late")); !errors.Is(err, context.Canceled) {
			t.Errorf("Append with a cancelled context: err = %v, want context.Canceled", err)
		}
		if got := mustHead(t, s); got != head {
			t.Errorf("Append with a cancelled context moved the head from %s to %s", head, got)
		}
		for name, seq := range map[string]iter.Seq2[eventstore.Record, error]{
			"ReadAll":    s.ReadAll(ctx, eventstore.Start),
			"ReadStream": s.ReadStream(ctx, "bulk", 1),
			"Subscribe":  s.Subscribe(ctx, eventstore.Start),
		} {
			n, err := drain(seq)
			if !errors.Is(err, context.Canceled) || n >= bulk {
				t.Errorf("%s with a cancelled context: %d records, then %v; want context.Canceled", name, n, err)
			}
		}
	})

	t.Run("MidIteration", func(t *testing.T) {
		for name, open := range map[string]func(context.Context) iter.Seq2[eventstore.Record, error]{
			"ReadAll":    func(ctx context.Context) iter.Seq2[eventstore.Record, error] { return s.ReadAll(ctx, eventstore.Start) },
			"ReadStream": func(ctx context.Context) iter.Seq2[eventstore.Record, error] { return s.ReadStream(ctx, "bulk", 1) },
			"Subscribe": func(ctx context.Context) iter.Seq2[eventstore.Record, error] {
				return s.Subscribe(ctx, eventstore.Start)
			},
		} {
			ctx, cancel := context.WithCancel(testContext(t))
			var n int
			var last error
			for _, err := range open(ctx) {
				if err != nil {
					last = err
					break
				}
				if n++; n == 1 {
					cancel()
				}
			}
			cancel()
			if !errors.Is(last, context.Canceled) || n >= bulk {
				t.Errorf("%s cancelled after its first record: %d records, then %v; want context.Canceled before the end",
					name, n, last)
			}
		}
	})

	t.Run("LiveSubscription", func(t *testing.T) {
		var subs []*subscription
		for range 8 {
			sub := subscribe(t, s, mustHead(t, s))
			subs = append(subs, sub)
		}
		// Prove each is live (waiting for appends) before cancelling it.
		res := mustAppend(t, s, "live", eventstore.Any, ev("wake"))
		for _, sub := range subs {
			if rec := sub.next(t, 1)[0]; rec.Position != res.Position {
				t.Fatalf("live subscription yielded %s, want %s", rec.Position, res.Position)
			}
		}
		for _, sub := range subs {
			sub.cancel()
			waitDone(t, sub.done, "a cancelled live subscription")
			if !errors.Is(sub.err, context.Canceled) {
				t.Errorf("cancelled live subscription ended with %v, want context.Canceled", sub.err)
			}
		}
	})

	t.Run("BreakEarly", func(t *testing.T) {
		ctx := testContext(t)
		for rec, err := range s.ReadAll(ctx, eventstore.Start) {
			_, _ = rec, err
			break
		}
		for rec, err := range s.ReadStream(ctx, "bulk", 1) {
			_, _ = rec, err
			break
		}
		for rec, err := range s.Subscribe(ctx, eventstore.Start) {
			_, _ = rec, err
			break
		}
	})

	// Here, not in a subtest, whose own goroutine would count.
	checkNoGoroutineLeak(t, baseline)
}

// drain runs seq to its end and returns how many records it yielded and the
// error that ended it.
func drain(seq iter.Seq2[eventstore.Record, error]) (int, error) {
	n := 0
	for _, err := range seq {
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// testClose checks that every operation after Close returns ErrClosed, that
// Close ends live subscriptions, and that a closed store leaves no goroutine.
func testClose(t *testing.T, newStore func(*testing.T) eventstore.Store) {
	baseline := runtime.NumGoroutine()
	s := newStore(t)
	mustAppend(t, s, "closing", eventstore.NoStream, ev("a"))
	live := subscribe(t, s, eventstore.Start)
	live.next(t, 1)

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitDone(t, live.done, "a live subscription after Close")
	if !errors.Is(live.err, eventstore.ErrClosed) {
		t.Errorf("live subscription ended with %v after Close, want ErrClosed", live.err)
	}

	ctx := testContext(t)
	if _, err := s.Append(ctx, "closing", eventstore.Any, ev("b")); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("Append after Close: err = %v, want ErrClosed", err)
	}
	if _, err := s.Head(ctx); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("Head after Close: err = %v, want ErrClosed", err)
	}
	for name, seq := range map[string]iter.Seq2[eventstore.Record, error]{
		"ReadAll":    s.ReadAll(ctx, eventstore.Start),
		"ReadStream": s.ReadStream(ctx, "closing", 1),
		"Subscribe":  s.Subscribe(ctx, eventstore.Start),
	} {
		if n, err := drain(seq); n != 0 || !errors.Is(err, eventstore.ErrClosed) {
			t.Errorf("%s after Close: %d records, then %v; want ErrClosed", name, n, err)
		}
	}
	// A second Close is harmless: it may report ErrClosed but must not panic.
	if err := s.Close(); err != nil && !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	checkNoGoroutineLeak(t, baseline)
}

// testCloseDuringAppends closes a store under concurrent appends: each append
// either succeeds or fails with ErrClosed, and none hangs.
func testCloseDuringAppends(t *testing.T, newStore func(*testing.T) eventstore.Store) {
	s := newStore(t)
	ctx := testContext(t)
	const writers = 16
	var wg sync.WaitGroup
	var appended sync.WaitGroup
	appended.Add(writers)
	errc := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			first := true
			for i := 0; ; i++ {
				_, err := s.Append(ctx, fmt.Sprintf("closing-%d", w), eventstore.Exact(uint64(i)), ev("e"))
				if first {
					first = false
					appended.Done()
				}
				switch {
				case errors.Is(err, eventstore.ErrClosed):
					return
				case err != nil:
					errc <- fmt.Errorf("writer %d append %d: %w", w, i, err)
					return
				}
			}
		})
	}
	appended.Wait()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	waitDone(t, done, "appends racing Close")
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}
