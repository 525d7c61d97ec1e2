package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/cputime"
)

// The benchmarks append events shaped like the sample's: a small JSON payload
// and a correlation id, to random streams out of benchStreams with exact
// expected versions. BenchmarkRawSQLiteTx100 is the ceiling they are measured
// against: the same rows inserted with plain database/sql into the same
// schema with the same pragmas, 100 rows per transaction, no framework.
//
//	go test -run='^$' -bench=. -benchtime=3s ./eventstore/sqlite/

const benchStreams = 10_000

var (
	benchData     = []byte(`{"sku":"tea-000123","qty":2,"unit_price":1250,"currency":"EUR"}`)
	benchMetadata = eventstore.Metadata{CorrelationID: "0b9c2f5e-7d3a-4a51-9f0e-3c1d2b4a5e6f"}
)

// benchStore opens a store with synchronous=NORMAL, the mode of the
// ceilings below, unless mode says otherwise.
func benchStore(b *testing.B, mode ...SyncMode) *Store {
	b.Helper()
	cfg := Config{Path: filepath.Join(b.TempDir(), "events.db"), Sync: SyncNormal}
	if len(mode) > 0 {
		cfg.Sync = mode[0]
	}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func benchEvents(n int) []eventstore.Event {
	events := make([]eventstore.Event, n)
	for i := range events {
		events[i] = eventstore.Event{Type: "cart.item_added", Data: benchData, Metadata: benchMetadata}
	}
	return events
}

// reportEvents reports events/s and the process's CPU time per event since
// cpuBefore.
func reportEvents(b *testing.B, events int, cpuBefore time.Duration) {
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	if cpu := cputime.Process(); events > 0 && cpu > 0 {
		b.ReportMetric(float64(cpu-cpuBefore)/float64(time.Microsecond)/float64(events), "cpu-µs/event")
	}
	b.ReportMetric(0, "ns/op") // per-op time is misleading where an op is a batch
}

func reportGroups(b *testing.B, s *Store, commitsBefore uint64, appends int) {
	if commits := s.w.commits.Load() - commitsBefore; commits > 0 {
		b.ReportMetric(float64(appends)/float64(commits), "appends/commit")
	}
}

// appendLoop makes n appends of size events each to random streams out of
// streams, tracking versions so every expectation is exact.
func appendLoop(b *testing.B, s *Store, n, size int, streams []string, rng *rand.Rand) {
	versions := make([]uint64, len(streams))
	events := benchEvents(size)
	ctx := context.Background()
	for range n {
		i := rng.IntN(len(streams))
		if _, err := s.Append(ctx, streams[i], eventstore.Exact(versions[i]), events...); err != nil {
			b.Error(err)
			return
		}
		versions[i] += uint64(size)
	}
}

func streamNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("cart-%d", i)
	}
	return names
}

func BenchmarkAppendSingle(b *testing.B) { appendSingle(b, SyncNormal) }

// BenchmarkAppendSingleFull is the same on the default synchronous=FULL: one
// fsync per append, bounded by the disk's synced writes per second.
func BenchmarkAppendSingleFull(b *testing.B) { appendSingle(b, SyncFull) }

func appendSingle(b *testing.B, mode SyncMode) {
	s := benchStore(b, mode)
	b.ResetTimer()
	cpu := cputime.Process()
	appendLoop(b, s, b.N, 1, streamNames(benchStreams), rand.New(rand.NewPCG(1, 2)))
	reportEvents(b, b.N, cpu)
}

func BenchmarkAppendBatch(b *testing.B) {
	s := benchStore(b)
	b.ResetTimer()
	cpu := cputime.Process()
	appendLoop(b, s, b.N, 100, streamNames(benchStreams), rand.New(rand.NewPCG(1, 2)))
	reportEvents(b, 100*b.N, cpu)
}

// BenchmarkAppendConcurrent64 has 64 callers appending one event each; caller
// g owns the streams whose number is g modulo 64, so its exact expectations
// never race another caller's.
func BenchmarkAppendConcurrent64(b *testing.B) { appendConcurrent64(b, SyncNormal) }

