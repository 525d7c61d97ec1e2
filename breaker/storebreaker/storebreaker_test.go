package storebreaker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/eventline/eventline/breaker"
	"github.com/eventline/eventline/breaker/storebreaker"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/eventstore/postgres"
	"github.com/eventline/eventline/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func event() eventstore.Event { return eventstore.Event{Type: "thing.happened", Data: []byte(`{}`)} }

func TestRefusalsDoNotOpen(t *testing.T) {
	b := breaker.Must(breaker.Config{Name: "store", Failures: 2, OpenFor: time.Hour})
	st, err := storebreaker.Wrap(memory.New(), storebreaker.Config{Breaker: b})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := st.Append(ctx, "s-1", eventstore.NoStream, event()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := st.Append(ctx, "s-1", eventstore.NoStream, event()); !errors.Is(err, eventstore.ErrWrongVersion) {
			t.Fatalf("append at a wrong version: %v", err)
		}
		for _, err := range st.ReadStream(ctx, "missing", 1) {
			if !errors.Is(err, eventstore.ErrStreamNotFound) {
				t.Fatalf("read of a missing stream: %v", err)
			}
		}
	}
	if s := b.State(); s != breaker.StateClosed {
		t.Fatalf("state %v after refusals, want closed", s)
	}
}

// TestStoreDownOpensAndRecovers stops a private PostgreSQL server under a
// breaker-wrapped store: appends fail, the breaker opens and appends fail
// fast with ErrOpen; after a restart a probe closes it, and every append that
// was acknowledged is in the log exactly once.
func TestStoreDownOpensAndRecovers(t *testing.T) {
	srv := pgtest.StartPrivate(t)
	db := pgtest.NewDatabase(t, srv.URL("postgres"))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	pg, err := postgres.Open(ctx, postgres.Config{URL: db, Schema: "breaker"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Close() })
	b := breaker.Must(breaker.Config{Name: "store", Failures: 3, OpenFor: 100 * time.Millisecond})
	st, err := storebreaker.Wrap(pg, storebreaker.Config{Breaker: b, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}

	acked := map[string]bool{}
	n := 0
	appendOne := func() error {
		n++
		stream := fmt.Sprintf("s-%d", n)
		_, err := st.Append(ctx, stream, eventstore.NoStream, event())
		if err == nil {
			acked[stream] = true
		}
		return err
	}
	for i := 0; i < 5; i++ {
		if err := appendOne(); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for b.State() != breaker.StateOpen {
		if ctx.Err() != nil {
			t.Fatalf("breaker still %v with the server stopped", b.State())
		}
		_ = appendOne()
	}
	err = appendOne()
	var oe *breaker.OpenError
	if !errors.As(err, &oe) || oe.Name != "store" {
		t.Fatalf("append with the breaker open: %v, want an *OpenError naming the store", err)
	}
	if _, err := st.Head(ctx); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("Head with the breaker open: %v", err)
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	for {
		if err := appendOne(); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("breaker %v: appends still fail after the restart", b.State())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s := b.State(); s != breaker.StateClosed {
		t.Fatalf("state %v after a good probe, want closed", s)
	}
	// A pooled connection may still be one the restart cut: read again
	// until a whole reading succeeds.
	var found map[string]int
	for found == nil {
		found = map[string]int{}
		for rec, err := range pg.ReadAll(ctx, eventstore.Start) {
			if err != nil {
				if ctx.Err() != nil {
					t.Fatal(err)
				}
				found = nil
				break
			}
			found[rec.StreamID]++
		}
	}
	for s := range acked {
		if found[s] != 1 {
			t.Errorf("acknowledged append to %s is in the log %d times", s, found[s])
		}
	}
	t.Logf("%d appends acknowledged, %d in the log", len(acked), len(found))
}
