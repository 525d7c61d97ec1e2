package postgres_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/eventstoretest"
	"github.com/eventline/eventline/eventstore/postgres"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(envChild); role != "" {
		os.Exit(runChild(role))
	}
	code := m.Run()
	if shared.private != nil {
		shared.private.stop()
	}
	os.Exit(code)
}

// testDB is one database for the tests of this run that need a fresh store;
// each store gets a schema of its own in it.
func testDB(t testing.TB) string {
	t.Helper()
	return newDatabase(t, sharedServer(t))
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
