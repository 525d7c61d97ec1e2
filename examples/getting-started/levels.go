package main

import (
	"context"
	"strings"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/projection"
)

// LevelsName names the read model; queries find it by this name.
const LevelsName = "stock_levels"

// Level is one item's entry in the read model: a Redis hash.
type Level struct {
	OnHand   int `redis:"on_hand" json:"on_hand"`
	Received int `redis:"received" json:"received"`
	Shipped  int `redis:"shipped" json:"shipped"`
}

// Levels is the projection that keeps one Level per item. Bump its version
// when Apply changes: the runner then builds the new version beside the live
// one and switches queries over once it has caught up.
func Levels(reg *eventstore.Registry) projection.Projection {
	r := projection.NewRouter(reg)
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e Received) error {
		key := tx.Key("item", sku(rec))
		tx.HIncrBy(ctx, key, "on_hand", int64(e.Quantity))
		tx.HIncrBy(ctx, key, "received", int64(e.Quantity))
		return nil
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e Shipped) error {
		key := tx.Key("item", sku(rec))
		tx.HIncrBy(ctx, key, "on_hand", -int64(e.Quantity))
		tx.HIncrBy(ctx, key, "shipped", int64(e.Quantity))
		return nil
	})
	return r.Projection(LevelsName, 1)
}

// sku is the item's id: the stream "stock-42" holds item "42".
func sku(rec eventstore.Record) string {
	return strings.TrimPrefix(rec.StreamID, "stock-")
}
