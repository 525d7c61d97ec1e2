package postgres_test

import (
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore/postgres"
	"github.com/eventline/eventline/sample/app"
	"github.com/eventline/eventline/sample/domain/cart"
)

// TestIdempotentCommands runs command ids through command.Handler on this
// store, whose appends (exact expected versions, event ids derived from the
// command id) take the one-statement write path and, on a repeat, the path
// that reads first. 16 Handlers on 4 Stores (as 4 processes) race one keyed
// command: it is written once and every caller gets the same result. A
// repeat after other commands moved the stream on answers the original; the
// same id for another command is refused with ErrIdempotencyConflict.
func TestIdempotentCommands(t *testing.T) {
	db := testDB(t)
	stores := make([]*postgres.Store, 4)
	stores[0] = openStore(t, db, postgres.Config{Schema: "commands"})
	for i := 1; i < len(stores); i++ {
		stores[i] = openStore(t, db, postgres.Config{Schema: "commands"})
	}
	ctx := t.Context()
	handlers := make([]*command.Handler[cart.State, cart.Command, cart.Event], 16)
	for i := range handlers {
		h, err := command.NewHandler(stores[i%len(stores)], app.NewRegistry(), cart.Decider, command.Config{Name: "cart", NoCache: i%2 == 1})
		if err != nil {
			t.Fatal(err)
		}
		handlers[i] = h
	}
	kctx := command.WithID(ctx, "open-c1")
	open := cart.Open{CustomerID: "cust-1"}
	results := make([]command.Result[cart.Event], len(handlers))
	errs := make([]error, len(handlers))
	var wg sync.WaitGroup
	for i, h := range handlers {
		wg.Go(func() { results[i], errs[i] = h.Handle(kctx, "c1", open) })
	}
	wg.Wait()
	for i := range handlers {
		if errs[i] != nil {
			t.Fatalf("handler %d: %v", i, errs[i])
		}
		if !reflect.DeepEqual(results[i], results[0]) {
			t.Errorf("handler %d got %+v, handler 0 got %+v", i, results[i], results[0])
		}
	}
	if results[0].Version != 1 {
		t.Errorf("the open command left version %d, want 1", results[0].Version)
	}

	if _, err := handlers[0].Handle(ctx, "c1", cart.AddItem{ProductID: "sku-1", Quantity: 1, UnitPriceCents: 100}); err != nil {
		t.Fatal(err)
	}
	for i, h := range handlers[:4] {
		again, err := h.Handle(kctx, "c1", open)
		if err != nil || !reflect.DeepEqual(again, results[0]) {
			t.Errorf("repeat through handler %d = %+v, %v; want %+v", i, again, err, results[0])
		}
	}
	_, err := handlers[1].Handle(kctx, "c1", cart.Open{CustomerID: "cust-2"})
	if !errors.Is(err, command.ErrIdempotencyConflict) {
		t.Errorf("the command id reused for another command: err = %v, want ErrIdempotencyConflict", err)
	}
	n := 0
	for _, err := range stores[0].ReadStream(ctx, "cart-c1", 0) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2 {
		t.Errorf("cart-c1 holds %d events, want 2 (opened once, one item)", n)
	}
}
