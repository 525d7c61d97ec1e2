package eventstoretest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"runtime"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
)

// Run runs the whole contract suite as subtests. newStore returns a fresh,
// empty store for each subtest and registers its own cleanup with t.Cleanup.
//
// Subtests do not run in parallel: some count goroutines to find leaks.
//
// Options declare documented differences of a backend; without any, a backend
// must pass every subtest.
func Run(t *testing.T, newStore func(t *testing.T) eventstore.Store, opts ...Option) {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, newStore func(t *testing.T) eventstore.Store)
	}{
		{"AppendAndRead", withStore(testAppendAndRead)},
		{"ExpectedVersion", withStore(testExpectedVersion)},
		{"AppendNoEvents", withStore(testAppendNoEvents)},
		{"RacingExactAppends", withStore(testRacingExactAppends)},
		{"ConcurrentWritersGlobalOrder", withStore(testConcurrentWritersGlobalOrder)},
		{"Subscribe", withStore(testSubscribe)},
		{"ReadAllAfterPosition", withStore(testReadAllAfterPosition)},
		{"ReadStreamFromVersion", withStore(testReadStreamFromVersion)},
		{"Head", withStore(testHead)},
		{"IdempotentAppend", withStore(func(t *testing.T, s eventstore.Store) { testIdempotentAppend(t, s, o) })},
		{"ConcurrentIdempotentAppend", withStore(func(t *testing.T, s eventstore.Store) { testConcurrentIdempotentAppend(t, s, o) })},
		{"RepeatKeepsStoredEvents", withStore(testRepeatKeepsStoredEvents)},
		{"DuplicateEventID", withStore(testDuplicateEventID)},
		{"Payloads", withStore(testPayloads)},
		{"Metadata", withStore(testMetadata)},
		{"InvalidInput", withStore(testInvalidInput)},
		{"Cancellation", withStore(testCancellation)},
		{"Close", testClose},
		{"CloseDuringAppends", testCloseDuringAppends},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if why, skip := o.skip[tc.name]; skip {
				t.Skipf("backend declares: %s", why)
			}
			tc.fn(t, newStore)
		})
	}
}

// Option declares a documented difference of a backend from the full contract.
type Option func(*options)

type options struct {
	skip map[string]string
	// identicalRepeatsUnreported: see IdenticalRepeatsUnreported.
	identicalRepeatsUnreported bool
}

// PerStreamEventIDs declares that the backend, like EventStoreDB, checks event
// ids only within a stream: an id reused on another stream is written again
// instead of failing with ErrDuplicateEvent. The DuplicateEventID subtest is
// skipped with that reason; idempotent re-appends are still tested.
func PerStreamEventIDs() Option {
	return func(o *options) {
		if o.skip == nil {
			o.skip = map[string]string{}
		}
		o.skip["DuplicateEventID"] = "event ids are unique per stream only (PerStreamEventIDs)"
	}
}

// IdenticalRepeatsUnreported declares that the backend, like EventStoreDB,
// cannot tell an append that repeats the very events an earlier append wrote
// (same ids, types, data and metadata) from the append that wrote them: its
// reply is the same. Such a repeat may return Repeated false; since what the
// stream holds is exactly what the caller gave, a caller that trusts its own
// events is still right. A repeat whose events differ from the stored ones
// must still set Repeated (subtest RepeatKeepsStoredEvents).
func IdenticalRepeatsUnreported() Option {
	return func(o *options) { o.identicalRepeatsUnreported = true }
}

// repeated returns res as a repeat of an append that returned first: first's
// versions and position with Repeated set, or with res's Repeated when the
// backend may leave identical repeats unreported.
func (o options) repeated(res, first eventstore.AppendResult) eventstore.AppendResult {
	first.Repeated = true
	if o.identicalRepeatsUnreported {
		first.Repeated = res.Repeated
	}
	return first
}

func withStore(fn func(t *testing.T, s eventstore.Store)) func(*testing.T, func(*testing.T) eventstore.Store) {
	return func(t *testing.T, newStore func(*testing.T) eventstore.Store) { fn(t, newStore(t)) }
}

// testTimeout bounds every subtest, so that a backend that hangs fails the
// suite with a message instead of stalling it until the go test timeout.
const testTimeout = 60 * time.Second

