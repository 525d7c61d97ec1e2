package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/postgres"
	"github.com/eventline/eventline/internal/pgtest"
	"github.com/eventline/eventline/sample/app"
	"github.com/eventline/eventline/sample/domain/cart"
)

// The benchmarks run on the shared server, each on a fresh database. Events
// are shaped like the sample's: a small JSON payload and a correlation id.
// The ceilings insert the same rows into the same table with plain pgx, no
// framework: 100 rows per INSERT and transaction, and COPY; and read them
// back in pages of 1,000 (CeilingReadAll).
//
//	go test -run='^$' -bench='Ceiling|Append' -benchtime=3s ./eventstore/postgres/
//	go test -run='^$' -bench='CartWorkload|ReadAll' -benchtime=1x ./eventstore/postgres/

var (
	benchData     = []byte(`{"sku":"tea-000123","qty":2,"unit_price":1250,"currency":"EUR"}`)
	benchMetadata = eventstore.Metadata{CorrelationID: "0b9c2f5e-7d3a-4a51-9f0e-3c1d2b4a5e6f"}
)

func benchStore(b *testing.B, cfg postgres.Config) (*postgres.Store, string) {
	b.Helper()
	db := pgtest.Database(b)
	cfg.Logger = nil
	return openStore(b, db, cfg), db
}

func reportRate(b *testing.B, n int, unit string) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), unit)
	b.ReportMetric(0, "ns/op") // per-op time is misleading where an op is a batch
}

// BenchmarkAppend appends one event per append to streams of the writer's
// own with exact expected versions, from 1 and 64 goroutines.
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s, _ := benchStore(b, postgres.Config{})
			commits := postgres.Commits(s)
			b.ResetTimer()
			var wg sync.WaitGroup
			var next atomic.Int64
			for w := range writers {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(w), 0))
					versions := make([]uint64, 100)
					for next.Add(1) <= int64(b.N) {
						i := rng.IntN(len(versions))
						e := eventstore.Event{Type: "cart.item_added", Data: benchData, Metadata: benchMetadata}
						if _, err := s.Append(context.Background(), fmt.Sprintf("w%d-%d", w, i), eventstore.Exact(versions[i]), e); err != nil {
							b.Error(err)
							return
						}
						versions[i]++
					}
				})
			}
			wg.Wait()
			reportRate(b, b.N, "events/s")
			if c := postgres.Commits(s) - commits; c > 0 {
				b.ReportMetric(float64(b.N)/float64(c), "appends/commit")
			}
		})
	}
}

// ceilingRows inserts rows into the events table of a fresh store's schema,
// with plain pgx on one connection.
func ceilingRows(b *testing.B, insert func(ctx context.Context, conn *pgx.Conn, first int64, n int) error, per int) {
	_, db := benchStore(b, postgres.Config{Schema: "ceiling"})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO ceiling.streams (name) SELECT 's' || g FROM generate_series(1, 100) g`); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for first := int64(0); first < int64(b.N); first += int64(per) {
		if err := insert(ctx, conn, first, min(per, b.N-int(first))); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, b.N, "rows/s")
}

// BenchmarkCeilingInsert100 is the ceiling of appends: 100 rows per INSERT
// (one statement of arrays) and transaction.
func BenchmarkCeilingInsert100(b *testing.B) {
	ceilingRows(b, func(ctx context.Context, conn *pgx.Conn, first int64, n int) error {
		pos, stream, version := make([]int64, n), make([]int64, n), make([]int64, n)
		ids, data, corr := make([][16]byte, n), make([][]byte, n), make([]string, n)
		for i := range n {
			p := first + int64(i) + 1
			pos[i], stream[i], version[i] = p, p%100+1, p/100+1
			ids[i], data[i], corr[i] = uuid.Must(uuid.NewV7()), benchData, benchMetadata.CorrelationID
		}
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO ceiling.events (position, stream, version, id, type, recorded_at, correlation_id, data)
				SELECT u.p, u.s, u.v, u.id, 'cart.item_added', now(), u.c, u.d
				FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::uuid[], $5::text[], $6::bytea[]) AS u(p, s, v, id, c, d)`,
				pos, stream, version, ids, corr, data)
			return err
		})
	}, 100)
}

// BenchmarkCeilingCopy is COPY of 1,000 rows per transaction.
func BenchmarkCeilingCopy(b *testing.B) {
	ceilingRows(b, func(ctx context.Context, conn *pgx.Conn, first int64, n int) error {
		rows := make([][]any, n)
		now := time.Now()
		for i := range n {
			p := first + int64(i) + 1
			rows[i] = []any{p, p%100 + 1, p/100 + 1, [16]byte(uuid.Must(uuid.NewV7())), "cart.item_added", now,
				benchMetadata.CorrelationID, benchData}
		}
		_, err := conn.CopyFrom(ctx, pgx.Identifier{"ceiling", "events"},
			[]string{"position", "stream", "version", "id", "type", "recorded_at", "correlation_id", "data"},
			pgx.CopyFromRows(rows))
		return err
	}, 1000)
}

