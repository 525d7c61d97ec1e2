package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/eventstoretest"
	"github.com/eventline/eventline/eventstore/memory"
)

// The shared log keeps the whole Store contract. A small window makes the
// suite's subscriptions cross many chunks and wait for room.
func TestSharedLogContract(t *testing.T) {
	for _, window := range []int{1, 8, eventstore.DefaultSharedWindow} {
		t.Run(fmt.Sprintf("window=%d", window), func(t *testing.T) {
			eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
				s := eventstore.NewSharedLog(memory.New(), eventstore.SharedLogOptions{Window: window, StallTimeout: 200 * time.Millisecond})
				t.Cleanup(func() { s.Close() })
				return s
			})
		})
	}
}

// counting counts the records the underlying store hands out.
type counting struct {
	eventstore.Store
	read atomic.Int64
}

func (c *counting) count(seq iter.Seq2[eventstore.Record, error]) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		for rec, err := range seq {
			if err == nil {
				c.read.Add(1)
			}
			if !yield(rec, err) {
				return
			}
		}
	}
}

func (c *counting) Subscribe(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return c.count(c.Store.Subscribe(ctx, after))
}

func (c *counting) ReadAll(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return c.count(c.Store.ReadAll(ctx, after))
}

func appendN(t *testing.T, s eventstore.Store, n int) eventstore.Position {
	t.Helper()
	var head eventstore.Position
	for i := 0; i < n; i += 50 {
		evs := make([]eventstore.Event, min(50, n-i))
		for j := range evs {
			evs[j] = eventstore.Event{Type: "t", Data: []byte(`{}`)}
		}
		res, err := s.Append(context.Background(), fmt.Sprintf("s-%d", i%7), eventstore.Any, evs...)
		if err != nil {
			t.Fatal(err)
		}
		head = res.Position
	}
	return head
}

// consume reads a subscription from after until the record at head and
// checks that it saw every position after `after` once, in order.
func consume(ctx context.Context, s eventstore.Store, after, head eventstore.Position, each func(eventstore.Record)) error {
	next := after.Commit + 1
	for rec, err := range s.Subscribe(ctx, after) {
		if err != nil {
			return err
		}
		if rec.Position.Commit != next {
			return fmt.Errorf("got position %d, want %d", rec.Position.Commit, next)
		}
		next++
		if each != nil {
			each(rec)
		}
		if rec.Position == head {
			return nil
		}
	}
	return errors.New("subscription ended without an error")
}

