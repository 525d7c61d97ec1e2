package eventstoretest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
)

func testReadAllAfterPosition(t *testing.T, s eventstore.Store) {
	for i := range 10 {
		mustAppend(t, s, fmt.Sprintf("mid-%d", i%3), eventstore.Any, ev(fmt.Sprintf("e%d", i)))
	}
	all := readAll(t, s, eventstore.Start)
	if len(all) != 10 {
		t.Fatalf("ReadAll(Start) yielded %d records, want 10", len(all))
	}
	checkStrictlyIncreasing(t, "ReadAll", all)
	for _, from := range []int{0, 4, 9} {
		after := all[from].Position
		got := readAll(t, s, after)
		want := all[from+1:]
		if len(got) != len(want) {
			t.Fatalf("ReadAll(after %s) yielded %d records, want %d", after, len(got), len(want))
		}
		for i := range got {
			if d := diffRecord(got[i], want[i]); d != "" {
				t.Errorf("ReadAll(after %s) record %d: %s", after, i, d)
			}
		}
	}
	// A position that went through its string token reads the same.
	tok, err := eventstore.ParsePosition(all[4].Position.String())
	if err != nil {
		t.Fatalf("ParsePosition(%q): %v", all[4].Position.String(), err)
	}
	if got := readAll(t, s, tok); len(got) != 5 || got[0].ID != all[5].ID {
		t.Errorf("ReadAll after a parsed token yielded %d records, want the last 5", len(got))
	}
}

func testReadStreamFromVersion(t *testing.T, s eventstore.Store) {
	mustAppend(t, s, "other", eventstore.NoStream, ev("noise"))
	for i := range 5 {
		mustAppend(t, s, "five", eventstore.Exact(uint64(i)), ev(fmt.Sprintf("v%d", i+1)))
		mustAppend(t, s, "other", eventstore.Any, ev("noise"))
	}
	for _, tc := range []struct {
		from  uint64
		first uint64
		n     int
	}{{0, 1, 5}, {1, 1, 5}, {3, 3, 3}, {5, 5, 1}, {6, 0, 0}, {1 << 40, 0, 0}} {
		recs := mustReadStream(t, s, "five", tc.from)
		if len(recs) != tc.n {
			t.Errorf("ReadStream(from %d) yielded %d records, want %d", tc.from, len(recs), tc.n)
			continue
		}
		for i, rec := range recs {
			v := tc.first + uint64(i)
			if rec.StreamID != "five" || rec.Version != v || rec.Type != fmt.Sprintf("v%d", v) {
				t.Errorf("ReadStream(from %d) record %d: stream %q version %d type %q, want five, %d, v%d",
					tc.from, i, rec.StreamID, rec.Version, rec.Type, v, v)
			}
		}
	}

	var yields int
	var last error
	for _, err := range s.ReadStream(testContext(t), "missing", 1) {
		yields++
		last = err
	}
	if yields != 1 || !errors.Is(last, eventstore.ErrStreamNotFound) {
		t.Errorf("ReadStream of a missing stream: %d yields ending with %v, want one ErrStreamNotFound", yields, last)
	}
}

func testHead(t *testing.T, s eventstore.Store) {
	if head := mustHead(t, s); !head.IsZero() {
		t.Errorf("Head of an empty store = %s, want Start", head)
	}
	if recs := readAll(t, s, eventstore.Start); len(recs) != 0 {
		t.Errorf("ReadAll of an empty store yielded %d records", len(recs))
	}
	var prev eventstore.Position
	for i := range 5 {
		res := mustAppend(t, s, fmt.Sprintf("head-%d", i%2), eventstore.Any, ev("a"), ev("b"))
		head := mustHead(t, s)
		if head != res.Position || !prev.Before(head) {
			t.Errorf("after append %d at %s: Head = %s (previous %s)", i, res.Position, head, prev)
		}
		prev = head
	}
	if recs := readAll(t, s, prev); len(recs) != 0 {
		t.Errorf("ReadAll after the head yielded %d records", len(recs))
	}
}

// subscription consumes a Subscribe iterator in its own goroutine, which the
// test owns: it is cancelled and waited for when the test ends.
type subscription struct {
	records chan eventstore.Record
	done    chan struct{}
	err     error // why the iterator ended; read it after done is closed
	cancel  context.CancelFunc
}

