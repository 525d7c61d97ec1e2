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
	left, _ := rdb.Keys(ctx, query.Prefix("carts", query.Version(1))+"*").Result()
	fmt.Println(view.Key("cart", "cart-7"), c.Items, c.Last, len(left))
	// Output:
	// v1 active at 5, replaced v0
	// v2 active at 5, replaced v1
	// {el:carts}:v2:cart:cart-7 5 5 0
}

// With Force, Rebuild rebuilds the version that is already active, as a new
// generation beside the live one: here after a key of the model was deleted
// by hand. Readers follow the switch through query.Resolve and View.Key.
func ExampleRebuild_force() {
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
	carts := projection.Define("carts", 1, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record) error {
		tx.Pipe().HIncrBy(ctx, tx.Key("cart", rec.StreamID), "items", 1)
		return nil
	})
	cfg := projection.Config{Store: store, Redis: rdb, Projection: carts, RetireDelay: time.Millisecond}
	if _, err := projection.Rebuild(ctx, cfg, projection.RebuildOptions{}); err != nil {
		panic(err)
	}
	rdb.Del(ctx, query.Key("carts", query.Version(1), "cart", "cart-7")) // damage by hand

	res, err := projection.Rebuild(ctx, cfg, projection.RebuildOptions{})
	fmt.Println("without Force, already active:", res.AlreadyActive, err)
	res, err = projection.Rebuild(ctx, cfg, projection.RebuildOptions{Force: true})
	if err != nil {
		panic(err)
	}
	fmt.Printf("v%d generation %d active, replaced generation %d\n", res.Version, res.Generation, res.PreviousGeneration)
	view, err := query.Resolve(ctx, rdb, "carts")
	if err != nil {
		panic(err)
	}
	items, _ := rdb.HGet(ctx, view.Key("cart", "cart-7"), "items").Int()
	fmt.Println(view.Key("cart", "cart-7"), items)
	// Output:
	// without Force, already active: true <nil>
	// v1 generation 1 active, replaced generation 0
	// {el:carts}:v1g1:cart:cart-7 5
}