// BenchmarkCartWorkload runs the sample's cart workload through
// command.Handler with 64 callers: 10,000 carts of 7 commands (open, 5 items,
// check out), 70,000 commands per iteration. Run it with -benchtime=1x.
func BenchmarkCartWorkload(b *testing.B) {
	const carts, steps, callers = 10_000, 7, 64
	s, _ := benchStore(b, postgres.Config{})
	h, err := command.NewHandler(s, app.NewRegistry(), cart.Decider, command.Config{Name: "cart"})
	if err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	var mu sync.Mutex
	commits := postgres.Commits(s)
	b.ResetTimer()
	for iter := range b.N {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				var mine []time.Duration
				defer func() { mu.Lock(); lat = append(lat, mine...); mu.Unlock() }()
				for {
					i := int(next.Add(1)) - 1
					if i >= carts {
						return
					}
					id := fmt.Sprintf("b%d-%d", iter, i)
					for step := range steps {
						var cmd cart.Command
						switch step {
						case 0:
							cmd = cart.Open{CustomerID: "cust-" + strconv.Itoa(i%97)}
						case steps - 1:
							cmd = cart.CheckOut{OrderID: "order-" + id}
						default:
							cmd = cart.AddItem{ProductID: fmt.Sprintf("sku-%d", step), Quantity: 1 + step%3, UnitPriceCents: int64(100 + 25*step)}
						}
						t0 := time.Now()
						if _, err := h.Handle(context.Background(), id, cmd); err != nil {
							b.Errorf("cart %s step %d: %v", id, step, err)
							return
						}
						mine = append(mine, time.Since(t0))
					}
				}
			})
		}
		wg.Wait()
	}
	reportRate(b, len(lat), "commands/s")
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "p99-ms")
	}
	if c := postgres.Commits(s) - commits; c > 0 {
		b.ReportMetric(float64(len(lat))/float64(c), "appends/commit")
	}
}

// readEvents is the length of the log the read benchmarks read.
const readEvents = 200_000

// seedLog appends readEvents events to 100 streams of s, 1,000 per append.
func seedLog(b *testing.B, s *postgres.Store) {
	b.Helper()
	ctx := context.Background()
	batch := make([]eventstore.Event, 1000)
	for i := range batch {
		batch[i] = eventstore.Event{Type: "cart.item_added", Data: benchData, Metadata: benchMetadata}
	}
	for i := range readEvents / len(batch) {
		for k := range batch {
			batch[k].ID = uuid.Nil
		}
		if _, err := s.Append(ctx, "s"+strconv.Itoa(i%100), eventstore.Any, batch...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCeilingReadAll is the ceiling of reads: the same log read with
// plain pgx on one connection, pages of 1,000 rows by position, each row
// scanned into Go values (the data copied) and its stream named by a join.
func BenchmarkCeilingReadAll(b *testing.B) {
	s, db := benchStore(b, postgres.Config{Schema: "ceiling"})
	seedLog(b, s)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	b.ResetTimer()
	read := 0
	for range b.N {
		for after := int64(0); ; {
			rows, err := conn.Query(ctx, `SELECT e.position, e.version, e.id, e.type, e.recorded_at,
					e.correlation_id, e.causation_id, e.headers, e.data, s.name
				FROM ceiling.events e JOIN ceiling.streams s ON s.id = e.stream
				WHERE e.position > $1 ORDER BY e.position LIMIT 1000`, after)
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			var pos, version int64
			var id [16]byte
			var typ, stream string
			var corr, caus *string
			var at time.Time
			var headers, data []byte
			for rows.Next() {
				if err := rows.Scan(&pos, &version, &id, &typ, &at, &corr, &caus, &headers, &data, &stream); err != nil {
					b.Fatal(err)
				}
				n++
			}
			if err := rows.Err(); err != nil {
				b.Fatal(err)
			}
			read += n
			if n == 0 {
				break
			}
			after = pos
		}
	}
	if read != b.N*readEvents {
		b.Fatalf("read %d rows, want %d", read, b.N*readEvents)
	}
	reportRate(b, read, "rows/s")
}

// BenchmarkReadAll reads a log of 200,000 events from the start, as a
// projection catching up does.
func BenchmarkReadAll(b *testing.B) {
	const events = readEvents
	s, _ := benchStore(b, postgres.Config{})
	ctx := context.Background()
	seedLog(b, s)
	b.ResetTimer()
	read := 0
	for range b.N {
		for _, err := range s.ReadAll(ctx, eventstore.Start) {
			if err != nil {
				b.Fatal(err)
			}
			read++
		}
	}
	if read != b.N*events {
		b.Fatalf("read %d events, want %d", read, b.N*events)
	}
	reportRate(b, read, "events/s")
}