func subscribe(t *testing.T, s eventstore.Store, after eventstore.Position) *subscription {
	ctx, cancel := context.WithCancel(testContext(t))
	sub := &subscription{records: make(chan eventstore.Record), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(sub.done)
		for rec, err := range s.Subscribe(ctx, after) {
			if err != nil {
				sub.err = err
				return
			}
			select {
			case sub.records <- rec:
			case <-ctx.Done():
				sub.err = ctx.Err()
				return
			}
		}
		sub.err = errors.New("the subscription ended without an error")
	}()
	t.Cleanup(func() {
		cancel()
		waitDone(t, sub.done, "a cancelled subscription")
	})
	return sub
}

// next returns the subscription's next n records, failing the test if they do
// not come within waitTimeout or the subscription ends.
func (sub *subscription) next(t *testing.T, n int) []eventstore.Record {
	t.Helper()
	recs := make([]eventstore.Record, 0, n)
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	for len(recs) < n {
		select {
		case rec := <-sub.records:
			recs = append(recs, rec)
		case <-sub.done:
			t.Fatalf("subscription ended after %d of %d records: %v", len(recs), n, sub.err)
		case <-timeout.C:
			t.Fatalf("subscription yielded %d of %d records within %v", len(recs), n, waitTimeout)
		}
	}
	return recs
}

// testSubscribe starts subscriptions before, during and after concurrent
// appends, and from the middle of the log; each must see every record once,
// in order, exactly as ReadAll does.
func testSubscribe(t *testing.T, s eventstore.Store) {
	ctx := testContext(t)
	const writers, appends = 4, 25 // one event per append
	total := writers * appends

	before := subscribe(t, s, eventstore.Start)

	var wg sync.WaitGroup
	errc := make(chan error, writers)
	halfway := make(chan struct{})
	var written atomic.Int64
	for w := range writers {
		wg.Go(func() {
			for i := range appends {
				if _, err := s.Append(ctx, fmt.Sprintf("sub-%d", w), eventstore.Exact(uint64(i)), ev("e")); err != nil {
					errc <- fmt.Errorf("writer %d append %d: %w", w, i, err)
					return
				}
				if written.Add(1) == int64(total/2) {
					close(halfway)
				}
			}
		})
	}
	select {
	case <-halfway:
	case err := <-errc:
		t.Fatal(err)
	}
	during := subscribe(t, s, eventstore.Start)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	after := subscribe(t, s, eventstore.Start)

	all := readAll(t, s, eventstore.Start)
	if len(all) != total {
		t.Fatalf("ReadAll yielded %d records, want %d", len(all), total)
	}
	middle := subscribe(t, s, all[total/3].Position)

	check := func(name string, sub *subscription, want []eventstore.Record) {
		t.Helper()
		got := sub.next(t, len(want))
		for i := range got {
			if d := diffRecord(got[i], want[i]); d != "" {
				t.Fatalf("%s subscription, record %d: %s", name, i, d)
			}
		}
	}
	check("before", before, all)
	check("during", during, all)
	check("after", after, all)
	check("middle", middle, all[total/3+1:])

	// Every subscription is now live: the next record each sees is the next
	// one appended, which proves no record came twice or out of turn.
	res := mustAppend(t, s, "sub-live", eventstore.NoStream, ev("live"))
	for name, sub := range map[string]*subscription{"before": before, "during": during, "after": after, "middle": middle} {
		if rec := sub.next(t, 1)[0]; rec.Position != res.Position || rec.StreamID != "sub-live" {
			t.Errorf("%s subscription: next record is %q version %d at %s, want sub-live at %s",
				name, rec.StreamID, rec.Version, rec.Position, res.Position)
		}
	}

	// A subscription from the head sees only what comes next.
	fromHead := subscribe(t, s, mustHead(t, s))
	res = mustAppend(t, s, "sub-live", eventstore.Exact(1), ev("live"))
	if rec := fromHead.next(t, 1)[0]; rec.Position != res.Position {
		t.Errorf("subscription from the head: first record at %s, want %s", rec.Position, res.Position)
	}
}
