package sqlite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/google/uuid"
)

// The fault tests make the WAL's fsync or a COMMIT fail, or wait, through
// the writer's syncFile and commitTx, and check what callers, readers and a
// reopened store see.

// faultDeadline bounds every wait of the fault tests.
const faultDeadline = 20 * time.Second

// fsyncGate stands in for the WAL's fsync: each fsync waits until the test
// answers it, then fails with the test's error or runs the real fsync. Once
// opened, fsyncs no longer wait.
type fsyncGate struct {
	entered  chan struct{}
	outcomes chan error
	open     chan struct{}
	openOnce sync.Once
}

func newFsyncGate() *fsyncGate {
	return &fsyncGate{entered: make(chan struct{}), outcomes: make(chan error), open: make(chan struct{})}
}

func (g *fsyncGate) sync(f *os.File) error {
	select {
	case g.entered <- struct{}{}:
		select {
		case err := <-g.outcomes:
			if err != nil {
				return err
			}
		case <-g.open:
		}
	case <-g.open:
	}
	return f.Sync()
}

// next waits for the syncer to begin an fsync, which then waits for answer.
func (g *fsyncGate) next(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(faultDeadline):
		t.Fatalf("no fsync of the WAL began within %v", faultDeadline)
	}
}

// answer ends the fsync that began: err, or the real fsync when nil.
func (g *fsyncGate) answer(err error) { g.outcomes <- err }

// pass lets every fsync, waiting or to come, through to the real one.
func (g *fsyncGate) pass() { g.openOnce.Do(func() { close(g.open) }) }

// faultStore opens a SyncFull store at path whose WAL fsyncs go through g,
// and whose COMMITs run commit, when not nil, instead of the real one
// (which it is given). Its writer runs.
func faultStore(t *testing.T, path string, g *fsyncGate, commit func(ctx context.Context, real func(context.Context) error) error) *Store {
	t.Helper()
	// The failures are logged; the tests check what callers get.
	s, err := openStore(context.Background(), Config{Path: path, Sync: SyncFull, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	s.w.syncFile = g.sync
	if commit != nil {
		real := s.w.commitTx
		s.w.commitTx = func(ctx context.Context) error { return commit(ctx, real) }
	}
	go s.w.run()
	t.Cleanup(func() {
		g.pass()
		s.Close()
	})
	return s
}

type appendOutcome struct {
	res eventstore.AppendResult
	err error
}

// appendAsync runs Append on a goroutine; the channel yields its outcome.
func appendAsync(s *Store, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) <-chan appendOutcome {
	out := make(chan appendOutcome, 1)
	go func() {
		res, err := s.Append(context.Background(), stream, expected, events...)
		out <- appendOutcome{res, err}
	}()
	return out
}

// await returns the outcome of an append, failing the test when it takes
// longer than faultDeadline: no caller may hang.
func await(t *testing.T, out <-chan appendOutcome) appendOutcome {
	t.Helper()
	select {
	case o := <-out:
		return o
	case <-time.After(faultDeadline):
		t.Fatalf("an append got no answer within %v", faultDeadline)
		return appendOutcome{}
	}
}

// waitFor waits until cond holds, failing the test after faultDeadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(faultDeadline); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, faultDeadline)
		}
	}
}

// newEvents returns n events with fresh ids, so that a test can retry them.
func newEvents(n int) []eventstore.Event {
	events := make([]eventstore.Event, n)
	for i := range events {
		events[i] = eventstore.Event{ID: uuid.New(), Type: "test.happened", Data: []byte(`{}`)}
	}
	return events
}

// visible returns the head and the positions ReadAll yields, as readers of
// this process see them.
func visible(t *testing.T, s *Store) (uint64, []uint64) {
	t.Helper()
	ctx := context.Background()
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	var positions []uint64
	for rec, err := range s.ReadAll(ctx, eventstore.Start) {
		if err != nil {
			t.Fatalf("ReadAll: %v", err)
		}
		positions = append(positions, rec.Position.Commit)
	}
	return head.Commit, positions
}

// wantVisible fails the test unless readers see exactly positions 1..n.
func wantVisible(t *testing.T, s *Store, n uint64, why string) {
	t.Helper()
	head, positions := visible(t, s)
	ok := head == n && uint64(len(positions)) == n
	for i, p := range positions {
		ok = ok && p == uint64(i)+1
	}
	if !ok {
		t.Errorf("%s: head %d and positions %v, want positions 1 to %d", why, head, positions, n)
	}
}

