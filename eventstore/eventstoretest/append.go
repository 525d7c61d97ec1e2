package eventstoretest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/eventline/eventline/eventstore"
	"github.com/google/uuid"
)

func testAppendAndRead(t *testing.T, s eventstore.Store) {
	id := uuid.New()
	created := ev("order.created")
	created.ID = id
	res := mustAppend(t, s, "order-1", eventstore.NoStream, created, ev("order.paid"))
	if res.StreamID != "order-1" || res.FirstVersion != 1 || res.LastVersion != 2 || res.Repeated {
		t.Fatalf("AppendResult = %+v, want stream order-1 versions 1 to 2, not a repeat", res)
	}
	recs := mustReadStream(t, s, "order-1", 1)
	if len(recs) != 2 {
		t.Fatalf("ReadStream yielded %d records, want 2", len(recs))
	}
	for i, rec := range recs {
		want := []string{"order.created", "order.paid"}[i]
		if rec.StreamID != "order-1" || rec.Version != uint64(i+1) || rec.Type != want ||
			string(rec.Data) != fmt.Sprintf(`{"type":%q}`, want) {
			t.Errorf("record %d = stream %q version %d type %q data %s; want order-1, %d, %s",
				i, rec.StreamID, rec.Version, rec.Type, rec.Data, i+1, want)
		}
		if rec.RecordedAt.IsZero() {
			t.Errorf("record %d has no RecordedAt", i)
		}
		if rec.Position.IsZero() {
			t.Errorf("record %d has the zero position", i)
		}
	}
	if recs[0].ID != id {
		t.Errorf("record 1 has id %s, want the caller's id %s", recs[0].ID, id)
	}
	if recs[1].ID == uuid.Nil {
		t.Errorf("record 2 has the nil id; the store must assign one")
	}
	checkStrictlyIncreasing(t, "ReadStream", recs)
	if recs[1].Position != res.Position {
		t.Errorf("AppendResult.Position = %s, but the last event is at %s", res.Position, recs[1].Position)
	}

	// The same records, identical, through ReadAll.
	all := readAll(t, s, eventstore.Start)
	if len(all) != 2 {
		t.Fatalf("ReadAll yielded %d records, want 2", len(all))
	}
	for i := range all {
		if d := diffRecord(all[i], recs[i]); d != "" {
			t.Errorf("ReadAll record %d differs from ReadStream: %s", i, d)
		}
	}
	if head := mustHead(t, s); head != res.Position {
		t.Errorf("Head = %s, want the last append's position %s", head, res.Position)
	}

	// A second append continues the stream.
	res2 := mustAppend(t, s, "order-1", eventstore.Exact(2), ev("order.shipped"))
	if res2.FirstVersion != 3 || res2.LastVersion != 3 || !res.Position.Before(res2.Position) {
		t.Errorf("second AppendResult = %+v, want version 3 after position %s", res2, res.Position)
	}
}