// TestSharedLogReadsTheLogOnce: four subscriptions catching up from the start
// together read the underlying log about once, not four times.
func TestSharedLogReadsTheLogOnce(t *testing.T) {
	const n = 20_000
	under := &counting{Store: memory.New()}
	head := appendN(t, under, n)
	under.read.Store(0)
	s := eventstore.NewSharedLog(under, eventstore.SharedLogOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Each waits after its first record until all four have one, so that
	// they start together however the goroutines are scheduled (with one
	// CPU the first could otherwise take the whole log before the others
	// start).
	var wg, started sync.WaitGroup
	started.Add(4)
	all := make(chan struct{})
	go func() { started.Wait(); close(all) }()
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			once := false
			errs <- consume(ctx, s, eventstore.Position{}, head, func(eventstore.Record) {
				if !once {
					once = true
					started.Done()
					select {
					case <-all:
					case <-ctx.Done():
					}
				}
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// The first subscription starts the shared reader; the others join it
	// at once or after reading alone up to where it is.
	if got := under.read.Load(); got > 2*n {
		t.Fatalf("the underlying store handed out %d records for 4 subscriptions of %d: the log was not shared", got, n)
	} else {
		t.Logf("%d records read from the store for 4 × %d delivered", got, n)
	}
}

// TestSharedLogDropsAStalledMember: a subscriber that stops taking records
// holds the others back for StallTimeout at most; then it is dropped from
// the convoy, the others go on, and it still gets every record once, in
// order, when it resumes.
func TestSharedLogDropsAStalledMember(t *testing.T) {
	const n = 2_000
	under := memory.New()
	head := appendN(t, under, n)
	s := eventstore.NewSharedLog(under, eventstore.SharedLogOptions{Window: 16, StallTimeout: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	release := make(chan struct{})
	stalled := make(chan struct{})
	slow := make(chan error, 1)
	go func() {
		slow <- consume(ctx, s, eventstore.Position{}, head, func(rec eventstore.Record) {
			if rec.Position.Commit == 3 {
				close(stalled)
				<-release
			}
		})
	}()
	<-stalled
	// A subscriber from the same place joins the same convoy and must get
	// past the stalled one.
	if err := consume(ctx, s, eventstore.Position{}, head, nil); err != nil {
		t.Fatalf("the other subscriber: %v", err)
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatalf("the stalled subscriber after it resumed: %v", err)
	}
}

// TestSharedLogAheadOfTheConvoy: a subscription that starts ahead of a
// convoy held back by a slow member reads on its own, catches up and
// follows live appends, while the convoy's members still get everything.
func TestSharedLogAheadOfTheConvoy(t *testing.T) {
	under := memory.New()
	appendN(t, under, 1_000)
	s := eventstore.NewSharedLog(under, eventstore.SharedLogOptions{Window: 8, StallTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	release := make(chan struct{})
	held := make(chan struct{})
	slow := make(chan error, 1)
	final := eventstore.SeqPosition(1_100)
	go func() {
		slow <- consume(ctx, s, eventstore.Position{}, final, func(rec eventstore.Record) {
			if rec.Position.Commit == 2 {
				close(held)
				<-release
			}
		})
	}()
	<-held
	ahead := make(chan error, 1)
	caughtUp := make(chan struct{})
	go func() {
		ahead <- consume(ctx, s, eventstore.SeqPosition(900), final, func(rec eventstore.Record) {
			if rec.Position.Commit == 1_000 {
				close(caughtUp)
			}
		})
	}()
	// Once it has read the log's last record, the appends below reach the
	// subscriber that is ahead live, while the convoy is held back far
	// behind them.
	select {
	case <-caughtUp:
	case err := <-ahead:
		t.Fatalf("subscriber ahead of the convoy ended before the head: %v", err)
	}
	if got := appendN(t, under, 100); got != final {
		t.Fatalf("appended up to %v, want %v", got, final)
	}
	if err := <-ahead; err != nil {
		t.Fatalf("subscriber ahead of the convoy: %v", err)
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatalf("convoy member: %v", err)
	}
}

// TestSharedLogBehindTheConvoyJoinsIt: a subscription that starts behind a
// convoy reads alone up to it and then shares it, without a gap or a
// duplicate at the seam.
func TestSharedLogBehindTheConvoyJoinsIt(t *testing.T) {
	under := &counting{Store: memory.New()}
	appendN(t, under, 5_000)
	s := eventstore.NewSharedLog(under, eventstore.SharedLogOptions{Window: 64, StallTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A member at the head keeps a convoy there.
	head, _ := under.Head(ctx)
	live := make(chan error, 1)
	final := eventstore.SeqPosition(6_000)
	go func() { live <- consume(ctx, s, head, final, nil) }()
	waitMembers(t, s, 1)

	behind := make(chan error, 1)
	go func() { behind <- consume(ctx, s, eventstore.SeqPosition(10), final, nil) }()
	waitMembers(t, s, 2)
	before := under.read.Load()
	appendN(t, under, 1_000)
	if err := <-behind; err != nil {
		t.Fatalf("subscriber from behind: %v", err)
	}
	if err := <-live; err != nil {
		t.Fatalf("subscriber at the head: %v", err)
	}
	// Once joined, the 1,000 new records are read from the store once (by the
	// convoy), not once per subscriber.
	if got := under.read.Load() - before; got > 1_000+64 {
		t.Errorf("%d records read from the store for 1,000 appended records and two joined subscribers", got)
	}
}

func waitMembers(t *testing.T, s *eventstore.SharedLog, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); eventstore.SharedLogMembers(s) != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscriptions share the reader, want %d", eventstore.SharedLogMembers(s), n)
		}
	}
}

// TestSharedLogPassesErrorsOn: when the underlying store closes, every member
// of the convoy ends with ErrClosed.
func TestSharedLogPassesErrorsOn(t *testing.T) {
	under := memory.New()
	appendN(t, under, 100)
	s := eventstore.NewSharedLog(under, eventstore.SharedLogOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- consume(ctx, s, eventstore.Position{}, eventstore.SeqPosition(1_000), nil) }()
	}
	waitMembers(t, s, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := <-errs; !errors.Is(err, eventstore.ErrClosed) {
			t.Errorf("member after Close: %v, want ErrClosed", err)
		}
	}
}

// openSubs counts the underlying store's subscriptions that are open, and so
// the convoy readers reading it.
type openSubs struct {
	eventstore.Store
	open atomic.Int64
}

func (o *openSubs) Subscribe(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	inner := o.Store.Subscribe(ctx, after)
	return func(yield func(eventstore.Record, error) bool) {
		o.open.Add(1)
		defer o.open.Add(-1)
		for rec, err := range inner {
			if !yield(rec, err) {
				return
			}
		}
	}
}

// waitFor waits until cond holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %s", what)
		}
	}
}

// TestSharedLogDissolvesWithoutMembers: a convoy whose last member leaves
// stops reading the log (its subscription to the underlying store closes and
// its goroutine ends), whichever way that member left: it stopped taking
// records, its context ended, or it was dropped for stalling — alone, or
// after the other members left.
func TestSharedLogDissolvesWithoutMembers(t *testing.T) {
	// Each path subscribes through s at head (where the convoy forms),
	// appends records and returns once the convoy has lost its last member,
	// with the number of goroutines it left running and a func that ends them.
	type path struct {
		name string
		run  func(t *testing.T, ctx context.Context, s *eventstore.SharedLog, under eventstore.Store, head eventstore.Position) (running int, finish func())
	}
	paths := []path{
		{"the member stops taking records", func(t *testing.T, ctx context.Context, s *eventstore.SharedLog, under eventstore.Store, head eventstore.Position) (int, func()) {
			done := make(chan error, 1)
			go func() { done <- consume(ctx, s, head, eventstore.SeqPosition(head.Commit+1), nil) }()
			waitMembers(t, s, 1)
			appendN(t, under, 100)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			return 0, func() {}
		}},
		{"the member's context ends", func(t *testing.T, ctx context.Context, s *eventstore.SharedLog, under eventstore.Store, head eventstore.Position) (int, func()) {
			mctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- consume(mctx, s, head, eventstore.SeqPosition(head.Commit+1_000), nil) }()
			waitMembers(t, s, 1)
			appendN(t, under, 100)
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("member after cancel: %v, want context.Canceled", err)
			}
			return 0, func() {}
		}},
		{"the last member is dropped for stalling", func(t *testing.T, ctx context.Context, s *eventstore.SharedLog, under eventstore.Store, head eventstore.Position) (int, func()) {
			return 1, stallLast(t, ctx, s, under, head, 0)
		}},
		{"the others leave, the last is dropped for stalling", func(t *testing.T, ctx context.Context, s *eventstore.SharedLog, under eventstore.Store, head eventstore.Position) (int, func()) {
			return 1, stallLast(t, ctx, s, under, head, 2)
		}},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			under := &openSubs{Store: memory.New()}
			head := appendN(t, under, 50)
			s := eventstore.NewSharedLog(under, eventstore.SharedLogOptions{Window: 8, StallTimeout: 20 * time.Millisecond})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			before := runtime.NumGoroutine()
			running, finish := p.run(t, ctx, s, under, head)
			waitFor(t, fmt.Sprintf("%d subscriptions to the store open, want 0: the convoy without members goes on reading", under.open.Load()),
				func() bool { return under.open.Load() == 0 })
			waitFor(t, fmt.Sprintf("%d goroutines, want at most %d (%d before, %d subscribers left running)", runtime.NumGoroutine(), before+running, before, running),
				func() bool { return runtime.NumGoroutine() <= before+running })
			finish()
			waitFor(t, "subscriptions open after every subscriber ended", func() bool { return under.open.Load() == 0 })
		})
	}
}

