package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/internal/groupcommit"
	"github.com/google/uuid"
)

// queue hands an append to the writer the way Append does, without waiting.
func queue(t *testing.T, s *Store, stream string, expected eventstore.ExpectedVersion, ids ...uuid.UUID) *appendRequest {
	t.Helper()
	events := make([]eventstore.Event, len(ids))
	for i, id := range ids {
		events[i] = eventstore.Event{ID: id, Type: "test.happened", Data: []byte(`{}`)}
	}
	if err := eventstore.PrepareAppend(stream, expected, events, s.cfg.MaxEventSize); err != nil {
		t.Fatal(err)
	}
	req := &appendRequest{stream: stream, expected: expected, events: events,
		headers: make([][]byte, len(events)), Request: groupcommit.NewRequest()}
	s.w.requests <- req
	return req
}

// TestBatchAppendsAreCheckedOneByOne queues appends before the writer starts,
// so that they are all committed in one transaction, and checks that each is
// judged against its stream as the appends before it left it, and that the
// failing ones write nothing while their neighbours commit.
func TestBatchAppendsAreCheckedOneByOne(t *testing.T) {
	ctx := context.Background()
	s, err := openStore(ctx, Config{Path: filepath.Join(t.TempDir(), "events.db")})
	if err != nil {
		t.Fatal(err)
	}
	a, b, x := uuid.New(), uuid.New(), uuid.New()
	h1, h2 := uuid.New(), uuid.New()
	reqs := []*appendRequest{
		queue(t, s, "s", eventstore.NoStream, a),              // 0: s v1
		queue(t, s, "s", eventstore.Exact(1), b),              // 1: s v2, chained on 0
		queue(t, s, "s", eventstore.Exact(1), uuid.New()),     // 2: wrong version, actual 2
		queue(t, s, "t", eventstore.NoStream, a),              // 3: a is already s v1
		queue(t, s, "s", eventstore.Exact(2), b),              // 4: b is s v2, not after v2
		queue(t, s, "s", eventstore.NoStream, a),              // 5: repeat of 0: original result
		queue(t, s, "u", eventstore.NoStream, x, a),           // 6: x written, then a refused: undone
		queue(t, s, "u", eventstore.NoStream, h1, h2),         // 7: u v1-2, as if 6 never happened
		queue(t, s, "s", eventstore.Any),                      // 8: no events: s as it is
		queue(t, s, "s", eventstore.StreamExists, uuid.New()), // 9: s v3
	}
	if got := len(s.w.requests); got != len(reqs) {
		t.Fatalf("queued %d requests, want %d", got, len(reqs))
	}
	go s.w.run()
	t.Cleanup(func() { s.Close() })
	replies := make([]appendReply, len(reqs))
	for i, r := range reqs {
		replies[i].res, replies[i].err = r.Wait()
	}

	want := []eventstore.AppendResult{
		0: {StreamID: "s", FirstVersion: 1, LastVersion: 1, Position: eventstore.SeqPosition(1)},
		1: {StreamID: "s", FirstVersion: 2, LastVersion: 2, Position: eventstore.SeqPosition(2)},
		5: {StreamID: "s", FirstVersion: 1, LastVersion: 1, Position: eventstore.SeqPosition(1), Repeated: true},
		7: {StreamID: "u", FirstVersion: 1, LastVersion: 2, Position: eventstore.SeqPosition(4)},
		8: {StreamID: "s", FirstVersion: 2, LastVersion: 2, Position: eventstore.SeqPosition(2)},
		9: {StreamID: "s", FirstVersion: 3, LastVersion: 3, Position: eventstore.SeqPosition(5)},
	}
	for _, i := range []int{0, 1, 5, 7, 8, 9} {
		if replies[i].err != nil || replies[i].res != want[i] {
			t.Errorf("append %d: got %+v, %v; want %+v", i, replies[i].res, replies[i].err, want[i])
		}
	}
	var wv *eventstore.WrongVersionError
	if !errors.As(replies[2].err, &wv) || wv.Actual != 2 || wv.StreamID != "s" {
		t.Errorf("append 2: got %v, want wrong version with actual 2", replies[2].err)
	}
	for _, i := range []int{3, 4, 6} {
		if !errors.Is(replies[i].err, eventstore.ErrDuplicateEvent) {
			t.Errorf("append %d: got %+v, %v; want ErrDuplicateEvent", i, replies[i].res, replies[i].err)
		}
	}

	type row struct {
		stream  string
		version uint64
		id      uuid.UUID
		pos     uint64
	}
	var got []row
	for rec, err := range s.ReadAll(ctx, eventstore.Start) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, row{rec.StreamID, rec.Version, rec.ID, rec.Position.Commit})
	}
	wantRows := []row{{"s", 1, a, 1}, {"s", 2, b, 2}, {"u", 1, h1, 3}, {"u", 2, h2, 4}, {"s", 3, reqs[9].events[0].ID, 5}}
	if len(got) != len(wantRows) {
		t.Fatalf("log: got %+v, want %+v", got, wantRows)
	}
	for i := range got {
		if got[i] != wantRows[i] {
			t.Errorf("log[%d]: got %+v, want %+v", i, got[i], wantRows[i])
		}
	}
	for _, err := range s.ReadStream(ctx, "t", 1) {
		if !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Errorf("stream t: got %v, want ErrStreamNotFound", err)
		}
	}
}

// TestPragmas checks that the writer's connection runs in WAL mode with
// synchronous=NORMAL, and that a Config that leaves Sync zero gets SyncFull,
// whose writer fsyncs the WAL itself before answering (its syncer): durable
// against power loss unless asked otherwise. TestAcknowledgedOnlyAfterWALFsync
// proves the fsyncs.
func TestPragmas(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		syncer bool
	}{
		{"default", Config{}, true},
		{"full", Config{Sync: SyncFull}, true},
		{"normal", Config{Sync: SyncNormal}, false},
	} {
		tc.cfg.Path = filepath.Join(t.TempDir(), "events.db")
		s, err := Open(context.Background(), tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		var journal string
		var synchronous int
		if err := s.w.conn.QueryRowContext(context.Background(), "PRAGMA journal_mode").Scan(&journal); err != nil {
			t.Fatal(err)
		}
		if err := s.w.conn.QueryRowContext(context.Background(), "PRAGMA synchronous").Scan(&synchronous); err != nil {
			t.Fatal(err)
		}
		if journal != "wal" || synchronous != 1 {
			t.Errorf("%s: journal_mode %s, synchronous %d; want wal, 1 (NORMAL)", tc.name, journal, synchronous)
		}
		if syncer := s.w.synced != nil; syncer != tc.syncer {
			t.Errorf("%s: syncer %v, want %v", tc.name, syncer, tc.syncer)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
