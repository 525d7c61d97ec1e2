package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/eventstoretest"
	"github.com/eventline/eventline/eventstore/sqlite"
	"github.com/google/uuid"
)

// TestContract runs the contract suite every backend passes.
func TestContract(t *testing.T) {
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
		return open(t, filepath.Join(t.TempDir(), "events.db"))
	})
}

// TestContractShared runs the suite through an eventstore.SharedLog over the
// SQLite store, as the sample's projectors use it, with a window small
// enough that subscriptions wait on each other.
func TestContractShared(t *testing.T) {
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
		return eventstore.NewSharedLog(open(t, filepath.Join(t.TempDir(), "events.db")),
			eventstore.SharedLogOptions{Window: 16, StallTimeout: 200 * time.Millisecond})
	})
}

func open(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func ev(typ string) eventstore.Event {
	return eventstore.Event{Type: typ, Data: []byte(`{"n":1}`)}
}

// readAll collects the whole log.
func readAll(t *testing.T, s eventstore.Store) []eventstore.Record {
	t.Helper()
	var recs []eventstore.Record
	for rec, err := range s.ReadAll(context.Background(), eventstore.Start) {
		if err != nil {
			t.Fatalf("ReadAll: %v", err)
		}
		recs = append(recs, rec)
	}
	return recs
}

func TestRecordsRoundTripAndSurviveReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "dir", "events.db") // parent dirs are created
	s, err := sqlite.Open(ctx, sqlite.Config{Path: path, Sync: sqlite.SyncFull})
	if err != nil {
		t.Fatal(err)
	}
	in := eventstore.Event{
		ID:   uuid.New(),
		Type: "cart.item_added",
		Data: []byte(`{"sku":"A-1"}`),
		Metadata: eventstore.Metadata{CorrelationID: "corr", CausationID: "cause",
			Headers: map[string]string{"tenant": "t1"}},
	}
	before := time.Now()
	res, err := s.Append(ctx, "cart-1", eventstore.NoStream, in, eventstore.Event{Type: "cart.emptied"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, path)
	recs := readAll(t, s)
	if len(recs) != 2 {
		t.Fatalf("got %d records after reopen, want 2", len(recs))
	}
	got := recs[0]
	if got.ID != in.ID || got.Type != in.Type || !bytes.Equal(got.Data, in.Data) ||
		got.Metadata.CorrelationID != "corr" || got.Metadata.CausationID != "cause" ||
		got.Metadata.Headers["tenant"] != "t1" || got.StreamID != "cart-1" || got.Version != 1 ||
		got.Position != eventstore.SeqPosition(1) {
		t.Errorf("record 0 = %+v, want the appended event at cart-1 v1 position 1", got)
	}
	if got.RecordedAt.Before(before.Add(-time.Second)) || got.RecordedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("RecordedAt %s is not around the append", got.RecordedAt)
	}
	if recs[1].ID == uuid.Nil || len(recs[1].Data) != 0 || recs[1].Version != 2 {
		t.Errorf("record 1 = %+v, want a generated id, empty data, version 2", recs[1])
	}
	if res.Position != recs[1].Position {
		t.Errorf("AppendResult.Position = %s, want the last record's %s", res.Position, recs[1].Position)
	}
	if head, err := s.Head(ctx); err != nil || head != res.Position {
		t.Errorf("Head = %s, %v; want %s", head, err, res.Position)
	}
	// The version survives the reopen: the next append must chain on it.
	if _, err := s.Append(ctx, "cart-1", eventstore.Exact(1), ev("x")); !errors.Is(err, eventstore.ErrWrongVersion) {
		t.Errorf("Exact(1) after reopen: got %v, want ErrWrongVersion", err)
	}
	if r, err := s.Append(ctx, "cart-1", eventstore.Exact(2), ev("x")); err != nil || r.LastVersion != 3 || r.Position != eventstore.SeqPosition(3) {
		t.Errorf("Exact(2) after reopen: got %+v, %v", r, err)
	}
}