func testExpectedVersion(t *testing.T, s eventstore.Store) {
	cases := []struct {
		name     string
		existing int // events in the stream before the append
		expected eventstore.ExpectedVersion
		ok       bool
	}{
		{"Any/missing", 0, eventstore.Any, true},
		{"Any/existing", 2, eventstore.Any, true},
		{"NoStream/missing", 0, eventstore.NoStream, true},
		{"NoStream/existing", 2, eventstore.NoStream, false},
		{"Exact0/missing", 0, eventstore.Exact(0), true},
		{"Exact0/existing", 1, eventstore.Exact(0), false},
		{"StreamExists/missing", 0, eventstore.StreamExists, false},
		{"StreamExists/existing", 1, eventstore.StreamExists, true},
		{"Exact/match", 3, eventstore.Exact(3), true},
		{"Exact/behind", 3, eventstore.Exact(2), false},
		{"Exact/ahead", 3, eventstore.Exact(4), false},
		{"Exact/missing", 0, eventstore.Exact(1), false},
	}
	if eventstore.Exact(0) != eventstore.NoStream {
		t.Fatalf("Exact(0) = %v, want NoStream", eventstore.Exact(0))
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			stream := "expect-" + strconv.Itoa(i)
			for v := range tc.existing {
				mustAppend(t, s, stream, eventstore.Exact(uint64(v)), ev("seed"))
			}
			head := mustHead(t, s)
			res, err := s.Append(ctx, stream, tc.expected, ev("attempt"))
			if tc.ok {
				if err != nil {
					t.Fatalf("Append with %v on a stream of %d events: %v", tc.expected, tc.existing, err)
				}
				if want := uint64(tc.existing + 1); res.FirstVersion != want || res.LastVersion != want {
					t.Fatalf("AppendResult = %+v, want version %d", res, want)
				}
				return
			}
			if !errors.Is(err, eventstore.ErrWrongVersion) {
				t.Fatalf("Append with %v on a stream of %d events: err = %v, want ErrWrongVersion",
					tc.expected, tc.existing, err)
			}
			var wv *eventstore.WrongVersionError
			if !errors.As(err, &wv) {
				t.Fatalf("error %v (%T) is not a *WrongVersionError", err, err)
			}
			if wv.StreamID != stream || wv.Expected != tc.expected || wv.Actual != uint64(tc.existing) {
				t.Errorf("WrongVersionError = stream %q expected %v actual %d; want %q, %v, %d",
					wv.StreamID, wv.Expected, wv.Actual, stream, tc.expected, tc.existing)
			}
			if got := mustHead(t, s); got != head {
				t.Errorf("a refused append moved the head from %s to %s", head, got)
			}
			recs, _ := readStream(t, s, stream, 1)
			if len(recs) != tc.existing {
				t.Errorf("after a refused append the stream has %d events, want %d", len(recs), tc.existing)
			}
		})
	}
}

// testAppendNoEvents checks the rule on AppendResult: an append of no events
// checks the expectation, writes nothing, and reports the stream's version.
func testAppendNoEvents(t *testing.T, s eventstore.Store) {
	ctx := testContext(t)
	res, err := s.Append(ctx, "empty", eventstore.NoStream)
	if err != nil {
		t.Fatalf("Append of no events to a missing stream: %v", err)
	}
	if res.FirstVersion != 0 || res.LastVersion != 0 || res.Repeated {
		t.Errorf("AppendResult = %+v, want versions 0, not a repeat", res)
	}
	if _, err := s.Append(ctx, "empty", eventstore.StreamExists); !errors.Is(err, eventstore.ErrWrongVersion) {
		t.Errorf("Append of no events with StreamExists to a missing stream: err = %v, want ErrWrongVersion", err)
	}
	last := mustAppend(t, s, "full", eventstore.NoStream, ev("a"), ev("b"))
	res, err = s.Append(ctx, "full", eventstore.Exact(2))
	if err != nil {
		t.Fatalf("Append of no events with the right version: %v", err)
	}
	if res.FirstVersion != 2 || res.LastVersion != 2 || res.Repeated {
		t.Errorf("AppendResult = %+v, want versions 2, not a repeat", res)
	}
	if _, err := s.Append(ctx, "full", eventstore.Exact(1)); !errors.Is(err, eventstore.ErrWrongVersion) {
		t.Errorf("Append of no events with a wrong version: err = %v, want ErrWrongVersion", err)
	}
	if head := mustHead(t, s); head != last.Position {
		t.Errorf("appends of no events moved the head from %s to %s", last.Position, head)
	}
	if _, err := readStream(t, s, "empty", 1); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("an append of no events created the stream: ReadStream err = %v, want ErrStreamNotFound", err)
	}
}

// Racers and rounds of testRacingExactAppends: enough contention to expose a
// lost update, few enough rounds to stay quick under -race.
const (
	racers      = 64
	raceVersion = 24
)

