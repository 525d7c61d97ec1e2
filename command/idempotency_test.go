package command_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
)

// withKey counts the records of stream written by command id key.
func withKey(t *testing.T, store eventstore.Store, stream, key string) int {
	t.Helper()
	n := 0
	for _, r := range readAll(t, store, stream) {
		if r.Metadata.Headers[command.HeaderCommandID] == key {
			n++
		}
	}
	return n
}

func TestIdempotentSequential(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	h := mustHandler(t, store, command.Config{})
	kctx := command.WithID(ctx, "open-1")
	first, err := h.Handle(kctx, "1", openWithDeposit{Owner: "ann", Amount: 10})
	if err != nil {
		t.Fatal(err)
	}
	want := command.Result[accountEvent]{StreamID: "account-1", Version: 2, Position: eventstore.SeqPosition(2),
		Events: []accountEvent{accountOpened{Owner: "ann"}, deposited{Amount: 10}}}
	if !reflect.DeepEqual(first, want) {
		t.Fatalf("first result %+v, want %+v", first, want)
	}
	// Other commands move the stream on; the repeat still answers the original.
	if _, err := h.Handle(ctx, "1", deposit{Amount: 1}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		again, err := h.Handle(kctx, "1", openWithDeposit{Owner: "ann", Amount: 10})
		if err != nil {
			t.Fatalf("repeat: %v", err)
		}
		if !reflect.DeepEqual(again, first) {
			t.Fatalf("repeat result %+v, want %+v", again, first)
		}
	}
	if n := len(readAll(t, store, "account-1")); n != 3 {
		t.Fatalf("stream has %d events, want 3", n)
	}

	// The same id for another command is refused and writes nothing.
	_, err = h.Handle(kctx, "1", openWithDeposit{Owner: "ann", Amount: 11})
	if !errors.Is(err, command.ErrIdempotencyConflict) || errors.Is(err, command.ErrRejected) {
		t.Fatalf("reused id: %v, want ErrIdempotencyConflict", err)
	}
	if !strings.Contains(err.Error(), `"open-1"`) || !strings.Contains(err.Error(), "account-1") {
		t.Fatalf("error %q does not name the id and stream", err)
	}
	_, err = h.Handle(kctx, "1", deposit{Amount: 10})
	if !errors.Is(err, command.ErrIdempotencyConflict) {
		t.Fatalf("reused id for another command type: %v", err)
	}

	// Command ids are per stream: the same id on another entity is another command.
	other, err := h.Handle(kctx, "2", openWithDeposit{Owner: "ann", Amount: 10})
	if err != nil || other.StreamID != "account-2" || other.Version != 2 {
		t.Fatalf("same id, other entity: %+v, %v", other, err)
	}
	if n := len(readAll(t, store, "account-1")); n != 3 {
		t.Fatalf("stream has %d events, want 3", n)
	}
}

// TestIdempotentConcurrent handles one command id from 32 goroutines at once,
// through one shared Handler (they take turns) and through a Handler each (as
// from 32 processes: they race in the store).
func TestIdempotentConcurrent(t *testing.T) {
	for _, be := range backends {
		for _, shared := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/shared=%v", be.name, shared), func(t *testing.T) {
				testIdempotentConcurrent(t, be.open(t), shared)
			})
		}
	}
}

func testIdempotentConcurrent(t *testing.T, store eventstore.Store, shared bool) {
	ctx := context.Background()
	cfg := command.Config{MaxAttempts: 1000, MaxBackoff: 5 * time.Millisecond}
	shareable := mustHandler(t, store, cfg)
	handler := func() *command.Handler[account, accountCommand, accountEvent] {
		if shared {
			return shareable
		}
		return mustHandler(t, store, cfg)
	}
	h := shareable
	if _, err := h.Handle(ctx, "1", openAccount{Owner: "ann"}); err != nil {
		t.Fatal(err)
	}
	const callers, noise = 32, 8
	results := make([]command.Result[accountEvent], callers)
	errs := make([]error, callers+noise)
	var wg sync.WaitGroup
	start := make(chan struct{})
	kctx := command.WithID(ctx, "dep-7")
	for i := range callers {
		h := handler()
		wg.Go(func() {
			<-start
			results[i], errs[i] = h.Handle(kctx, "1", deposit{Amount: 7})
		})
	}
	// Other writers on the same stream, so that the keyed callers also meet
	// version conflicts and reload between attempts.
	for i := range noise {
		h := handler()
		wg.Go(func() {
			<-start
			_, errs[callers+i] = h.Handle(ctx, "1", deposit{Amount: 1})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	for i, r := range results {
		if !reflect.DeepEqual(r, results[0]) {
			t.Fatalf("caller %d got %+v, caller 0 got %+v", i, r, results[0])
		}
	}
	if n := withKey(t, store, "account-1", "dep-7"); n != 1 {
		t.Fatalf("%d events of command dep-7, want 1", n)
	}
	recs := readAll(t, store, "account-1")
	if len(recs) != 1+1+noise {
		t.Fatalf("stream has %d events, want %d", len(recs), 2+noise)
	}
	for _, r := range recs {
		if r.Metadata.Headers[command.HeaderCommandID] == "dep-7" &&
			(r.Version != results[0].Version || r.Position != results[0].Position) {
			t.Fatalf("result %+v but the event is at version %d position %v", results[0], r.Version, r.Position)
		}
	}
	if got := accountDecider.Fold(decodeAll(t, store, "account-1")...).Balance; got != 7+noise {
		t.Fatalf("balance %d, want %d", got, 7+noise)
	}
}

// TestIdempotentAfterLostResponse is a crash between the commit and the reply:
// the caller saw an error, retries with the same id, and gets the original
// result without a second set of events.
func TestIdempotentAfterLostResponse(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) { testIdempotentAfterLostResponse(t, be.open(t)) })
	}
}

