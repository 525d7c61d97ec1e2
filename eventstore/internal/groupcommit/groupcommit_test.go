package groupcommit

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
)

type request struct {
	*Request
	n int
}

func newRequest(n int) *request { return &request{Request: NewRequest(), n: n} }

// abandon does what Submit does when its caller's context ends.
func abandon(t *testing.T, r *request) {
	t.Helper()
	if !r.state.CompareAndSwap(queued, abandoned) {
		t.Fatal("could not abandon a queued request")
	}
}

// within fails the test when ch yields nothing within 10s.
func within[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing after 10s")
		var zero T
		return zero
	}
}

type outcome struct {
	res eventstore.AppendResult
	err error
}

func submitAsync(ctx context.Context, requests chan *request, req *request, done, stopped chan struct{}) <-chan outcome {
	out := make(chan outcome, 1)
	go func() {
		res, err := Submit(ctx, requests, req, done, stopped)
		out <- outcome{res, err}
	}()
	return out
}

func TestSubmitReturnsTheAnswer(t *testing.T) {
	requests := make(chan *request, 1)
	done, stopped := make(chan struct{}), make(chan struct{})
	out := submitAsync(context.Background(), requests, newRequest(1), done, stopped)
	req := within(t, requests)
	if !req.Take() {
		t.Fatal("Take of a queued request reported false")
	}
	want := eventstore.AppendResult{StreamID: "s", FirstVersion: 1, LastVersion: 1, Position: eventstore.SeqPosition(7)}
	req.Answer(want, nil)
	if got := within(t, out); got.err != nil || got.res != want {
		t.Fatalf("got %+v, %v; want %+v", got.res, got.err, want)
	}
}

func TestSubmitOnAClosedStoreIsErrClosed(t *testing.T) {
	requests := make(chan *request) // no writer receives
	done, stopped := make(chan struct{}), make(chan struct{})
	close(done)
	_, err := Submit(context.Background(), requests, newRequest(1), done, stopped)
	if !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
}