// testRacingExactAppends races goroutines appending to one stream, each
// always expecting the version it last saw. Exactly one must win each version.
func testRacingExactAppends(t *testing.T, s eventstore.Store) {
	ctx := testContext(t)
	const stream = "race"
	type win struct {
		racer int
		res   eventstore.AppendResult
	}
	var (
		mu   sync.Mutex
		wins []win
		errs []error
		wg   sync.WaitGroup
	)
	start := make(chan struct{})
	for r := range racers {
		wg.Go(func() {
			<-start
			for v := uint64(0); v < raceVersion; {
				e := ev("raced")
				e.Data = fmt.Appendf(nil, `{"racer":%d,"expected":%d}`, r, v)
				res, err := s.Append(ctx, stream, eventstore.Exact(v), e)
				var wv *eventstore.WrongVersionError
				switch {
				case err == nil:
					mu.Lock()
					wins = append(wins, win{r, res})
					mu.Unlock()
					v++
				case errors.As(err, &wv) && wv.Actual > v:
					v = wv.Actual
				default:
					mu.Lock()
					errs = append(errs, fmt.Errorf("racer %d expecting %d: %w", r, v, err))
					mu.Unlock()
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}

	if len(wins) != raceVersion {
		t.Errorf("%d appends succeeded, want exactly %d (one per version)", len(wins), raceVersion)
	}
	winner := map[uint64]win{}
	for _, w := range wins {
		if w.res.FirstVersion != w.res.LastVersion {
			t.Errorf("racer %d: AppendResult %+v spans several versions for one event", w.racer, w.res)
		}
		if other, dup := winner[w.res.FirstVersion]; dup {
			t.Errorf("version %d won by both racer %d and racer %d", w.res.FirstVersion, other.racer, w.racer)
		}
		winner[w.res.FirstVersion] = w
	}
	recs := mustReadStream(t, s, stream, 1)
	if len(recs) != raceVersion {
		t.Fatalf("stream has %d events, want %d", len(recs), raceVersion)
	}
	ids := map[uuid.UUID]bool{}
	for i, rec := range recs {
		if rec.Version != uint64(i+1) {
			t.Fatalf("event %d has version %d: a gap or a duplicate", i, rec.Version)
		}
		if ids[rec.ID] {
			t.Fatalf("event id %s appears twice", rec.ID)
		}
		ids[rec.ID] = true
		w, ok := winner[rec.Version]
		want := fmt.Sprintf(`{"racer":%d,"expected":%d}`, w.racer, rec.Version-1)
		if !ok || string(rec.Data) != want || w.res.Position != rec.Position {
			t.Errorf("version %d holds %s at %s; the winning append reported racer %d at %s",
				rec.Version, rec.Data, rec.Position, w.racer, w.res.Position)
		}
	}
	checkStrictlyIncreasing(t, "ReadStream of the raced stream", recs)
}

// testConcurrentWritersGlobalOrder runs writers on their own streams and on a
// shared one while a reader follows the log, and checks the global order.
func testConcurrentWritersGlobalOrder(t *testing.T, s eventstore.Store) {
	ctx := testContext(t)
	const writers, appends, perAppend = 8, 30, 2
	type appended struct {
		res eventstore.AppendResult
		ids []uuid.UUID
	}
	results := make([][]appended, writers)
	errc := make(chan error, writers+1)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			<-start
			for i := range appends {
				stream := fmt.Sprintf("writer-%d", w)
				if i%3 == 0 {
					stream = "shared"
				}
				events := make([]eventstore.Event, perAppend)
				a := appended{ids: make([]uuid.UUID, perAppend)}
				for k := range events {
					events[k] = ev(fmt.Sprintf("w%d.a%d.e%d", w, i, k))
					events[k].ID = uuid.New()
					a.ids[k] = events[k].ID
				}
				res, err := s.Append(ctx, stream, eventstore.Any, events...)
				if err != nil {
					errc <- fmt.Errorf("writer %d append %d: %w", w, i, err)
					return
				}
				// Once Append returned, its events must be visible.
				head, err := s.Head(ctx)
				if err != nil || head.Before(res.Position) {
					errc <- fmt.Errorf("writer %d: Head = %s, %v right after an append at %s", w, head, err, res.Position)
					return
				}
				a.res = res
				results[w] = append(results[w], a)
			}
		})
	}

	// A reader following the log while it grows never sees a position at or
	// below one it has seen.
	stopReader := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		var last eventstore.Position
		for {
			select {
			case <-stopReader:
				return
			default:
			}
			for rec, err := range s.ReadAll(ctx, last) {
				if err != nil {
					errc <- fmt.Errorf("following reader: %w", err)
					return
				}
				if !last.Before(rec.Position) {
					errc <- fmt.Errorf("following reader saw position %s after %s", rec.Position, last)
					return
				}
				last = rec.Position
			}
		}
	}()
	close(start)
	wg.Wait()
	close(stopReader)
	waitDone(t, readerDone, "the following reader")
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	all := readAll(t, s, eventstore.Start)
	if want := writers * appends * perAppend; len(all) != want {
		t.Fatalf("ReadAll yielded %d records, want %d", len(all), want)
	}
	checkStrictlyIncreasing(t, "ReadAll", all)
	byID := map[uuid.UUID]eventstore.Record{}
	versions := map[string]uint64{}
	for _, rec := range all {
		if _, dup := byID[rec.ID]; dup {
			t.Fatalf("event id %s appears twice in the log", rec.ID)
		}
		byID[rec.ID] = rec
		if rec.Version != versions[rec.StreamID]+1 {
			t.Fatalf("stream %q: version %d follows %d in the global log", rec.StreamID, rec.Version, versions[rec.StreamID])
		}
		versions[rec.StreamID] = rec.Version
	}
	for w := range writers {
		for i, a := range results[w] {
			for k, id := range a.ids {
				rec, ok := byID[id]
				switch {
				case !ok:
					t.Fatalf("writer %d append %d: event %s is not in the log", w, i, id)
				case rec.StreamID != a.res.StreamID || rec.Version != a.res.FirstVersion+uint64(k):
					t.Errorf("writer %d append %d event %d: stream %q version %d, AppendResult %+v",
						w, i, k, rec.StreamID, rec.Version, a.res)
				case k == perAppend-1 && rec.Position != a.res.Position:
					t.Errorf("writer %d append %d: AppendResult.Position %s, last event at %s", w, i, a.res.Position, rec.Position)
				}
			}
		}
	}
	if head := mustHead(t, s); head != all[len(all)-1].Position {
		t.Errorf("Head = %s, want the last record's position %s", head, all[len(all)-1].Position)
	}
	for stream, v := range versions {
		if recs := mustReadStream(t, s, stream, 1); uint64(len(recs)) != v {
			t.Errorf("ReadStream(%q) yielded %d events, the log holds %d", stream, len(recs), v)
		}
	}
}