// stallLast makes a convoy at head of one subscriber that stalls on its first
// record and `others` that each take two records and leave, then appends
// records so that the convoy fills its window and drops the stalled one. It
// returns once the convoy has no member left, with a func that lets the
// stalled subscriber go on alone and checks that it got every record.
func stallLast(t *testing.T, ctx context.Context, s *eventstore.SharedLog, under eventstore.Store, head eventstore.Position, others int) func() {
	t.Helper()
	final := eventstore.SeqPosition(head.Commit + 100)
	release := make(chan struct{})
	stalled := make(chan struct{})
	slow := make(chan error, 1)
	go func() {
		slow <- consume(ctx, s, head, final, func(rec eventstore.Record) {
			if rec.Position.Commit == head.Commit+1 {
				close(stalled)
				<-release
			}
		})
	}()
	waitMembers(t, s, 1)
	done := make(chan error, others)
	for i := range others {
		go func() { done <- consume(ctx, s, head, eventstore.SeqPosition(head.Commit+2), nil) }()
		waitMembers(t, s, 2+i)
	}
	// Two records do not fill the window: nobody is dropped before the slow
	// one stalls in the convoy and the others have left it.
	appendN(t, under, 2)
	<-stalled
	for range others {
		if err := <-done; err != nil {
			t.Fatalf("a member that leaves: %v", err)
		}
	}
	appendN(t, under, 98)
	waitMembers(t, s, 0)
	return func() {
		close(release)
		if err := <-slow; err != nil {
			t.Fatalf("the stalled subscriber after it resumed: %v", err)
		}
	}
}

// TestSharedLogLateStarterFromTheSameCheckpointJoins: a subscription that
// starts where the convoy started, after the convoy already handed out
// records (runners of one process starting a few milliseconds apart), joins
// it at its first chunk instead of reading the log alone behind it.
func TestSharedLogLateStarterFromTheSameCheckpointJoins(t *testing.T) {
	const n = 5_000
	under := &counting{Store: memory.New()}
	head := appendN(t, under, n)
	under.read.Store(0)
	s := eventstore.NewSharedLog(under, eventstore.SharedLogOptions{StallTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	started, joined := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		once := false
		first <- consume(ctx, s, eventstore.Position{}, head, func(eventstore.Record) {
			if !once {
				once = true
				close(started)
				<-joined
			}
		})
	}()
	<-started // the convoy has handed out its first record
	// The late one waits after its first record too: with the first records
	// read ahead, it could otherwise take all of them and leave before the
	// test sees it among the members.
	late := make(chan error, 1)
	go func() {
		once := false
		late <- consume(ctx, s, eventstore.Position{}, head, func(eventstore.Record) {
			if !once {
				once = true
				<-joined
			}
		})
	}()
	waitMembers(t, s, 2)
	close(joined)
	for _, ch := range []chan error{first, late} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if got := under.read.Load(); got != n {
		t.Errorf("the underlying store handed out %d records for two subscriptions from the start of %d: the late one read alone", got, n)
	}
}
