package projection

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/eventline/eventline/eventstore"
)

type lines struct{ Items []int }

type other struct{ N int }

// kept returns the decoding d keeps for the record at pos, nil if none.
func (d *SharedDecoding) kept(pos eventstore.Position) *decoded {
	if e := d.slotOf(pos).Load(); e != nil && e.pos == pos {
		return e
	}
	return nil
}

// count returns how many decodings d keeps.
func (d *SharedDecoding) count() int {
	n := 0
	for i := range d.slots {
		if d.slots[i].Load() != nil {
			n++
		}
	}
	return n
}

// r2 alternates between two routers.
func r2(a, b *Router, i int) *Router {
	if i%2 == 0 {
		return a
	}
	return b
}

// TestSharedDecodingDecodesOnce: Routers sharing a SharedDecoding hand the
// same decoded event to their handlers (its slice is one allocation), while
// Routers of their own decode it each; a record at a known position but of
// another type (another log) is decoded afresh.
func TestSharedDecodingDecodesOnce(t *testing.T) {
	ctx := context.Background()
	reg := eventstore.NewRegistry()
	eventstore.Register[lines](reg, "lines")
	eventstore.Register[other](reg, "other")
	var mu sync.Mutex
	var seen []*int
	route := func(r *Router) *Router {
		Handle(r, func(_ context.Context, _ *Tx, _ eventstore.Record, e lines) error {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, &e.Items[0])
			return nil
		})
		Handle(r, func(_ context.Context, _ *Tx, _ eventstore.Record, e other) error {
			if e.N != 5 {
				t.Errorf("other decoded as %+v, want N 5", e)
			}
			return nil
		})
		return r
	}
	rec := eventstore.Record{Event: eventstore.Event{Type: "lines", Data: []byte(`{"Items":[1,2]}`)}, Position: eventstore.SeqPosition(3)}
	d := NewSharedDecoding(reg)
	a, b := route(NewSharedRouter(d)), route(NewSharedRouter(d))
	alone := route(NewRouter(reg))
	for _, r := range []*Router{a, b, alone} {
		if err := r.Apply(ctx, &Tx{}, rec); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != 3 || seen[0] != seen[1] || seen[2] == seen[0] {
		t.Errorf("items at %v: want the shared routers to see one decoding and the lone router its own", seen)
	}
	// Concurrent use, as runners on their goroutines (checked by -race).
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 100 {
				r := eventstore.Record{Event: rec.Event, Position: eventstore.SeqPosition(uint64(100_000 + i))}
				if err := r2(a, b, w+i).Apply(ctx, &Tx{}, r); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	again := eventstore.Record{Event: eventstore.Event{Type: "other", Data: []byte(`{"N":5}`)}, Position: rec.Position}
	if err := a.Apply(ctx, &Tx{}, again); err != nil {
		t.Fatal(err)
	}
	// The cache is bounded: far more records than it keeps leave it at its size.
	for i := range 3 * sharedDecodings {
		r := eventstore.Record{Event: eventstore.Event{Type: "other", Data: []byte(`{"N":5}`)}, Position: eventstore.SeqPosition(uint64(10 + i))}
		if err := b.Apply(ctx, &Tx{}, r); err != nil {
			t.Fatal(err)
		}
	}
	if n := d.count(); n != sharedDecodings {
		t.Errorf("%d decodings kept, want %d", n, sharedDecodings)
	}
}

// TestPredecodedRecordServesOneApply: a lone Router's record decoded ahead
// of Apply (the runner's read-ahead) is what the next Apply gets, and only
// that one: a retried batch decodes afresh, so a handler that changed its
// event cannot see the change again.
func TestPredecodedRecordServesOneApply(t *testing.T) {
	ctx := context.Background()
	reg := eventstore.NewRegistry()
	eventstore.Register[lines](reg, "lines")
	r := NewRouter(reg)
	var seen []*int
	Handle(r, func(_ context.Context, _ *Tx, _ eventstore.Record, e lines) error {
		seen = append(seen, &e.Items[0])
		return nil
	})
	p := r.Projection("lines", 1)
	pd, ok := p.(predecoder)
	if !ok {
		t.Fatal("a Router's projection does not decode ahead")
	}
	rec := eventstore.Record{Event: eventstore.Event{Type: "lines", Data: []byte(`{"Items":[1,2]}`)}, Position: eventstore.SeqPosition(7)}
	pd.predecode(rec)
	ahead := r.shared.kept(rec.Position)
	if ahead == nil {
		t.Fatal("predecode kept nothing")
	}
	for range 2 {
		if err := p.Apply(ctx, &Tx{}, rec); err != nil {
			t.Fatal(err)
		}
	}
	if want := &ahead.v.(lines).Items[0]; seen[0] != want || seen[1] == want {
		t.Errorf("applies saw %v, want the decoding made ahead (%p) once, then a new one", seen, want)
	}
	if n := r.shared.count(); n != 0 {
		t.Errorf("%d decodings kept after Apply, want none", n)
	}
}

// versioned is a deployment's wrapper that changes a model's version.
type versioned struct{ Projection }

func (v versioned) Version() int       { return v.Projection.Version() + 1 }
func (v versioned) Unwrap() Projection { return v.Projection }

// looping unwraps to itself.
type looping struct{ Projection }

func (l *looping) Unwrap() Projection { return l }

// TestPredecodeThroughWrappers: the runner decodes ahead for a Router's
// projection inside Partitioned and inside a Wrapper, and for nothing else.
func TestPredecodeThroughWrappers(t *testing.T) {
	reg := eventstore.NewRegistry()
	eventstore.Register[lines](reg, "lines")
	r := NewRouter(reg)
	Handle(r, func(context.Context, *Tx, eventstore.Record, lines) error { return nil })
	p := r.Projection("lines", 1)
	rec := eventstore.Record{Event: eventstore.Event{Type: "lines", Data: []byte(`{"Items":[1]}`)}, Position: eventstore.SeqPosition(9)}
	for _, w := range []Projection{p, Partitioned(p, 4, nil), versioned{Partitioned(p, 2, nil)}} {
		pd, ok := predecoderOf(w)
		if !ok {
			t.Fatalf("%T: no decoding ahead found", w)
		}
		pd.predecode(rec)
		if r.shared.kept(rec.Position) == nil {
			t.Fatalf("%T: predecode kept nothing", w)
		}
		r.shared.slotOf(rec.Position).Store(nil)
	}
	plain := Define("plain", 1, func(context.Context, *Tx, eventstore.Record) error { return nil })
	for _, w := range []Projection{plain, versioned{plain}, &looping{plain}, versioned{nil}} {
		if _, ok := predecoderOf(w); ok {
			t.Errorf("%T: decoding ahead found where there is none", w)
		}
	}
}

// TestSharedDecodingSharesNoSlotBetweenPositions: records whose positions
// fall in one slot of the cache (a window apart, or of a log with two-part
// positions) each get their own decoding, however they take turns.
func TestSharedDecodingSharesNoSlotBetweenPositions(t *testing.T) {
	ctx := context.Background()
	reg := eventstore.NewRegistry()
	eventstore.Register[other](reg, "other")
	var got []int
	d := NewSharedDecoding(reg)
	r := NewSharedRouter(d)
	Handle(r, func(_ context.Context, _ *Tx, _ eventstore.Record, e other) error {
		got = append(got, e.N)
		return nil
	})
	rec := func(n int, pos eventstore.Position) eventstore.Record {
		return eventstore.Record{Event: eventstore.Event{Type: "other", Data: []byte(`{"N":` + strconv.Itoa(n) + `}`)}, Position: pos}
	}
	recs := []eventstore.Record{
		rec(1, eventstore.SeqPosition(5)),
		rec(2, eventstore.SeqPosition(5+sharedDecodings)),
		// The prepare part a window away from the commit part mixes to
		// nothing in the slot's bits: the same slot as the first two.
		rec(3, eventstore.Position{Commit: 5, Prepare: 5 + sharedDecodings}),
	}
	for _, rc := range recs[1:] {
		if d.slotOf(rc.Position) != d.slotOf(recs[0].Position) {
			t.Fatalf("position %s is not in the slot of %s: the test would not test sharing", rc.Position, recs[0].Position)
		}
	}
	for _, i := range []int{0, 1, 0, 2, 1, 2, 0} {
		if err := r.Apply(ctx, &Tx{}, recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if want := []int{1, 2, 1, 3, 2, 3, 1}; !slices.Equal(got, want) {
		t.Errorf("handlers saw %v, want %v", got, want)
	}
}
