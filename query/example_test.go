package query_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

// A query reads through the active version, waiting first for the position
// its command returned. (The projection runner normally writes the active
// version, the model and the checkpoint; here they are set by hand.)
func ExampleWaitFor() {
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	ctx := context.Background()

	_, err := query.Resolve(ctx, rdb, "carts")
	fmt.Println(err)

	rdb.Set(ctx, query.ActiveKey("carts"), 1, 0)
	rdb.HSet(ctx, query.CheckpointKey("carts", 1), query.FieldPosition, "42")
	rdb.Set(ctx, query.Key("carts", 1, "cart", "7"), `{"items":3}`, 0)

	v, err := query.WaitFor(ctx, rdb, "carts", eventstore.SeqPosition(42))
	if err != nil {
		panic(err)
	}
	var cart struct{ Items int }
	if err := v.GetJSON(ctx, &cart, "cart", "7"); err != nil {
		panic(err)
	}
	fmt.Println(v.Key("cart", "7"), cart.Items)
	// Output:
	// query: projection not ready: projection "carts" has no active version
	// {el:carts}:v1:cart:7 3
}