func testIdempotentAppend(t *testing.T, s eventstore.Store, o options) {
	ctx := testContext(t)
	a, b, c := withID(ev("a")), withID(ev("b")), withID(ev("c"))
	first := mustAppend(t, s, "idem", eventstore.NoStream, a, b)
	if first.Repeated {
		t.Errorf("the append that wrote the events returned Repeated: %+v", first)
	}

	// checkRepeat fails the test unless again is first's result as a repeat.
	checkRepeat := func(what string, again eventstore.AppendResult, err error, first eventstore.AppendResult) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
		} else if want := o.repeated(again, first); again != want {
			t.Errorf("%s returned %+v, want the original result as a repeat: %+v", what, again, want)
		}
	}
	for _, expected := range []eventstore.ExpectedVersion{eventstore.NoStream, eventstore.Exact(0)} {
		again, err := s.Append(ctx, "idem", expected, a, b)
		checkRepeat(fmt.Sprintf("repeating an append with %v", expected), again, err, first)
	}
	if head := mustHead(t, s); head != first.Position {
		t.Errorf("a repeated append moved the head from %s to %s", first.Position, head)
	}

	// Still a repeat once the stream has moved on, and with an exact version.
	second := mustAppend(t, s, "idem", eventstore.Exact(2), c)
	if second.Repeated {
		t.Errorf("an append of a new event returned Repeated: %+v", second)
	}
	again, err := s.Append(ctx, "idem", eventstore.NoStream, a, b)
	checkRepeat("repeat after the stream moved on", again, err, first)
	again, err = s.Append(ctx, "idem", eventstore.Exact(2), c)
	checkRepeat("repeat of an Exact(2) append", again, err, second)

	// Any: a repeat is recognised by its ids alone.
	d := withID(ev("d"))
	third := mustAppend(t, s, "idem-any", eventstore.Any, d)
	if third.Repeated {
		t.Errorf("an append with Any returned Repeated: %+v", third)
	}
	again, err = s.Append(ctx, "idem-any", eventstore.Any, d)
	checkRepeat("repeat of an Any append", again, err, third)

	head := mustHead(t, s)
	if recs := mustReadStream(t, s, "idem", 1); len(recs) != 3 {
		t.Errorf("stream idem has %d events, want 3", len(recs))
	}
	if all := readAll(t, s, eventstore.Start); len(all) != 4 {
		t.Errorf("log has %d records, want 4", len(all))
	}
	if got := mustHead(t, s); got != head {
		t.Errorf("head moved from %s to %s", head, got)
	}
}

