package projection_test

import (
	"context"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

// Rebuild builds a new version of a projection beside the live one and
// switches to it once complete; the old version's keys are then removed.
func ExampleRebuild() {
	mr := miniredis.NewMiniRedis() // any Redis; the tests use a real redis-server
	if err := mr.Start(); err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	store := memory.New()
	ctx := context.Background()
	for range 5 {
		if _, err := store.Append(ctx, "cart-7", eventstore.Any, eventstore.Event{Type: "cart.item_added"}); err != nil {
			panic(err)
		}
	}
	// v1 counted items; v2 also records the last position seen.
	v1 := projection.Define("carts", 1, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record) error {
		tx.Pipe().HIncrBy(ctx, tx.Key("cart", rec.StreamID), "items", 1)
		return nil
	})
	v2 := projection.Define("carts", 2, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record) error {
		tx.Pipe().HIncrBy(ctx, tx.Key("cart", rec.StreamID), "items", 1)
		tx.Pipe().HSet(ctx, tx.Key("cart", rec.StreamID), "last", rec.Position.String())
		return nil
	})
	for _, p := range []projection.Projection{v1, v2} {
		res, err := projection.Rebuild(ctx, projection.Config{Store: store, Redis: rdb, Projection: p,
			RetireDelay: time.Millisecond}, projection.RebuildOptions{})
		if err != nil {
			panic(err)
		}
		fmt.Printf("v%d active at %s, replaced v%d\n", res.Version, res.Checkpoint, res.Previous)
	}
	view, err := query.Resolve(ctx, rdb, "carts")
	if err != nil {
		panic(err)
	}
	var c struct {
		Items int    `redis:"items"`
		Last  string `redis:"last"`
	}
	if err := view.HGetAll(ctx, &c, "cart", "cart-7"); err != nil {
		panic(err)
	}
	left, _ := rdb.Keys(ctx, query.VersionPrefix("carts", 1)+"*").Result()
	fmt.Println(view.Key("cart", "cart-7"), c.Items, c.Last, len(left))
	// Output:
	// v1 active at 5, replaced v0
	// v2 active at 5, replaced v1
	// {el:carts}:v2:cart:cart-7 5 5 0
}
