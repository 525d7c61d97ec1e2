package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/postgres"
)

// TestConnectionKilledBeforeCommit kills the writer's backend while its
// transaction waits for COMMIT. The append must fail with
// eventstore.ErrUnavailable (the outcome may be reported unknown), and its
// retry with the same event ids must leave the events in the log exactly
// once.
func TestConnectionKilledBeforeCommit(t *testing.T) {
	db := testDB(t)
	s := openStore(t, db, postgres.Config{Schema: "killed"})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	killed := make(chan error, 1)
	first := true
	postgres.SetBeforeCommit(s, func() {
		if !first {
			return
		}
		first = false
		var n int
		err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND state = 'idle in transaction'`).Scan(&n)
		if err == nil && n != 1 {
			err = errors.New("no single transaction waiting for COMMIT")
		}
		killed <- err
	})
	events := []eventstore.Event{{ID: uuid.New(), Type: "a"}, {ID: uuid.New(), Type: "b"}}
	_, err = s.Append(ctx, "k", eventstore.NoStream, events...)
	if kerr := <-killed; kerr != nil {
		t.Fatalf("killing the writer's backend: %v", kerr)
	}
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("append whose connection was killed: err = %v, want ErrUnavailable", err)
	}
	t.Logf("append failed with: %v (outcome unknown: %v)", err, errors.Is(err, postgres.ErrOutcomeUnknown))

	res, err := s.Append(ctx, "k", eventstore.NoStream, events...)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if res.FirstVersion != 1 || res.LastVersion != 2 {
		t.Errorf("retry = %+v, want versions 1-2", res)
	}
	again, err := s.Append(ctx, "k", eventstore.NoStream, events...)
	if want := (eventstore.AppendResult{StreamID: "k", FirstVersion: 1, LastVersion: 2, Position: res.Position, Repeated: true}); err != nil || again != want {
		t.Errorf("second retry = %+v, %v; want %+v", again, err, want)
	}
	var recs []eventstore.Record
	for rec, err := range s.ReadAll(ctx, eventstore.Start) {
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	if len(recs) != 2 || recs[0].ID != events[0].ID || recs[1].ID != events[1].ID {
		t.Errorf("the log holds %d records, want the 2 events once", len(recs))
	}
}
