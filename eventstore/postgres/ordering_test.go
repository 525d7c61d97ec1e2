package postgres_test

import (
	"bytes"
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/eventstore/postgres"
)

type childProc struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
}

func execCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, name, args...)
}

// TestGlobalOrderAcrossProcesses is the ordering proof: 4 processes of 16
// goroutines append, their writers holding some transactions open on purpose
// while others commit, and a subscriber in a 5th process pages the log 7
// records at a time. The subscriber must see every event exactly once, at
// positions 1, 2, 3… in that order, and what it saw must equal the table,
// which must hold every acknowledged append where it was acknowledged.
func TestGlobalOrderAcrossProcesses(t *testing.T) {
	db := testDB(t)
	const (
		processes  = 4
		goroutines = 16
		appends    = 30
		schema     = "ordering"
	)
	// Creating the schema first keeps the children's start quick; they would
	// agree on it anyway (Open takes an advisory lock to create it).
	openStore(t, db, postgres.Config{Schema: schema})
	perGoroutine := 0
	for k := range appends {
		perGoroutine += 1 + k%3
	}
	total := processes * goroutines * perGoroutine

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	sub, err := startChild(ctx, "subscriber", db, subscriberArgs{Schema: schema, Expected: total, PageSize: 7, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var writers []*childProc
	for p := range processes {
		w, err := startChild(ctx, "writer", db, writerArgs{Schema: schema, Process: p, Goroutines: goroutines,
			Appends: appends, HoldEvery: 5, HoldMax: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		writers = append(writers, w)
	}
	type acked struct {
		stream  string
		version uint64
	}
	ackedAt := map[uuid.UUID]acked{}
	for p, w := range writers {
		var rep writerReport
		if err := w.wait(&rep); err != nil {
			t.Fatalf("writer %d: %v", p, err)
		}
		if rep.Err != "" {
			t.Fatalf("writer %d: %s", p, rep.Err)
		}
		for _, a := range rep.Acked {
			for i, id := range a.IDs {
				ackedAt[id] = acked{a.Stream, a.First + uint64(i)}
			}
		}
	}
	if len(ackedAt) != total {
		t.Fatalf("writers acknowledged %d events, want %d", len(ackedAt), total)
	}
	var rep subscriberReport
	if err := sub.wait(&rep); err != nil {
		t.Fatalf("subscriber: %v", err)
	}
	if rep.Err != "" {
		t.Fatalf("subscriber saw %d of the %d events, then: %s", len(rep.Records), total, rep.Err)
	}

	// Exactly once, in order, without gaps.
	for i, r := range rep.Records {
		if r.Position != uint64(i+1) {
			t.Fatalf("subscriber's record %d is at position %d, want %d (previous: %+v)", i, r.Position, i+1, rep.Records[max(i-1, 0)])
		}
	}
	// The table, folded in position order, is what the subscriber saw, and
	// holds every acknowledged event where it was acknowledged.
	table := readTable(t, db, schema)
	if len(table) != len(rep.Records) {
		t.Fatalf("the table holds %d events, the subscriber saw %d", len(table), len(rep.Records))
	}
	for i, r := range table {
		if r != rep.Records[i] {
			t.Fatalf("position %d: the table holds %+v, the subscriber saw %+v", r.Position, r, rep.Records[i])
		}
		if a, ok := ackedAt[r.ID]; !ok || a.stream != r.Stream || a.version != r.Version {
			t.Fatalf("event %s at %s version %d was acknowledged as %+v (%v)", r.ID, r.Stream, r.Version, a, ok)
		}
	}
}

// readTable returns the events of schema in position order, read with SQL.
func readTable(t *testing.T, db, schema string) []seenRecord {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT e.position, e.id, s.name, e.version FROM `+schema+`.events e
		JOIN `+schema+`.streams s ON s.id = e.stream ORDER BY e.position`)
	if err != nil {
		t.Fatal(err)
	}
	var out []seenRecord
	var r seenRecord
	var id [16]byte
	var position, version int64
	if _, err := pgx.ForEachRow(rows, []any{&position, &id, &r.Stream, &version}, func() error {
		r.Position, r.ID, r.Version = uint64(position), id, uint64(version)
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}