func TestSubmitWithAFullQueueEndsWithItsContext(t *testing.T) {
	requests := make(chan *request) // no writer receives
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Submit(ctx, requests, newRequest(1), make(chan struct{}), make(chan struct{}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// A caller whose context ends while its request is queued abandons it, and
// the writer then cannot take it.
func TestAbandonedRequestIsNotTaken(t *testing.T) {
	requests := make(chan *request, 1)
	ctx, cancel := context.WithCancel(context.Background())
	req := newRequest(1)
	out := submitAsync(ctx, requests, req, make(chan struct{}), make(chan struct{}))
	deadline := time.Now().Add(10 * time.Second)
	for len(requests) == 0 { // wait until it is queued
		if time.Now().After(deadline) {
			t.Fatal("request not queued after 10s")
		}
		select {
		case <-out:
			t.Fatal("Submit returned before its request was taken")
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	if got := within(t, out); !errors.Is(got.err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", got.err)
	}
	if req.Take() {
		t.Fatal("the writer took a request its caller abandoned")
	}
}

// Once the writer took a request, the caller waits for its answer even when
// its context ends.
func TestTakenRequestIsAnsweredDespiteItsContext(t *testing.T) {
	requests := make(chan *request, 1)
	ctx, cancel := context.WithCancel(context.Background())
	out := submitAsync(ctx, requests, newRequest(1), make(chan struct{}), make(chan struct{}))
	req := within(t, requests)
	if !req.Take() {
		t.Fatal("Take of a queued request reported false")
	}
	cancel()
	select {
	case got := <-out:
		t.Fatalf("Submit returned %v before the answer to a taken request", got.err)
	case <-time.After(20 * time.Millisecond): // a chance to misbehave; not a synchronization
	}
	errWritten := errors.New("written")
	req.Answer(eventstore.AppendResult{}, errWritten)
	if got := within(t, out); !errors.Is(got.err, errWritten) {
		t.Fatalf("got %v, want the writer's answer", got.err)
	}
}

// A writer that stopped without taking the request leaves ErrClosed; one that
// answered before stopping leaves its answer.
func TestSubmitAfterTheWriterStopped(t *testing.T) {
	requests := make(chan *request, 2)
	done, stopped := make(chan struct{}), make(chan struct{})
	close(stopped)
	if _, err := Submit(context.Background(), requests, newRequest(1), done, stopped); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("unanswered: got %v, want ErrClosed", err)
	}
	req := newRequest(2)
	req.Take()
	errAnswer := errors.New("answer")
	req.Answer(eventstore.AppendResult{}, errAnswer)
	if _, err := Submit(context.Background(), requests, req, done, stopped); !errors.Is(err, errAnswer) {
		t.Fatalf("answered: got %v, want the answer", err)
	}
}

func TestFailQueuedAnswersErrClosedAndSkipsAbandoned(t *testing.T) {
	requests := make(chan *request, 3)
	a, b, c := newRequest(1), newRequest(2), newRequest(3)
	abandon(t, b)
	requests <- a
	requests <- b
	requests <- c
	FailQueued(requests)
	if len(requests) != 0 {
		t.Fatalf("%d requests left queued", len(requests))
	}
	for _, r := range []*request{a, c} {
		if _, err := r.Wait(); !errors.Is(err, eventstore.ErrClosed) {
			t.Errorf("request %d: got %v, want ErrClosed", r.n, err)
		}
	}
	if len(b.reply) != 0 {
		t.Error("an abandoned request was answered")
	}
}

func stoppedTimer() *time.Timer {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	return timer
}

func TestGatherTakesWhatIsQueuedAndSkipsAbandoned(t *testing.T) {
	requests := make(chan *request, 4)
	abandoned := newRequest(2)
	abandon(t, abandoned)
	for _, r := range []*request{abandoned, newRequest(3), newRequest(4)} {
		requests <- r
	}
	var batch []int
	add := func(r *request) { batch = append(batch, r.n) }
	Gather(requests, newRequest(1), add, func() bool { return false }, func() bool { return true }, 0, stoppedTimer(), nil)
	if want := []int{1, 3, 4}; !equal(batch, want) {
		t.Fatalf("batch %v, want %v", batch, want)
	}
}

func TestGatherStopsWhenFull(t *testing.T) {
	requests := make(chan *request, 4)
	for n := 2; n <= 4; n++ {
		requests <- newRequest(n)
	}
	var batch []int
	add := func(r *request) { batch = append(batch, r.n) }
	full := func() bool { return len(batch) >= 2 }
	Gather(requests, newRequest(1), add, full, func() bool { return true }, time.Hour, stoppedTimer(), nil)
	if want := []int{1, 2}; !equal(batch, want) {
		t.Fatalf("batch %v, want %v", batch, want)
	}
	if len(requests) != 2 {
		t.Fatalf("%d requests left queued, want 2", len(requests))
	}
}

// While more reports that more requests are on their way, Gather waits for
// them; it returns as soon as more reports false.
func TestGatherWaitsWhileMoreAreComing(t *testing.T) {
	requests := make(chan *request)
	batch := make(chan int, 3)
	n := 0
	add := func(r *request) { n++; batch <- r.n }
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		Gather(requests, newRequest(1), add, func() bool { return false }, func() bool { return n < 3 }, time.Hour, stoppedTimer(), nil)
	}()
	within(t, batch)
	// requests is unbuffered: a send completes only if Gather, still
	// waiting, takes it. A Gather that returned early fails the test here
	// instead of leaving the send blocked until the test binary times out.
	for n := 2; n <= 3; n++ {
		select {
		case requests <- newRequest(n):
		case <-returned:
			t.Fatalf("Gather returned with %d requests while more reported more to come", n-1)
		case <-time.After(10 * time.Second):
			t.Fatalf("Gather did not take request %d within 10s", n)
		}
	}
	within(t, returned)
	if n != 3 {
		t.Fatalf("batch of %d, want 3", n)
	}
}

// The wait is bounded: with more still true, Gather returns when wait ends.
func TestGatherWaitEnds(t *testing.T) {
	requests := make(chan *request)
	returned := make(chan struct{})
	timer := stoppedTimer()
	go func() {
		defer close(returned)
		Gather(requests, newRequest(1), func(*request) {}, func() bool { return false }, func() bool { return true }, time.Millisecond, timer, nil)
	}()
	within(t, returned)
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Serve hands each request to batch until done is closed, then answers what
// is still queued and closes stopped.
func TestServeBatchesUntilDoneThenAnswersQueued(t *testing.T) {
	requests := make(chan *request, 2)
	done, stopped := make(chan struct{}), make(chan struct{})
	served := make(chan int, 3)
	go Serve(requests, done, stopped, func(first *request, timer *time.Timer) {
		if timer == nil {
			t.Error("batch got no timer")
		}
		if first.Take() {
			first.Answer(eventstore.AppendResult{}, nil)
		}
		served <- first.n
	})
	requests <- newRequest(1)
	if n := within(t, served); n != 1 {
		t.Fatalf("served request %d, want 1", n)
	}
	left := newRequest(2)
	requests <- left
	close(done)
	within(t, stopped)
	// Serve either took it before it saw done, or failed it as queued.
	answer := make(chan error, 1)
	go func() { _, err := left.Wait(); answer <- err }()
	if err := within(t, answer); err != nil && !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("request queued at Close: got %v, want its answer or ErrClosed", err)
	}
	if len(requests) != 0 {
		t.Fatalf("%d requests left queued after stopped", len(requests))
	}
}
