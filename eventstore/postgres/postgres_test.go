package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/eventstoretest"
	"github.com/eventline/eventline/eventstore/postgres"
	"github.com/eventline/eventline/internal/pgtest"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(envChild); role != "" {
		os.Exit(runChild(role))
	}
	os.Exit(pgtest.Run(m))
}

// testDB is one database for the tests of this run that need a fresh store;
// each store gets a schema of its own in it.
func testDB(t testing.TB) string {
	t.Helper()
	return pgtest.Database(t)
}

var schemas atomic.Int64

// openStore opens a store on a new schema of dbURL and closes it when the
// test ends.
func openStore(t testing.TB, dbURL string, cfg postgres.Config) *postgres.Store {
	t.Helper()
	cfg.URL = dbURL
	if cfg.Schema == "" {
		cfg.Schema = fmt.Sprintf("s%d", schemas.Add(1))
	}
	s, err := postgres.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	db := testDB(t)
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
		return openStore(t, db, postgres.Config{})
	})
}

// TestRepeatedAppend checks AppendResult.Repeated: a repeat of an append
// (the same event ids) returns the original result with Repeated set and
// writes nothing, whether the original is in the log or committed in the same
// group commit; exactly one of racing identical appends writes.
func TestRepeatedAppend(t *testing.T) {
	s := openStore(t, testDB(t), postgres.Config{})
	ctx := t.Context()
	events := []eventstore.Event{
		{ID: uuid.New(), Type: "a", Data: []byte(`{}`)},
		{ID: uuid.New(), Type: "b", Data: []byte(`{}`)},
	}
	first, err := s.Append(ctx, "r", eventstore.NoStream, events...)
	if err != nil || first.Repeated {
		t.Fatalf("first append = %+v, %v; want written, not Repeated", first, err)
	}
	again, err := s.Append(ctx, "r", eventstore.NoStream, events...)
	want := first
	want.Repeated = true
	if err != nil || again != want {
		t.Fatalf("repeat = %+v, %v; want %+v", again, err, want)
	}

	// Racing identical appends land in one group commit or several: one
	// writes, every other is a repeat with the same versions and position.
	racing := []eventstore.Event{{ID: uuid.New(), Type: "c"}}
	const callers = 32
	results := make([]eventstore.AppendResult, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { results[i], errs[i] = s.Append(ctx, "r", eventstore.Exact(2), racing...) })
	}
	wg.Wait()
	writes := 0
	for i, res := range results {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if !res.Repeated {
			writes++
		}
		res.Repeated = false
		if want := (eventstore.AppendResult{StreamID: "r", FirstVersion: 3, LastVersion: 3, Position: eventstore.SeqPosition(3)}); res != want {
			t.Errorf("caller %d: %+v, want %+v", i, res, want)
		}
	}
	if writes != 1 {
		t.Errorf("%d of %d racing identical appends wrote, want 1", writes, callers)
	}
	if head, err := s.Head(ctx); err != nil || head != eventstore.SeqPosition(3) {
		t.Errorf("Head = %s, %v; want 3", head, err)
	}
}

// TestSubscribeWokenByNotify checks that a subscription is woken by a commit
// of another Store (as of another process) through LISTEN/NOTIFY: the poll
// interval is an hour, so nothing else could wake it. Then it kills the
// listening connection on the server; the subscription still gets the next
// commit, through the reconnected listener.
func TestSubscribeWokenByNotify(t *testing.T) {
	db := testDB(t)
	reader := openStore(t, db, postgres.Config{Schema: "notify", PollInterval: time.Hour})
	writer := openStore(t, db, postgres.Config{Schema: "notify"})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	got := make(chan eventstore.Record)
	subErr := make(chan error, 1)
	go func() {
		for rec, err := range reader.Subscribe(ctx, eventstore.Start) {
			if err != nil {
				subErr <- err
				return
			}
			select {
			case got <- rec:
			case <-ctx.Done():
			}
		}
	}()
	next := func(want eventstore.AppendResult) {
		t.Helper()
		select {
		case rec := <-got:
			if rec.Position != want.Position {
				t.Fatalf("subscription yielded %s, want %s", rec.Position, want.Position)
			}
		case err := <-subErr:
			t.Fatalf("subscription ended: %v", err)
		case <-ctx.Done():
			t.Fatalf("no record at %s from the subscription", want.Position)
		}
	}
	// The listener starts with the subscription; wait for it to listen, so
	// that the first append is not found by the subscription's first read.
	waitListening(t, db, "eventline_notify", 1)
	next(mustAppend(t, writer, "n", eventstore.Any))

	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN eventline_notify'`); err != nil {
		t.Fatal(err)
	}
	waitListening(t, db, "eventline_notify", 1)
	next(mustAppend(t, writer, "n", eventstore.Any))
	next(mustAppend(t, writer, "n", eventstore.Any))
}