// checkLog reads the whole log of a store and fails the test unless its
// positions run from 1 without a gap, each stream's versions run from 1
// without a gap, and no event id appears twice. It returns the records by
// event id.
func checkLog(t *testing.T, s eventstore.Store) map[uuid.UUID]eventstore.Record {
	t.Helper()
	byID := map[uuid.UUID]eventstore.Record{}
	versions := map[string]uint64{}
	var n uint64
	for rec, err := range s.ReadAll(context.Background(), eventstore.Start) {
		if err != nil {
			t.Fatalf("ReadAll: %v", err)
		}
		n++
		if rec.Position.Commit != n {
			t.Errorf("record %s is at position %d, want %d", rec.ID, rec.Position.Commit, n)
		}
		if want := versions[rec.StreamID] + 1; rec.Version != want {
			t.Errorf("record %s is stream %q version %d, want %d", rec.ID, rec.StreamID, rec.Version, want)
		}
		versions[rec.StreamID] = rec.Version
		if prev, ok := byID[rec.ID]; ok {
			t.Errorf("event %s written twice: at positions %d and %d", rec.ID, prev.Position.Commit, rec.Position.Commit)
		}
		byID[rec.ID] = rec
	}
	return byID
}

// TestFailedFsync makes the fsync covering three committed batches fail.
// Their callers must learn that their appends may or may not be durable, and
// every later append must fail as not written until the store is reopened;
// readers of the process must never see the three batches, which no fsync
// covered. After a reopen the log must be whole, and retrying the failed
// appends with their event ids must write each event once.
func TestFailedFsync(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	g := newFsyncGate()
	s := faultStore(t, path, g, nil)

	synced := appendAsync(s, "synced", eventstore.NoStream, newEvents(1)...)
	g.next(t)
	g.answer(nil)
	if o := await(t, synced); o.err != nil || o.res.Position != eventstore.SeqPosition(1) {
		t.Fatalf("first append: %+v, %v; want position 1", o.res, o.err)
	}
	sub, stopSub := collect(s)

	// a is committed and its fsync waits; b and c are committed behind it.
	type failing struct {
		stream string
		events []eventstore.Event
		out    <-chan appendOutcome
	}
	var batches []failing
	for i, stream := range []string{"a", "b", "c"} {
		f := failing{stream: stream, events: newEvents(2)}
		f.out = appendAsync(s, stream, eventstore.NoStream, f.events...)
		batches = append(batches, f)
		if i == 0 {
			g.next(t)
		}
		waitFor(t, "batch "+stream+" committed", func() bool { return s.w.commits.Load() == uint64(i)+2 })
	}
	wantVisible(t, s, 1, "three batches committed, none synced")

	g.answer(syscall.EIO)
	for _, f := range batches {
		o := await(t, f.out)
		if !errors.Is(o.err, eventstore.ErrUnavailable) || !strings.Contains(o.err.Error(), "may or may not be durable") {
			t.Errorf("append to %q covered by the failed fsync: %+v, %v; want ErrUnavailable saying it may or may not be durable",
				f.stream, o.res, o.err)
		}
	}
	wantVisible(t, s, 1, "after the failed fsync")

	later := newEvents(1)
	for range 2 {
		_, err := s.Append(ctx, "later", eventstore.NoStream, later...)
		if !errors.Is(err, eventstore.ErrUnavailable) || !strings.Contains(err.Error(), "not written") ||
			!strings.Contains(err.Error(), "reopen") {
			t.Errorf("append after the failed fsync: %v; want ErrUnavailable saying it was not written and the store must be reopened", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after a failed fsync: %v", err)
	}
	for _, p := range stopSub() {
		if p > 1 {
			t.Errorf("a subscription saw position %d, which no fsync covered", p)
		}
	}
	if len(sub) > 0 {
		t.Errorf("subscription: %v", <-sub)
	}

	// Reopened, the store holds the three batches or not, whole either way.
	s, err := Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	byID := checkLog(t, s)
	if _, ok := byID[later[0].ID]; ok {
		t.Errorf("the append refused after the failed fsync is in the log")
	}
	for _, f := range batches {
		_, kept := byID[f.events[0].ID]
		res, err := s.Append(ctx, f.stream, eventstore.NoStream, f.events...)
		if err != nil {
			t.Errorf("retry of the append to %q: %v", f.stream, err)
			continue
		}
		if res.Repeated != kept {
			t.Errorf("retry of the append to %q (kept by the reopened store: %v): Repeated %v", f.stream, kept, res.Repeated)
		}
		if kept && res.Position != byID[f.events[1].ID].Position {
			t.Errorf("retry of the append to %q: position %s, want the original %s", f.stream, res.Position, byID[f.events[1].ID].Position)
		}
	}
	if _, err := s.Append(ctx, "later", eventstore.NoStream, later...); err != nil {
		t.Errorf("append after the reopen: %v", err)
	}
	byID = checkLog(t, s)
	if len(byID) != 1+3*2+1 {
		t.Errorf("the log holds %d events after the retries, want 8", len(byID))
	}
}

// collect subscribes to the log and gathers the positions it yields, until
// stop, which returns them. An error other than ErrClosed goes to errs.
func collect(s *Store) (errs <-chan error, stop func() []uint64) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	done := make(chan []uint64, 1)
	go func() {
		var seen []uint64
		defer func() { done <- seen }()
		for rec, err := range s.Subscribe(ctx, eventstore.Start) {
			if err != nil {
				if !errors.Is(err, eventstore.ErrClosed) && !errors.Is(err, context.Canceled) {
					errc <- err
				}
				return
			}
			seen = append(seen, rec.Position.Commit)
		}
	}()
	return errc, func() []uint64 {
		cancel()
		return <-done
	}
}

// TestFailedCommitWhileEarlierBatchSyncs makes the COMMIT of batch b fail
// while batch a, committed before it, waits for its fsync (or just after
// that fsync answered a). b's caller must get an error at once, nothing of
// b may be visible, a must be answered and become visible after its fsync
// only, and the next append must commit where b would have. The COMMIT fails
// in place of SQLite's, or, on Linux, in SQLite: its write to the WAL fails
// for real (writeErrorCommit).
func TestFailedCommitWhileEarlierBatchSyncs(t *testing.T) {
	injected := func(context.Context, string, func(context.Context) error) error {
		return errors.New("injected commit failure")
	}
	for _, afterSync := range []bool{false, true} {
		for _, c := range []struct {
			name  string
			fail  commitFailure
			cause string // in the error of the failed appends
		}{{"injected", injected, "injected commit failure"}, {"write error", writeErrorCommit, writeErrorCause}} {
			name := c.name + " before a's fsync ends"
			if afterSync {
				name = c.name + " after a's fsync ended"
			}
			t.Run(name, func(t *testing.T) {
				if c.fail == nil {
					t.Skip("no real write error on this system")
				}
				testFailedCommit(t, afterSync, c.fail, c.cause)
			})
		}
	}
}

// commitFailure makes a COMMIT fail, given the path of the WAL and the real
// COMMIT.
type commitFailure func(ctx context.Context, wal string, real func(context.Context) error) error

func testFailedCommit(t *testing.T, afterSync bool, fail commitFailure, cause string) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	g := newFsyncGate()
	var a <-chan appendOutcome
	var aOutcome appendOutcome
	var failNext atomic.Bool
	s := faultStore(t, path, g, func(ctx context.Context, real func(context.Context) error) error {
		if !failNext.CompareAndSwap(true, false) {
			return real(ctx)
		}
		if afterSync {
			// b's positions are marked unsynced already; a's fsync
			// clears a's.
			g.answer(nil)
			aOutcome = <-a
		}
		return fail(ctx, path+"-wal", real)
	})

	a = appendAsync(s, "a", eventstore.NoStream, newEvents(2)...)
	g.next(t)
	failNext.Store(true)
	o := await(t, appendAsync(s, "b", eventstore.NoStream, newEvents(3)...))
	if !errors.Is(o.err, eventstore.ErrUnavailable) || !strings.Contains(o.err.Error(), "commit: "+cause) {
		t.Errorf("append whose commit failed: %+v, %v; want ErrUnavailable with the cause", o.res, o.err)
	}
	for _, err := range s.ReadStream(ctx, "b", 0) {
		if !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Errorf("ReadStream of the failed append's stream: %v, want ErrStreamNotFound", err)
		}
	}
	if afterSync {
		wantVisible(t, s, 2, "a synced, b failed")
	} else {
		wantVisible(t, s, 0, "a waiting for its fsync, b failed")
		if len(a) > 0 {
			t.Fatalf("a was answered before its fsync: %+v", <-a)
		}
		g.answer(nil)
		aOutcome = await(t, a)
	}
	if aOutcome.err != nil || aOutcome.res.Position != eventstore.SeqPosition(2) {
		t.Errorf("append committed before the failed one: %+v, %v; want success at position 2", aOutcome.res, aOutcome.err)
	}
	wantVisible(t, s, 2, "a synced")

	g.pass()
	res, err := s.Append(ctx, "c", eventstore.NoStream, newEvents(1)...)
	if err != nil || res.Position != eventstore.SeqPosition(3) {
		t.Errorf("append after the failed commit: %+v, %v; want success at position 3", res, err)
	}
	wantVisible(t, s, 3, "c synced")
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	s, err = Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if byID := checkLog(t, s); len(byID) != 3 {
		t.Errorf("reopened, the log holds %d events, want a's 2 and c's 1", len(byID))
	}
}