func TestPagedReads(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "events.db"))
	// More than two pages of 1,000, interleaved over two streams.
	const n = 2600
	for i := 0; i < n; i += 100 {
		batch := make([]eventstore.Event, 50)
		for k := range batch {
			batch[k] = ev(fmt.Sprintf("e%d", i+k))
			batch[k].ID = uuid.New()
		}
		if _, err := s.Append(ctx, "a", eventstore.Any, batch...); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Append(ctx, "b", eventstore.Any, batch...); err == nil {
			t.Fatal("re-appending the same ids to another stream succeeded")
		}
		for k := range batch {
			batch[k].ID = uuid.New()
		}
		if _, err := s.Append(ctx, "b", eventstore.Any, batch...); err != nil {
			t.Fatal(err)
		}
	}
	recs := readAll(t, s)
	if len(recs) != n {
		t.Fatalf("ReadAll gave %d records, want %d", len(recs), n)
	}
	for i, rec := range recs {
		if rec.Position != eventstore.SeqPosition(uint64(i+1)) {
			t.Fatalf("record %d at position %s, want %d", i, rec.Position, i+1)
		}
	}
	var after []eventstore.Record
	for rec, err := range s.ReadAll(ctx, eventstore.SeqPosition(1500)) {
		if err != nil {
			t.Fatal(err)
		}
		after = append(after, rec)
	}
	if len(after) != n-1500 || after[0].Position != eventstore.SeqPosition(1501) {
		t.Errorf("ReadAll after 1500: %d records from %v", len(after), after[0].Position)
	}
	v := uint64(1200)
	for rec, err := range s.ReadStream(ctx, "b", 1200) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.StreamID != "b" || rec.Version != v {
			t.Fatalf("ReadStream b: got %s v%d, want b v%d", rec.StreamID, rec.Version, v)
		}
		v++
	}
	if v != n/2+1 {
		t.Errorf("ReadStream b from 1200 ended before version %d, want %d", v, n/2+1)
	}
	// Breaking out of a loop must stop the iterator.
	count := 0
	for range s.ReadAll(ctx, eventstore.Start) {
		count++
		if count == 1500 {
			break
		}
	}
	if count != 1500 {
		t.Errorf("broke out after %d, want 1500", count)
	}
}

func TestTooLarge(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "events.db"), MaxEventSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	big := eventstore.Event{Type: "big", Data: make([]byte, 1025)}
	if _, err := s.Append(ctx, "s", eventstore.Any, big); !errors.Is(err, eventstore.ErrTooLarge) {
		t.Errorf("got %v, want ErrTooLarge", err)
	}
	big.Data = big.Data[:1024]
	if _, err := s.Append(ctx, "s", eventstore.Any, big); err != nil {
		t.Errorf("an event at the limit: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	notDB := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(notDB, bytes.Repeat([]byte("not a database "), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	aFile := filepath.Join(dir, "file")
	if err := os.WriteFile(aFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]sqlite.Config{
		"no path":         {},
		"directory":       {Path: dir},
		"parent is file":  {Path: filepath.Join(aFile, "events.db")},
		"not a database":  {Path: notDB},
		"negative size":   {Path: filepath.Join(dir, "x.db"), MaxEventSize: -1},
		"unknown sync":    {Path: filepath.Join(dir, "x.db"), Sync: 7},
		"negative period": {Path: filepath.Join(dir, "x.db"), PollInterval: -time.Second},
	} {
		s, err := sqlite.Open(ctx, cfg)
		if err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded", name)
			continue
		}
		t.Logf("%s: %v", name, err)
	}
}

func TestRefusesForeignAndNewerFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	exec := func(path, stmt string) {
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	foreign := filepath.Join(dir, "foreign.db")
	exec(foreign, "CREATE TABLE events (x)")
	if _, err := sqlite.Open(ctx, sqlite.Config{Path: foreign}); !errors.Is(err, sqlite.ErrSchemaVersion) {
		t.Errorf("foreign file: got %v, want ErrSchemaVersion", err)
	}

	newer := filepath.Join(dir, "newer.db")
	s := open(t, newer)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	exec(newer, fmt.Sprintf("PRAGMA user_version = %d", sqlite.SchemaVersion+1))
	_, err := sqlite.Open(ctx, sqlite.Config{Path: newer})
	if !errors.Is(err, sqlite.ErrSchemaVersion) {
		t.Fatalf("newer schema: got %v, want ErrSchemaVersion", err)
	}
	t.Log(err)
}

func TestClose(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "events.db")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "s", eventstore.NoStream, ev("a")); err != nil {
		t.Fatal(err)
	}
	// A caught-up subscription must end with ErrClosed.
	subEnded := make(chan error, 1)
	live := make(chan struct{})
	go func() {
		for rec, err := range s.Subscribe(ctx, eventstore.Start) {
			if err != nil {
				subEnded <- err
				return
			}
			if rec.StreamID == "s" { // once: the racing appends below are version 1 too
				close(live)
			}
		}
		subEnded <- errors.New("subscription ended without an error")
	}()
	<-live

	// Appends racing with Close either commit or fail with ErrClosed.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			_, err := s.Append(ctx, fmt.Sprintf("r-%d", i), eventstore.NoStream, ev("a"))
			if err != nil && !errors.Is(err, eventstore.ErrClosed) {
				errs <- err
			}
		})
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("append racing Close: %v", err)
	}
	if err := <-subEnded; !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("subscription ended with %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Append(ctx, "s", eventstore.Any, ev("b")); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if _, err := s.Head(ctx); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("Head after Close: %v", err)
	}
	for _, err := range s.ReadAll(ctx, eventstore.Start) {
		if !errors.Is(err, eventstore.ErrClosed) {
			t.Errorf("ReadAll after Close: %v", err)
		}
	}
	for _, err := range s.ReadStream(ctx, "s", 1) {
		if !errors.Is(err, eventstore.ErrClosed) {
			t.Errorf("ReadStream after Close: %v", err)
		}
	}
	for _, err := range s.Subscribe(ctx, eventstore.Start) {
		if !errors.Is(err, eventstore.ErrClosed) {
			t.Errorf("Subscribe after Close: %v", err)
		}
	}
}

