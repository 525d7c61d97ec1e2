package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/postgres"
	"github.com/eventline/eventline/internal/pgtest"
)

// TestRestartUnderLoad restarts PostgreSQL (pg_ctl restart -m fast) while 16
// goroutines append and a subscription reads. Appends that fail must fail
// with eventstore.ErrUnavailable; retried with the same event ids, they must
// end written exactly once. Afterwards the log holds every acknowledged event
// once, at the version it was acknowledged with, and the subscription, which
// resumed by itself, saw the whole log in order.
func TestRestartUnderLoad(t *testing.T) {
	srv := pgtest.StartPrivate(t)
	db := pgtest.NewDatabase(t, srv.URL("postgres"))
	s := openStore(t, db, postgres.Config{Schema: "restart", CommitTimeout: 5 * time.Second})
	reader := openStore(t, db, postgres.Config{Schema: "restart", PageSize: 50})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	var seen []eventstore.Record
	var seenMu sync.Mutex
	subDone := make(chan error, 1)
	subCtx, stopSub := context.WithCancel(ctx)
	defer stopSub()
	go func() {
		for rec, err := range reader.Subscribe(subCtx, eventstore.Start) {
			if err != nil {
				subDone <- err
				return
			}
			seenMu.Lock()
			seen = append(seen, rec)
			seenMu.Unlock()
		}
	}()

	const goroutines = 16
	var (
		acked      sync.Map // event id → "stream/version"
		ackedCount atomic.Int64
		failures   atomic.Int64
		repeats    atomic.Int64
		restarted  atomic.Bool
		mu         sync.Mutex
		firstErr   error
	)
	afterRestart := make([]atomic.Int64, goroutines)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			stream := fmt.Sprintf("g%d", g)
			version := uint64(0)
			for k := 0; ; k++ {
				if restarted.Load() && afterRestart[g].Load() >= 20 {
					return
				}
				events := []eventstore.Event{{ID: uuid.New(), Type: "e"}, {ID: uuid.New(), Type: "e"}}
				var res eventstore.AppendResult
				for {
					var err error
					res, err = s.Append(ctx, stream, eventstore.Exact(version), events...)
					if err == nil {
						break
					}
					if ctx.Err() != nil {
						return
					}
					if !errors.Is(err, eventstore.ErrUnavailable) {
						fail(fmt.Errorf("stream %s append %d: %w", stream, k, err))
						return
					}
					failures.Add(1)
					time.Sleep(20 * time.Millisecond) // back-off before a retry, not synchronisation
				}
				if res.Repeated {
					repeats.Add(1)
				}
				if res.FirstVersion != version+1 || res.LastVersion != version+2 {
					fail(fmt.Errorf("stream %s append %d: versions %d-%d, want %d-%d", stream, k,
						res.FirstVersion, res.LastVersion, version+1, version+2))
					return
				}
				for i, e := range events {
					acked.Store(e.ID, fmt.Sprintf("%s/%d", stream, version+1+uint64(i)))
				}
				ackedCount.Add(2)
				version = res.LastVersion
				if restarted.Load() {
					afterRestart[g].Add(1)
				}
			}
		})
	}
	waitUntil(t, ctx, func() bool { return ackedCount.Load() >= 2000 }, "2000 events appended before the restart")
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted.Store(true)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	t.Logf("%d events acknowledged; %d appends failed and were retried, %d retries found written (Repeated)",
		ackedCount.Load(), failures.Load(), repeats.Load())

	table := readTable(t, db, "restart")
	if int64(len(table)) != ackedCount.Load() {
		t.Errorf("the log holds %d events, %d were acknowledged", len(table), ackedCount.Load())
	}
	for i, r := range table {
		if r.Position != uint64(i+1) {
			t.Fatalf("record %d is at position %d", i, r.Position)
		}
		want, ok := acked.Load(r.ID)
		if got := fmt.Sprintf("%s/%d", r.Stream, r.Version); !ok || got != want {
			t.Fatalf("event %s is %s in the log, acknowledged as %v", r.ID, got, want)
		}
	}
	waitUntil(t, ctx, func() bool {
		seenMu.Lock()
		defer seenMu.Unlock()
		return len(seen) >= len(table)
	}, "the subscription reading the whole log")
	stopSub()
	if err := <-subDone; !errors.Is(err, context.Canceled) {
		t.Errorf("subscription ended with %v, want context.Canceled", err)
	}
	if len(seen) != len(table) {
		t.Fatalf("subscription saw %d records, the log holds %d", len(seen), len(table))
	}
	for i, rec := range seen {
		if rec.Position.Commit != table[i].Position || rec.ID != table[i].ID {
			t.Fatalf("subscription record %d: %s at %s, the log has %s at %d", i, rec.ID, rec.Position, table[i].ID, table[i].Position)
		}
	}
}

// waitUntil waits for cond, checking it every few milliseconds, and fails
// the test with what when ctx ends first.
func waitUntil(t *testing.T, ctx context.Context, cond func() bool, what string) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}
