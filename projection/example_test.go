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

type ItemAdded struct {
	Cart string
	Qty  int
}

// A projection counting the items of each cart, run by a Runner, read through
// the query package with read-your-writes.
func ExampleRunner() {
	mr := miniredis.NewMiniRedis() // any Redis; the tests use a real redis-server
	if err := mr.Start(); err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	store := memory.New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	reg := eventstore.NewRegistry()
	eventstore.Register[ItemAdded](reg, "cart.item_added")
	router := projection.NewRouter(reg)
	projection.Handle(router, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e ItemAdded) error {
		// Redis-native increments need no read of the model.
		tx.Pipe().HIncrBy(ctx, tx.Key("cart", e.Cart), "items", int64(e.Qty))
		return nil
	})
	carts := router.Projection("carts", 1)

	runner, err := projection.NewRunner(projection.Config{Store: store, Redis: rdb, Projection: carts})
	if err != nil {
		panic(err)
	}
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()

	ev, _ := reg.Encode(ItemAdded{Cart: "7", Qty: 2})
	res, err := store.Append(ctx, "cart-7", eventstore.Any, ev)
	if err != nil {
		panic(err)
	}

	// Wait for the projection to be active, then for the append's position.
	var view *query.View
	for view == nil {
		wctx, wcancel := context.WithTimeout(ctx, time.Second)
		view, err = query.WaitFor(wctx, rdb, "carts", res.Position)
		wcancel()
		if err != nil {
			time.Sleep(time.Millisecond)
		}
	}
	var c struct {
		Items int `redis:"items"`
	}
	if err := view.HGetAll(ctx, &c, "cart", "7"); err != nil {
		panic(err)
	}
	fmt.Println(view.Key("cart", "7"), c.Items)
	cancel()
	fmt.Println(<-done)
	// Output:
	// {el:carts}:v1:cart:7 2
	// <nil>
}
