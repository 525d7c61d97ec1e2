package query_test

import (
	"context"
	"fmt"
	"runtime"

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
	rdb.HSet(ctx, query.CheckpointKey("carts", query.Version(1)), query.FieldPosition, "42")
	rdb.Set(ctx, query.Key("carts", query.Version(1), "cart", "7"), `{"items":3}`, 0)

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

// A query service waits through one Watcher: a runner's commit (here made by
// hand: the checkpoint and its announcement in one transaction) wakes the
// waiter, with no polling.
func ExampleWatcher() {
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	rdb.Set(ctx, query.ActiveKey("carts"), 1, 0)

	w := query.NewWatcher(rdb, query.WatcherConfig{MaxWaiters: 1000})
	defer w.Close()
	done := make(chan error, 1)
	go func() {
		_, err := w.WaitFor(ctx, "carts", eventstore.SeqPosition(7))
		done <- err
	}()
	for w.Waiting() == 0 {
		runtime.Gosched()
	}
	b := query.Build{Version: 1}
	_, err := rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.HSet(ctx, query.CheckpointKey("carts", b), query.FieldPosition, "7")
		pipe.Publish(ctx, query.CommitChannel("carts"), query.CommitMessage(b, "7"))
		return nil
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(<-done)
	// Output:
	// <nil>
}