// testRepeatKeepsStoredEvents repeats appends with the ids of stored events
// but other types, data and metadata, as a second process that decided
// differently would: the store writes nothing, keeps what the first append
// wrote, and says Repeated, so that the caller does not take its own events
// for the stored ones.
func testRepeatKeepsStoredEvents(t *testing.T, s eventstore.Store) {
	ctx := testContext(t)
	mustAppend(t, s, "kept", eventstore.NoStream, ev("opened"))
	a, b := withID(ev("a")), withID(ev("b"))
	a.Metadata = eventstore.Metadata{CorrelationID: "first", Headers: map[string]string{"command": "deposit 5"}}
	first := mustAppend(t, s, "kept", eventstore.Exact(1), a, b)
	if first.Repeated {
		t.Errorf("the append that wrote the events returned Repeated: %+v", first)
	}
	stored := mustReadStream(t, s, "kept", 1)
	head := mustHead(t, s)

	other := func(e eventstore.Event, typ, data string) eventstore.Event {
		e.Type, e.Data = typ, []byte(data)
		e.Metadata = eventstore.Metadata{CorrelationID: "second", Headers: map[string]string{"command": "deposit 500"}}
		return e
	}
	cases := []struct {
		name     string
		expected eventstore.ExpectedVersion
		events   []eventstore.Event
	}{
		{"other data", eventstore.Exact(1), []eventstore.Event{other(a, "a", `{"amount":500}`), other(b, "b", `{}`)}},
		{"other types", eventstore.Exact(1), []eventstore.Event{other(a, "x", `{"type":"a"}`), other(b, "y", `{"type":"b"}`)}},
		{"other metadata only", eventstore.Exact(1), []eventstore.Event{other(a, a.Type, string(a.Data)), other(b, b.Type, string(b.Data))}},
		{"other data, Any", eventstore.Any, []eventstore.Event{other(a, "a", `[1]`), other(b, "b", `[2]`)}},
	}
	for _, tc := range cases {
		res, err := s.Append(ctx, "kept", tc.expected, tc.events...)
		want := first
		want.Repeated = true
		if err != nil || res != want {
			t.Errorf("%s: repeat = %+v, %v; want %+v", tc.name, res, err, want)
		}
	}
	if got := mustHead(t, s); got != head {
		t.Errorf("repeats moved the head from %s to %s", head, got)
	}
	after := mustReadStream(t, s, "kept", 1)
	if len(after) != len(stored) {
		t.Fatalf("stream holds %d events after the repeats, %d before", len(after), len(stored))
	}
	for i := range after {
		if d := diffRecord(after[i], stored[i]); d != "" {
			t.Errorf("event %d changed by a repeat: %s", i+1, d)
		}
	}
	if all := readAll(t, s, eventstore.Start); len(all) != 3 {
		t.Errorf("log holds %d records, want 3", len(all))
	}
}