// waitTimeout bounds each wait for a condition that should hold promptly, such
// as a cancelled iterator ending or goroutines exiting.
const waitTimeout = 10 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// ev returns an event with a JSON payload naming it; the store assigns the id.
func ev(typ string) eventstore.Event {
	return eventstore.Event{Type: typ, Data: fmt.Appendf(nil, `{"type":%q}`, typ)}
}

func mustAppend(t *testing.T, s eventstore.Store, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(testContext(t), stream, expected, events...)
	if err != nil {
		t.Fatalf("Append(%q, %v, %d events): %v", stream, expected, len(events), err)
	}
	return res
}

// readAll returns the records after `after`, failing the test on an error.
func readAll(t *testing.T, s eventstore.Store, after eventstore.Position) []eventstore.Record {
	t.Helper()
	var recs []eventstore.Record
	for rec, err := range s.ReadAll(testContext(t), after) {
		if err != nil {
			t.Fatalf("ReadAll(after %s) after %d records: %v", after, len(recs), err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// readStream returns the records of stream from version `from` and the
// error, if any, that ended the read.
func readStream(t *testing.T, s eventstore.Store, stream string, from uint64) ([]eventstore.Record, error) {
	t.Helper()
	var recs []eventstore.Record
	for rec, err := range s.ReadStream(testContext(t), stream, from) {
		if err != nil {
			return recs, err
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

func mustReadStream(t *testing.T, s eventstore.Store, stream string, from uint64) []eventstore.Record {
	t.Helper()
	recs, err := readStream(t, s, stream, from)
	if err != nil {
		t.Fatalf("ReadStream(%q, from %d) after %d records: %v", stream, from, len(recs), err)
	}
	return recs
}

func mustHead(t *testing.T, s eventstore.Store) eventstore.Position {
	t.Helper()
	p, err := s.Head(testContext(t))
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	return p
}

// diffRecord describes how got differs from want, or returns "".
func diffRecord(got, want eventstore.Record) string {
	switch {
	case got.ID != want.ID:
		return fmt.Sprintf("id %s, want %s", got.ID, want.ID)
	case got.StreamID != want.StreamID:
		return fmt.Sprintf("stream %q, want %q", got.StreamID, want.StreamID)
	case got.Version != want.Version:
		return fmt.Sprintf("version %d, want %d", got.Version, want.Version)
	case got.Position != want.Position:
		return fmt.Sprintf("position %s, want %s", got.Position, want.Position)
	case got.Type != want.Type:
		return fmt.Sprintf("type %q, want %q", got.Type, want.Type)
	case !bytes.Equal(got.Data, want.Data):
		return fmt.Sprintf("data %.64q, want %.64q", got.Data, want.Data)
	case !got.RecordedAt.Equal(want.RecordedAt):
		return fmt.Sprintf("recorded at %v, want %v", got.RecordedAt, want.RecordedAt)
	}
	return diffMetadata(got.Metadata, want.Metadata)
}

func diffMetadata(got, want eventstore.Metadata) string {
	if got.CorrelationID != want.CorrelationID || got.CausationID != want.CausationID ||
		!maps.Equal(got.Headers, want.Headers) {
		return fmt.Sprintf("metadata %+v, want %+v", got, want)
	}
	return ""
}

// checkStrictlyIncreasing fails the test unless positions strictly increase.
func checkStrictlyIncreasing(t *testing.T, what string, recs []eventstore.Record) {
	t.Helper()
	for i := 1; i < len(recs); i++ {
		if !recs[i-1].Position.Before(recs[i].Position) {
			t.Fatalf("%s: record %d at position %s does not come after record %d at %s",
				what, i, recs[i].Position, i-1, recs[i-1].Position)
		}
	}
}

// waitFor waits until cond holds, checking it every few milliseconds, and
// fails the test with msg() if waitTimeout passes first.
func waitFor(t *testing.T, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %s", waitTimeout, msg())
		}
		<-tick.C
	}
}

// waitDone waits for done to close, failing the test with what if it does not
// within waitTimeout.
func waitDone(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatalf("%s did not end within %v", what, waitTimeout)
	}
}

// checkNoGoroutineLeak waits until no more goroutines run than baseline.
func checkNoGoroutineLeak(t *testing.T, baseline int) {
	t.Helper()
	waitFor(t, func() bool { return runtime.NumGoroutine() <= baseline }, func() string {
		buf := make([]byte, 1<<16)
		buf = buf[:runtime.Stack(buf, true)]
		return fmt.Sprintf("%d goroutines, %d before; leaked goroutines?\n%s", runtime.NumGoroutine(), baseline, buf)
	})
}