// TestCloseWhileBatchesWaitForFsync closes the store while committed batches
// wait for an fsync and more callers keep appending. Every caller must be
// answered, none may hang: those committed with the fsync's outcome, the
// others with ErrClosed. An append acknowledged must be in the reopened log.
func TestCloseWhileBatchesWaitForFsync(t *testing.T) {
	for _, fsyncErr := range []error{nil, syscall.EIO} {
		name := "fsync succeeds"
		if fsyncErr != nil {
			name = "fsync fails"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "events.db")
			g := newFsyncGate()
			s := faultStore(t, path, g, nil)

			// Eight appends wait for the first fsync; eight more are
			// committed behind it.
			const waiting = 16
			var outs []<-chan appendOutcome
			var events [][]eventstore.Event
			for i := range waiting {
				events = append(events, newEvents(1))
				outs = append(outs, appendAsync(s, fmt.Sprintf("w-%d", i), eventstore.NoStream, events[i]...))
				if i == waiting/2-1 {
					waitFor(t, "the first eight appends committed", func() bool { return s.w.inFlight.Load() == waiting/2 })
					g.next(t)
				}
			}
			waitFor(t, "sixteen appends committed", func() bool { return s.w.inFlight.Load() == waiting })

			// Callers that keep appending while the store closes.
			var acked sync.Map // event id → position
			var wg sync.WaitGroup
			racing := make(chan error, 8)
			for i := range 8 {
				wg.Go(func() {
					for v := uint64(0); ; v++ {
						e := newEvents(1)
						res, err := s.Append(ctx, fmt.Sprintf("r-%d", i), eventstore.Exact(v), e...)
						if err != nil {
							if !errors.Is(err, eventstore.ErrClosed) && !errors.Is(err, eventstore.ErrUnavailable) {
								racing <- err
							}
							return
						}
						acked.Store(e[0].ID, res.Position)
					}
				})
			}
			closed := make(chan error, 1)
			go func() { closed <- s.Close() }()
			waitFor(t, "Close called", s.closed.Load)
			g.answer(fsyncErr)
			g.pass()

			for i, out := range outs {
				o := await(t, out)
				switch {
				case fsyncErr == nil && o.err != nil:
					t.Errorf("append %d committed before Close, fsync succeeded: %v", i, o.err)
				case fsyncErr == nil:
					acked.Store(events[i][0].ID, o.res.Position)
				case !errors.Is(o.err, eventstore.ErrUnavailable):
					t.Errorf("append %d committed before Close, fsync failed: %+v, %v; want ErrUnavailable", i, o.res, o.err)
				}
			}
			allDone := make(chan struct{})
			go func() { wg.Wait(); close(allDone) }()
			select {
			case <-allDone:
			case <-time.After(faultDeadline):
				t.Fatalf("appends racing Close got no answer within %v", faultDeadline)
			}
			close(racing)
			for err := range racing {
				t.Errorf("append racing Close: %v", err)
			}
			select {
			case err := <-closed:
				if err != nil {
					t.Errorf("Close: %v", err)
				}
			case <-time.After(faultDeadline):
				t.Fatalf("Close did not return within %v", faultDeadline)
			}

			s, err := Open(ctx, Config{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			byID := checkLog(t, s)
			acked.Range(func(id, position any) bool {
				if rec, ok := byID[id.(uuid.UUID)]; !ok || rec.Position != position.(eventstore.Position) {
					t.Errorf("acknowledged event %s at %s: reopened, found %+v", id, position, rec)
				}
				return true
			})
		})
	}
}