// testConcurrentIdempotentAppend sends one append from many goroutines at
// once, as retries racing each other: one writes, the rest are repeats.
func testConcurrentIdempotentAppend(t *testing.T, s eventstore.Store, o options) {
	ctx := testContext(t)
	events := []eventstore.Event{withID(ev("x")), withID(ev("y"))}
	const callers = 16
	results := make([]eventstore.AppendResult, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range callers {
		wg.Go(func() {
			<-start
			results[i], errs[i] = s.Append(ctx, "retried", eventstore.NoStream, events...)
		})
	}
	close(start)
	wg.Wait()
	wrote := 0
	for i := range callers {
		if errs[i] != nil {
			t.Errorf("caller %d: %v", i, errs[i])
			continue
		}
		if !results[i].Repeated {
			wrote++
		}
		got, want := results[i], results[0]
		got.Repeated, want.Repeated = false, false
		if got != want {
			t.Errorf("caller %d got %+v, caller 0 got %+v", i, results[i], results[0])
		}
	}
	if wrote != 1 && !(o.identicalRepeatsUnreported && wrote >= 1) {
		t.Errorf("%d callers got Repeated false, want exactly 1 (the one that wrote)", wrote)
	}
	recs := mustReadStream(t, s, "retried", 1)
	if len(recs) != 2 || recs[0].ID != events[0].ID || recs[1].ID != events[1].ID {
		t.Errorf("stream holds %d events, want exactly the 2 appended", len(recs))
	}
}

func testDuplicateEventID(t *testing.T, s eventstore.Store) {
	ctx := testContext(t)
	a, b, c := withID(ev("a")), withID(ev("b")), withID(ev("c"))
	first := mustAppend(t, s, "dup", eventstore.NoStream, a, b)

	cases := []struct {
		name     string
		stream   string
		expected eventstore.ExpectedVersion
		events   []eventstore.Event
	}{
		{"partial overlap", "dup", eventstore.Exact(2), []eventstore.Event{b, c}},
		{"partial overlap, Any", "dup", eventstore.Any, []eventstore.Event{c, a}},
		{"other stream", "dup-other", eventstore.NoStream, []eventstore.Event{a, b}},
		{"within one append", "dup-self", eventstore.NoStream, []eventstore.Event{c, c}},
	}
	for _, tc := range cases {
		if _, err := s.Append(ctx, tc.stream, tc.expected, tc.events...); !errors.Is(err, eventstore.ErrDuplicateEvent) {
			t.Errorf("%s: err = %v, want ErrDuplicateEvent", tc.name, err)
		}
	}
	if head := mustHead(t, s); head != first.Position {
		t.Errorf("refused appends moved the head from %s to %s", first.Position, head)
	}
	// c was never written: it can still be appended.
	if res, err := s.Append(ctx, "dup", eventstore.Exact(2), c); err != nil || res.FirstVersion != 3 {
		t.Errorf("appending the new event after the refusals = %+v, %v; want version 3", res, err)
	}
}

func withID(e eventstore.Event) eventstore.Event {
	e.ID = uuid.New()
	return e
}

func testInvalidInput(t *testing.T, s eventstore.Store) {
	ctx := testContext(t)
	long := make([]byte, eventstore.MaxStreamIDLen+1)
	for i := range long {
		long[i] = 'a'
	}
	for _, id := range []string{"", "$system", "has space", "tab\there", "new\nline", "\xff\xfe", string(long)} {
		_, err := s.Append(ctx, id, eventstore.Any, ev("a"))
		if !errors.Is(err, eventstore.ErrInvalidStreamID) {
			t.Errorf("Append to stream %.40q: err = %v, want ErrInvalidStreamID", id, err)
		}
		_, err = readStream(t, s, id, 1)
		if !errors.Is(err, eventstore.ErrInvalidStreamID) && !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Errorf("ReadStream of %.40q: err = %v, want ErrInvalidStreamID or ErrStreamNotFound", id, err)
		}
	}
	if _, err := s.Append(ctx, string(long[:eventstore.MaxStreamIDLen]), eventstore.NoStream, ev("a")); err != nil {
		t.Errorf("Append to a stream id of exactly %d bytes: %v", eventstore.MaxStreamIDLen, err)
	}
	head := mustHead(t, s)

	badTypes := map[string]string{"empty": "", "too long": string(long[:eventstore.MaxTypeLen+1]), "not UTF-8": "\xff"}
	for name, typ := range badTypes {
		// The bad event comes second: nothing of the append may be written.
		_, err := s.Append(ctx, "typed", eventstore.Any, ev("fine"), eventstore.Event{Type: typ, Data: []byte(`{}`)})
		if !errors.Is(err, eventstore.ErrInvalidEvent) {
			t.Errorf("Append of an event with a %s type: err = %v, want ErrInvalidEvent", name, err)
		} else if !strings.Contains(err.Error(), "typed") {
			t.Errorf("error %q does not name the stream", err)
		}
	}
	if got := mustHead(t, s); got != head {
		t.Errorf("refused appends moved the head from %s to %s", head, got)
	}
}

