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
	s.w.linger, s.w.window, s.w.lastCommit = time.Hour, time.Hour, 4*time.Hour
	return s
}

// request returns an append queued when the writer had answered round
// batches.
func request(round uint64) *appendRequest {
	return &appendRequest{stream: "s-" + uuid.NewString(), expected: eventstore.Any,
		events: []eventstore.Event{{ID: uuid.New(), Type: "t"}}, headers: make([][]byte, 1),
		Request: groupcommit.NewRequest(), round: round}
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

// TestGatherFullWaitsForTheCallersItAnswered: with SyncFull, after a batch of
// three appends, the writer takes what is queued and waits for the three
// callers it answered to come back. Appends that were queued during the last
// commit (an older round) are not those callers.
func TestGatherFullWaitsForTheCallersItAnswered(t *testing.T) {
	s := gatherStore(t, SyncFull)
	s.w.answered.Store(7)
	first := request(6)        // queued while batch 7 was committing
	s.w.requests <- request(6) // likewise
	s.w.requests <- request(7) // two callers of batch 7 are back
	s.w.requests <- request(7)
	done := gatherAsync(s, first, 3)
	// Once gather has taken everything queued, it holds four appends but
	// only two of the three callers it answered: it must still be waiting,
	// so the third, sent now, joins the batch.
	waitTaken(t, s)
	s.w.requests <- request(7) // the third is back
	if n := waitBatch(t, done); n != 5 {
		t.Errorf("batch of %d appends, want 5: gather did not wait for the third caller it answered", n)
	}
	if s.w.returners != 3 {
		t.Errorf("%d returners, want 3", s.w.returners)
	}
}

// TestGatherLoneCallerNeverWaits: a caller alone is answered and comes back;
// the writer commits its append at once, whatever the window.
func TestGatherLoneCallerNeverWaits(t *testing.T) {
	for _, mode := range []SyncMode{SyncFull, SyncNormal} {
		t.Run(mode.String(), func(t *testing.T) {
			s := gatherStore(t, mode)
			s.w.answered.Store(3)
			if n := waitBatch(t, gatherAsync(s, request(3), 1)); n != 1 {
				t.Errorf("batch of %d appends, want 1", n)
			}
		})
	}
}

// TestGatherNoWindowBeforeTheFirstCommit: the window is a share of the last
// commit's time, so before any commit the writer does not wait.
func TestGatherNoWindowBeforeTheFirstCommit(t *testing.T) {
	s := gatherStore(t, SyncFull)
	s.w.lastCommit = 0
	if n := waitBatch(t, gatherAsync(s, request(0), 64)); n != 1 {
		t.Errorf("batch of %d appends, want 1", n)
	}
}

// TestGatherNormalWaitsForAsManyAsBefore: with SyncNormal the writer waits
// for the batch to be as large as the previous one, whoever sends.
func TestGatherNormalWaitsForAsManyAsBefore(t *testing.T) {
	s := gatherStore(t, SyncNormal)
	s.w.answered.Store(2)
	s.w.requests <- request(1)
	done := gatherAsync(s, request(1), 3)
	waitTaken(t, s) // two appends taken, one short of the previous batch
	s.w.requests <- request(1)
	if n := waitBatch(t, done); n != 3 {
		t.Errorf("batch of %d appends, want 3: gather did not wait for the previous batch's size", n)
	}
}
