package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/internal/groupcommit"
	"github.com/google/uuid"
)

// gatherStore opens a store whose writer is not running, so that a test can
// call gather itself, with waits made so long that any wait it makes lasts
// until the test supplies what it waits for.
func gatherStore(t *testing.T, mode SyncMode) *Store {
	t.Helper()
	s, err := openStore(context.Background(), Config{Path: filepath.Join(t.TempDir(), "events.db"), Sync: mode})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(s.stopped) // the writer never ran
		s.Close()
	})
	s.w.linger = time.Hour
	return s
}

// request returns an append of one event to a new stream.
func request() *appendRequest {
	return &appendRequest{stream: "s-" + uuid.NewString(), expected: eventstore.Any,
		events: []eventstore.Event{{ID: uuid.New(), Type: "t"}}, headers: make([][]byte, 1),
		Request: groupcommit.NewRequest()}
}

// gatherAsync runs gather and returns a channel that yields the batch size
// when it returns.
func gatherAsync(s *Store, first *appendRequest, callers int) <-chan int {
	done := make(chan int, 1)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	go func() {
		s.w.gather(first, callers, timer)
		done <- len(s.w.batch)
	}()
	return done
}

func waitBatch(t *testing.T, done <-chan int) int {
	t.Helper()
	select {
	case n := <-done:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("gather still waiting after 10s")
		return 0
	}
}

// waitTaken waits until gather has taken every queued append: from then on,
// a gather that does not wait has returned without the appends sent next.
func waitTaken(t *testing.T, s *Store) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); len(s.w.requests) > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("gather did not take the queued appends within 10s")
		}
	}
}

// TestGatherWaitsForAsManyAsBefore: the writer waits for the batch to be as
// large as the previous one, whoever sends.
func TestGatherWaitsForAsManyAsBefore(t *testing.T) {
	for _, mode := range []SyncMode{SyncFull, SyncNormal} {
		t.Run(mode.String(), func(t *testing.T) {
			s := gatherStore(t, mode)
			s.w.requests <- request()
			done := gatherAsync(s, request(), 3)
			waitTaken(t, s) // two appends taken, one short of the previous batch
			s.w.requests <- request()
			if n := waitBatch(t, done); n != 3 {
				t.Errorf("batch of %d appends, want 3: gather did not wait for the previous batch's size", n)
			}
		})
	}
}

// TestGatherDoesNotWaitForAppendsBeingSynced: with SyncFull, callers whose
// appends wait for their fsync cannot come back before it; the writer
// commits without waiting for them.
func TestGatherDoesNotWaitForAppendsBeingSynced(t *testing.T) {
	s := gatherStore(t, SyncFull)
	s.w.inFlight.Store(2) // two of the three callers wait for an fsync
	if n := waitBatch(t, gatherAsync(s, request(), 3)); n != 1 {
		t.Errorf("batch of %d appends, want 1", n)
	}
	// Once one of them is answered, the writer waits for it.
	s.w.inFlight.Store(1)
	done := gatherAsync(s, request(), 3)
	waitTaken(t, s)
	s.w.requests <- request()
	if n := waitBatch(t, done); n != 2 {
		t.Errorf("batch of %d appends, want 2: gather did not wait for the caller answered", n)
	}
}

// TestGatherLoneCallerNeverWaits: a caller alone is answered and comes back;
// the writer commits its append at once, whatever the linger.
func TestGatherLoneCallerNeverWaits(t *testing.T) {
	for _, mode := range []SyncMode{SyncFull, SyncNormal} {
		t.Run(mode.String(), func(t *testing.T) {
			s := gatherStore(t, mode)
			if n := waitBatch(t, gatherAsync(s, request(), 1)); n != 1 {
				t.Errorf("batch of %d appends, want 1", n)
			}
		})
	}
}

// TestReadersDoNotSeeUnsyncedPositions: with SyncFull, positions committed
// and not yet covered by an fsync are hidden from Head and ReadAll, so that
// a reader (a projection) never gets ahead of what a power loss keeps.
func TestReadersDoNotSeeUnsyncedPositions(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{Path: filepath.Join(t.TempDir(), "events.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 3 {
		if _, err := s.Append(ctx, "s", eventstore.Any, eventstore.Event{Type: "t", Data: []byte{byte('0' + i)}}); err != nil {
			t.Fatal(err)
		}
	}
	count := func() (eventstore.Position, int) {
		t.Helper()
		head, err := s.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, err := range s.ReadAll(ctx, eventstore.Start) {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		return head, n
	}
	if head, n := count(); head != eventstore.SeqPosition(3) || n != 3 {
		t.Fatalf("all synced: head %v and %d records, want 3 and 3", head, n)
	}
	// As the writer marks positions 2 and 3 before its COMMIT, until the
	// syncer's fsync covers them.
	s.w.unsynced.Lock()
	s.w.unsynced.first, s.w.unsynced.last = 2, 3
	s.w.unsynced.Unlock()
	if head, n := count(); head != eventstore.SeqPosition(1) || n != 1 {
		t.Errorf("2 and 3 unsynced: head %v and %d records, want 1 and 1", head, n)
	}
	s.w.unsynced.Lock()
	s.w.unsynced.first, s.w.unsynced.last = 0, 0
	s.w.unsynced.Unlock()
	if head, n := count(); head != eventstore.SeqPosition(3) || n != 3 {
		t.Errorf("synced again: head %v and %d records, want 3 and 3", head, n)
	}
}

// TestSubscriptionDoesNotSeeUnsyncedPositions: a subscription's page stops
// before the first position not yet fsynced.
func TestSubscriptionDoesNotSeeUnsyncedPositions(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{Path: filepath.Join(t.TempDir(), "events.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	page := make([]eventstore.Record, 3)
	for i := range page {
		page[i].Position = eventstore.SeqPosition(uint64(i + 1))
	}
	if got := len(s.dropUnsynced(page)); got != 3 {
		t.Errorf("all synced: %d records kept, want 3", got)
	}
	s.w.unsynced.Lock()
	s.w.unsynced.first, s.w.unsynced.last = 2, 3
	s.w.unsynced.Unlock()
	if got := len(s.dropUnsynced(page)); got != 1 {
		t.Errorf("2 and 3 unsynced: %d records kept, want 1", got)
	}
}