// BenchmarkAppendConcurrent64Full is the same on the default
// synchronous=FULL, where each group commit costs an fsync.
func BenchmarkAppendConcurrent64Full(b *testing.B) { appendConcurrent64(b, SyncFull) }

func appendConcurrent64(b *testing.B, mode SyncMode) {
	const callers = 64
	s := benchStore(b, mode)
	names := streamNames(benchStreams)
	commits := s.w.commits.Load()
	b.ResetTimer()
	cpu := cputime.Process()
	var wg sync.WaitGroup
	for g := range callers {
		var own []string
		for i := g; i < len(names); i += callers {
			own = append(own, names[i])
		}
		n := b.N / callers
		if g < b.N%callers {
			n++
		}
		wg.Go(func() { appendLoop(b, s, n, 1, own, rand.New(rand.NewPCG(uint64(g), 2))) })
	}
	wg.Wait()
	reportEvents(b, b.N, cpu)
	reportGroups(b, s, commits, b.N)
}

// BenchmarkReadAll scans a log of 100,000 events from the start.
func BenchmarkReadAll(b *testing.B) {
	const logSize = 100_000
	s := benchStore(b)
	ctx := context.Background()
	events := benchEvents(1000)
	for i := range logSize / len(events) {
		for k := range events {
			events[k].ID = uuid.Nil
		}
		if _, err := s.Append(ctx, fmt.Sprintf("cart-%d", i), eventstore.NoStream, events...); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	cpu := cputime.Process()
	for range b.N {
		n := 0
		for _, err := range s.ReadAll(ctx, eventstore.Start) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != logSize {
			b.Fatalf("read %d events, want %d", n, logSize)
		}
	}
	reportEvents(b, b.N*logSize, cpu)
}

// BenchmarkRawSQLiteTx100 is the ceiling: plain modernc.org/sqlite inserts,
// 100 rows per transaction, into the store's own schema with the store's
// pragmas; the rows are the ones the store writes (random stream out of
// 10,000, next version, a time-ordered UUIDv7 event id as the store
// generates, the same payload and metadata).
func BenchmarkRawSQLiteTx100(b *testing.B) { rawInserts(b, 100, newV7) }

// BenchmarkRawSQLiteTx100RandomIDs is the same with random (v4) event ids,
// to show what ordered ids are worth: random ids scatter inserts over the
// event-id index.
func BenchmarkRawSQLiteTx100RandomIDs(b *testing.B) { rawInserts(b, 100, uuid.New) }

// BenchmarkRawSQLiteTx1 is the same with one row per transaction, the
// ceiling of a store without group commit.
func BenchmarkRawSQLiteTx1(b *testing.B) { rawInserts(b, 1, newV7) }

// newV7 returns the time-ordered kind of id eventstore.PrepareAppend gives
// events appended without one.
func newV7() uuid.UUID { return uuid.Must(uuid.NewV7()) }

func rawInserts(b *testing.B, txRows int, newID func() uuid.UUID) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", dsn(filepath.Join(b.TempDir(), "raw.db"), "busy_timeout(10000)",
		"journal_mode(WAL)", "synchronous(NORMAL)", "cache_size(-32768)"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema); err != nil {
		b.Fatal(err)
	}
	for i := range benchStreams {
		if _, err := db.Exec("INSERT INTO streams (id, name) VALUES (?, ?)", i+1, fmt.Sprintf("cart-%d", i)); err != nil {
			b.Fatal(err)
		}
	}
	insert, err := db.Prepare(insertEventSQL)
	if err != nil {
		b.Fatal(err)
	}
	defer insert.Close()
	versions := make([]int64, benchStreams)
	rng := rand.New(rand.NewPCG(1, 2))
	var position int64
	b.ResetTimer()
	cpu := cputime.Process()
	for done := 0; done < b.N; {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		stmt := tx.StmtContext(ctx, insert)
		for k := 0; k < txRows && done < b.N; k, done = k+1, done+1 {
			i := rng.IntN(benchStreams)
			versions[i]++
			id := newID()
			position++
			if _, err := stmt.ExecContext(ctx, position, i+1, versions[i], id[:], "cart.item_added",
				int64(done), benchMetadata.CorrelationID, nil, nil, benchData); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	reportEvents(b, b.N, cpu)
}