func testPayloads(t *testing.T, s eventstore.Store) {
	large := make([]byte, 1<<20)
	// A cheap deterministic pattern covering every byte value, not valid JSON.
	for i := range large {
		large[i] = byte(i*7 + i>>8)
	}
	events := []eventstore.Event{
		{Type: "large", Data: large},
		{Type: "nil-data"},
		{Type: "empty-data", Data: []byte{}},
		{Type: "unicode", Data: []byte(`{"name":"Zoë 日本 \u0000"}`)},
	}
	sent := slicesCloneData(events)
	mustAppend(t, s, "payloads", eventstore.NoStream, events...)
	// The store must have copied the data: the caller may reuse its buffers.
	large[0]++

	check := func(what string, recs []eventstore.Record) {
		t.Helper()
		if len(recs) != len(sent) {
			t.Fatalf("%s yielded %d records, want %d", what, len(recs), len(sent))
		}
		for i, rec := range recs {
			if rec.Type != sent[i].Type || !bytes.Equal(rec.Data, sent[i].Data) {
				t.Errorf("%s record %d: type %q with %d bytes of data, want %q with %d bytes",
					what, i, rec.Type, len(rec.Data), sent[i].Type, len(sent[i].Data))
			}
		}
	}
	check("ReadStream", mustReadStream(t, s, "payloads", 1))
	recs := readAll(t, s, eventstore.Start)
	check("ReadAll", recs)

	// Nor may a reader change the store by writing into what it was given.
	recs[0].Data[0]++
	check("ReadAll after a caller changed a record it read", readAll(t, s, eventstore.Start))
}

func slicesCloneData(events []eventstore.Event) []eventstore.Event {
	out := make([]eventstore.Event, len(events))
	for i, e := range events {
		out[i] = e
		out[i].Data = bytes.Clone(e.Data)
	}
	return out
}

func testMetadata(t *testing.T, s eventstore.Store) {
	full := withID(ev("with-metadata"))
	full.Metadata = eventstore.Metadata{
		CorrelationID: "corr-" + uuid.NewString(),
		CausationID:   "cause-" + uuid.NewString(),
		Headers:       map[string]string{"tenant": "acme", "user": "Zoë", "empty": "", "with space": "a b"},
	}
	causedOnly := withID(ev("caused-only"))
	causedOnly.Metadata.CausationID = full.ID.String()
	bare := withID(ev("bare"))
	sent := []eventstore.Event{full, causedOnly, bare}
	mustAppend(t, s, "meta", eventstore.NoStream, sent...)
	// The store must have copied the headers.
	full.Metadata.Headers["tenant"] = "changed"

	want := []eventstore.Metadata{
		{CorrelationID: full.Metadata.CorrelationID, CausationID: full.Metadata.CausationID,
			Headers: map[string]string{"tenant": "acme", "user": "Zoë", "empty": "", "with space": "a b"}},
		causedOnly.Metadata,
		{},
	}
	for _, read := range []struct {
		name string
		recs []eventstore.Record
	}{
		{"ReadStream", mustReadStream(t, s, "meta", 1)},
		{"ReadAll", readAll(t, s, eventstore.Start)},
	} {
		if len(read.recs) != len(want) {
			t.Fatalf("%s yielded %d records, want %d", read.name, len(read.recs), len(want))
		}
		for i, rec := range read.recs {
			if rec.ID != sent[i].ID {
				t.Errorf("%s record %d: id %s, want %s", read.name, i, rec.ID, sent[i].ID)
			}
			if d := diffMetadata(rec.Metadata, want[i]); d != "" {
				t.Errorf("%s record %d: %s", read.name, i, d)
			}
		}
	}
	// Nor may a reader change the store through a map it was given.
	if h := mustReadStream(t, s, "meta", 1)[0].Metadata.Headers; h != nil {
		h["tenant"] = "changed by a reader"
	}
	if h := readAll(t, s, eventstore.Start)[0].Metadata.Headers; h != nil {
		h["tenant"] = "changed by a reader"
	}
	if got := mustReadStream(t, s, "meta", 1)[0].Metadata.Headers["tenant"]; got != "acme" {
		t.Errorf("header tenant = %q after callers changed their maps, want acme", got)
	}
}

// appendMany writes n events to stream in appends of up to 100 events.
func appendMany(t *testing.T, s eventstore.Store, stream string, n int) {
	t.Helper()
	for done := 0; done < n; {
		k := min(100, n-done)
		events := make([]eventstore.Event, k)
		for i := range events {
			events[i] = ev("bulk")
		}
		mustAppend(t, s, stream, eventstore.Any, events...)
		done += k
	}
}

// cancelled returns a context that is already cancelled.
func cancelled(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(testContext(t))
	cancel()
	return ctx
}