func testIdempotentAfterLostResponse(t *testing.T, mem eventstore.Store) {
	ctx := command.WithID(context.Background(), "k")
	store := &hookStore{Store: mem, after: func(n int64, err error) error {
		if n == 1 && err == nil {
			return fmt.Errorf("connection reset after commit: %w", eventstore.ErrUnavailable)
		}
		return err
	}}
	h := mustHandler(t, store, command.Config{})
	if _, err := h.Handle(ctx, "1", openWithDeposit{Owner: "ann", Amount: 3}); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("first try: %v", err)
	}
	res, err := h.Handle(ctx, "1", openWithDeposit{Owner: "ann", Amount: 3})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 2 || len(res.Events) != 2 || withKey(t, mem, "account-1", "k") != 2 || store.appends.Load() != 1 {
		t.Fatalf("retry: %+v, %d events of k, %d appends", res, withKey(t, mem, "account-1", "k"), store.appends.Load())
	}
}

// TestEventIDsAreDerived shows that a command id fixes its event ids, so that
// the store itself recognises a repeated append (a retry below the handler,
// or a relay de-duplicating by event id) whatever process sends it.
func TestEventIDsAreDerived(t *testing.T) {
	run := func(key string) []eventstore.Record {
		store := memory.New()
		h := mustHandler(t, store, command.Config{})
		if _, err := h.Handle(command.WithID(context.Background(), key), "1", openWithDeposit{Owner: "a", Amount: 1}); err != nil {
			t.Fatal(err)
		}
		return readAll(t, store, "account-1")
	}
	a, b, c := run("k"), run("k"), run("other")
	if a[0].ID != b[0].ID || a[1].ID != b[1].ID {
		t.Fatal("the same command id gave different event ids")
	}
	if a[0].ID == a[1].ID || a[0].ID == c[0].ID || a[1].ID == c[1].ID {
		t.Fatal("event ids collide across indexes or command ids")
	}
	// Without a command id, ids are random.
	store := memory.New()
	h := mustHandler(t, store, command.Config{})
	for _, id := range []string{"1", "2"} {
		if _, err := h.Handle(context.Background(), id, openAccount{Owner: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	if readAll(t, store, "account-1")[0].ID == readAll(t, store, "account-2")[0].ID {
		t.Fatal("unkeyed commands share an event id")
	}
}

// A refused keyed command writes nothing, so it is decided again next time.
func TestIdempotentRejectionIsNotRemembered(t *testing.T) {
	ctx := command.WithID(context.Background(), "w")
	store := memory.New()
	h := mustHandler(t, store, command.Config{})
	if _, err := h.Handle(context.Background(), "1", openAccount{Owner: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Handle(ctx, "1", withdraw{Amount: 5}); !errors.Is(err, errInsufficientFunds) {
		t.Fatalf("first try: %v", err)
	}
	if _, err := h.Handle(context.Background(), "1", deposit{Amount: 5}); err != nil {
		t.Fatal(err)
	}
	if res, err := h.Handle(ctx, "1", withdraw{Amount: 5}); err != nil || res.Version != 3 {
		t.Fatalf("second try: %+v, %v", res, err)
	}
}

func TestInvalidCommandIDs(t *testing.T) {
	h := mustHandler(t, memory.New(), command.Config{})
	for _, key := range []string{"a\nb", strings.Repeat("k", command.MaxCommandIDLen+1), "\xff"} {
		if _, err := h.Handle(command.WithID(context.Background(), key), "1", openAccount{Owner: "a"}); !errors.Is(err, command.ErrInvalidID) {
			t.Errorf("command id %q: %v, want ErrInvalidID", key, err)
		}
	}
	if got := command.IDFrom(command.WithID(context.Background(), "x")); got != "x" {
		t.Fatalf("IDFrom = %q", got)
	}
	if got := command.IDFrom(context.Background()); got != "" {
		t.Fatalf("IDFrom of a bare context = %q", got)
	}
}
