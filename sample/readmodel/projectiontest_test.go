package readmodel_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/projection/projectiontest"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/readmodel"
	"github.com/eventline/eventline/sample/readmodel/schema"
)

// cartRecords encodes events of one cart's stream.
func cartRecords(t *testing.T, reg *eventstore.Registry, id string, events ...any) []eventstore.Record {
	t.Helper()
	out := make([]eventstore.Record, len(events))
	for i, e := range events {
		ev, err := reg.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = eventstore.Record{Event: ev, StreamID: readmodel.CartStreamPrefix + id}
	}
	return out
}

// TestCartsProjectionSpec: the carts model, applied in batches of 1, 2 and
// all, once and twice, is the same cart hash every time.
func TestCartsProjectionSpec(t *testing.T) {
	reg := eventstore.NewRegistry()
	cart.RegisterEvents(reg)
	rdb := redistest.Start(t).Client(t)
	projectiontest.Run(t, rdb, readmodel.CartsProjection(reg), projectiontest.Case{
		Name: "a cart filled, changed and checked out",
		Records: cartRecords(t, reg, "c1",
			cart.Opened{CustomerID: "ivy"},
			cart.ItemAdded{ProductID: "tea", Quantity: 2, UnitPriceCents: 250},
			cart.ItemAdded{ProductID: "jam", Quantity: 1, UnitPriceCents: 400},
			cart.ItemAdded{ProductID: "tea", Quantity: 1, UnitPriceCents: 999},
			cart.QuantityChanged{ProductID: "jam", Quantity: 5},
			cart.ItemRemoved{ProductID: "jam"},
			cart.CheckedOut{OrderID: "o1", CustomerID: "ivy", Items: []cart.Line{{ProductID: "tea", Quantity: 3, UnitPriceCents: 250}}, TotalCents: 750},
		),
		Want: projectiontest.Model{
			schema.PartCart + ":c1": map[string]any{
				schema.FieldVersion: 7, schema.FieldCustomerID: "ivy", schema.FieldStatus: schema.CartCheckedOut,
				schema.FieldOrderID:           "o1",
				schema.PrefixQuantity + "tea": 3, schema.PrefixUnitPrice + "tea": 250, schema.PrefixFirstAdded + "tea": 2,
			},
		},
	})
}

// fakeTB records what the helper reports instead of failing the test.
type fakeTB struct {
	testing.TB
	errors []string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

// TestProjectionSpecCatchesANonIdempotentCarts: a carts projection that
// forgets to start a cart afresh at cart.opened counts the quantities again
// when the records are applied a second time; the helper must say so.
func TestProjectionSpecCatchesANonIdempotentCarts(t *testing.T) {
	reg := eventstore.NewRegistry()
	cart.RegisterEvents(reg)
	r := projection.NewRouter(reg)
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.Opened) error {
		return tx.HSet(ctx, tx.Key(schema.PartCart, strings.TrimPrefix(rec.StreamID, readmodel.CartStreamPrefix)),
			schema.FieldCustomerID, e.CustomerID) // no Del: not a fresh start
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.ItemAdded) error {
		tx.HIncrBy(ctx, tx.Key(schema.PartCart, strings.TrimPrefix(rec.StreamID, readmodel.CartStreamPrefix)),
			schema.PrefixQuantity+e.ProductID, int64(e.Quantity))
		return nil
	})
	wrong := r.Projection(schema.Carts, schema.CartsVersion)
	f := &fakeTB{TB: t}
	projectiontest.Run(f, redistest.Start(t).Client(t), wrong, projectiontest.Case{
		Name: "two additions",
		Records: cartRecords(t, reg, "c1",
			cart.Opened{CustomerID: "ivy"},
			cart.ItemAdded{ProductID: "tea", Quantity: 2, UnitPriceCents: 250},
			cart.ItemAdded{ProductID: "tea", Quantity: 1, UnitPriceCents: 250},
		),
		Want: projectiontest.Model{schema.PartCart + ":c1": map[string]any{schema.FieldCustomerID: "ivy", schema.PrefixQuantity + "tea": 3}},
	})
	if len(f.errors) != 1 || !strings.Contains(f.errors[0], "applied twice") || !strings.Contains(f.errors[0], `q:tea="6"`) {
		t.Fatalf("the helper reported %q; want one error showing q:tea counted twice", f.errors)
	}
}