// waitListening waits until n connections of db have run LISTEN channel and
// are idle, i.e. wait for notifications.
func waitListening(t *testing.T, db, channel string, n int) {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var count int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND query = 'LISTEN '||$1 AND state = 'idle'`, channel).Scan(&count); err != nil {
			t.Fatal(err)
		}
		if count == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections listen on %s, want %d", count, channel, n)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
}

func mustAppend(t *testing.T, s eventstore.Store, stream string, expected eventstore.ExpectedVersion) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(t.Context(), stream, expected, eventstore.Event{Type: "e", Data: []byte(`{}`)})
	if err != nil {
		t.Fatalf("Append(%q): %v", stream, err)
	}
	return res
}

// TestEventIDCommittedWhileWaiting checks the one-statement path against an
// event id that another process commits after the statement took its
// snapshot: store a holds the head row with the id written but not yet
// committed; store b's append of the same id waits for the head row, then
// runs on. The unique index on ids must catch it, so that b's append is
// refused as a duplicate (another stream) or answered as a repeat (the same
// append), and the id is in the log once.
func TestEventIDCommittedWhileWaiting(t *testing.T) {
	db := testDB(t)
	for _, tc := range []struct {
		name   string
		stream string // b's stream; a appends to "mine"
	}{
		{"duplicate in another stream", "other"},
		{"repeat of the same append", "mine"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			schema := fmt.Sprintf("waiting%d", schemas.Add(1))
			a := openStore(t, db, postgres.Config{Schema: schema})
			b := openStore(t, db, postgres.Config{Schema: schema})
			admin, err := pgx.Connect(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close(context.Background())
			e := eventstore.Event{ID: uuid.New(), Type: "x", Data: []byte(`{}`)}
			type outcome struct {
				res eventstore.AppendResult
				err error
			}
			fromB := make(chan outcome, 1)
			var waited error
			first := true
			postgres.SetBeforeCommit(a, func() {
				if !first {
					return
				}
				first = false
				go func() {
					res, err := b.Append(ctx, tc.stream, eventstore.NoStream, e)
					fromB <- outcome{res, err}
				}()
				// Commit only once b's statement waits for the head row.
				for {
					var n int
					if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
						WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
						waited = err
						return
					}
					if n > 0 {
						return
					}
					select {
					case <-ctx.Done():
						waited = ctx.Err()
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
			})
			resA, err := a.Append(ctx, "mine", eventstore.NoStream, e)
			if err != nil || waited != nil {
				t.Fatalf("a's append = %+v, %v (waiting for b: %v)", resA, err, waited)
			}
			got := <-fromB
			if tc.stream == "mine" {
				want := resA
				want.Repeated = true
				if got.err != nil || got.res != want {
					t.Errorf("b's repeat = %+v, %v; want %+v", got.res, got.err, want)
				}
			} else if !errors.Is(got.err, eventstore.ErrDuplicateEvent) {
				t.Errorf("b's append of an id in another stream: %+v, %v; want ErrDuplicateEvent", got.res, got.err)
			}
			if head, err := b.Head(ctx); err != nil || head != resA.Position {
				t.Errorf("Head = %s, %v; want %s (the event once)", head, err, resA.Position)
			}
		})
	}
}