// TestTwoStoresOnOneFile stands in for two processes sharing a file: each
// writer must notice the other's commits, and a subscription on one must see
// appends made through the other (found by polling).
func TestTwoStoresOnOneFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "events.db")
	one := open(t, path)
	two, err := sqlite.Open(ctx, sqlite.Config{Path: path, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { two.Close() })

	// two's writer caches stream x before one changes it.
	if _, err := two.Append(ctx, "x", eventstore.NoStream, ev("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := one.Append(ctx, "x", eventstore.Exact(1), ev("b")); err != nil {
		t.Fatal(err)
	}
	if _, err := two.Append(ctx, "x", eventstore.Exact(1), ev("c")); !errors.Is(err, eventstore.ErrWrongVersion) {
		t.Fatalf("stale expectation through the other store: got %v, want ErrWrongVersion", err)
	}
	if res, err := two.Append(ctx, "x", eventstore.Exact(2), ev("c")); err != nil || res.Position != eventstore.SeqPosition(3) {
		t.Fatalf("append through two after one: %+v, %v", res, err)
	}

	// Concurrent writers through both stores, while two subscribes.
	const perStore = 200
	got := make(chan []eventstore.Record, 1)
	subCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		var recs []eventstore.Record
		defer func() { got <- recs }()
		for rec, err := range two.Subscribe(subCtx, eventstore.Start) {
			if err != nil {
				return
			}
			recs = append(recs, rec)
			if len(recs) == 3+2*perStore {
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for _, s := range []*sqlite.Store{one, two} {
		for w := range 4 {
			wg.Go(func() {
				for i := range perStore / 4 {
					if _, err := s.Append(ctx, fmt.Sprintf("w-%p-%d", s, w), eventstore.Exact(uint64(i)), ev("n")); err != nil {
						t.Errorf("append: %v", err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	recs := <-got
	if len(recs) != 3+2*perStore {
		t.Fatalf("subscription on two saw %d records, want %d", len(recs), 3+2*perStore)
	}
	for i, rec := range recs {
		if rec.Position != eventstore.SeqPosition(uint64(i+1)) {
			t.Fatalf("record %d at position %s, want %d", i, rec.Position, i+1)
		}
	}
	// A subscription on one that is caught up sees an append through two.
	head, err := one.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan eventstore.Record, 1)
	go func() {
		for rec, err := range one.Subscribe(subCtx, head) {
			if err == nil {
				seen <- rec
			}
			return
		}
	}()
	res, err := two.Append(ctx, "late", eventstore.NoStream, ev("late"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case rec := <-seen:
		if rec.StreamID != "late" || rec.Position != res.Position {
			t.Errorf("subscription on one got %s at %s, want late at %s", rec.StreamID, rec.Position, res.Position)
		}
	case <-ctx.Done():
		t.Fatal("subscription on one never saw the append through two")
	}
}

func TestAppendCancelledContext(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "events.db"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Append(ctx, "s", eventstore.Any, ev("a")); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	if recs := readAll(t, s); len(recs) != 0 {
		t.Errorf("a cancelled append wrote %d records", len(recs))
	}
}

// Reading a missing stream is ErrStreamNotFound from any version, even one no
// SQLite integer can hold; an existing stream read past its end yields nothing.
func TestReadStreamFromHugeVersion(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "e.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.Append(ctx, "a", eventstore.NoStream, eventstore.Event{Type: "t"}); err != nil {
		t.Fatal(err)
	}
	for _, from := range []uint64{math.MaxInt64, math.MaxInt64 + 1, math.MaxUint64} {
		var errs []error
		n := 0
		for _, err := range s.ReadStream(ctx, "missing", from) {
			errs = append(errs, err)
		}
		if len(errs) != 1 || !errors.Is(errs[0], eventstore.ErrStreamNotFound) {
			t.Fatalf("missing stream from %d: %v, want one ErrStreamNotFound", from, errs)
		}
		for _, err := range s.ReadStream(ctx, "a", from) {
			if err != nil {
				t.Fatalf("stream a from %d: %v", from, err)
			}
			n++
		}
		if n != 0 {
			t.Fatalf("stream a from %d: %d records, want none", from, n)
		}
	}
}

// TestLogPageRefusesADamagedRow: log pages read a record's bytes as one text
// cut by the lengths of its columns; a row whose event id is not 16 bytes (a
// file changed by hand) is an error naming the record, not a record made of
// shifted bytes.
func TestLogPageRefusesADamagedRow(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := sqlite.Open(ctx, sqlite.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	e := ev("a")
	e.Metadata = eventstore.Metadata{CorrelationID: "corr", CausationID: "cause", Headers: map[string]string{"k": "v"}}
	if _, err := s.Append(ctx, "s-1", eventstore.NoStream, e, ev("b")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "UPDATE events SET id = x'0102' WHERE position = 2"); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	var recs []eventstore.Record
	var readErr error
	for rec, err := range s.ReadAll(ctx, eventstore.Start) {
		if err != nil {
			readErr = err
			break
		}
		recs = append(recs, rec)
	}
	if readErr == nil || !strings.Contains(readErr.Error(), "position 2: event id") {
		t.Errorf("ReadAll over a 2-byte event id: records %v, error %v; want an error naming position 2's event id", recs, readErr)
	}
}
