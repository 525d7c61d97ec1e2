package cli_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/alicebob/miniredis/v2"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/projection/cli"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
)

// An application mounts replay and status under its own root command; it
// owns the flags that say where the store and Redis are.
func ExampleCommands() {
	mr := miniredis.NewMiniRedis() // the application's Redis
	if err := mr.Start(); err != nil {
		panic(err)
	}
	defer mr.Close()
	store := memory.New() // the application's event store
	ctx := context.Background()
	for range 3 {
		if _, err := store.Append(ctx, "cart-7", eventstore.Any, eventstore.Event{Type: "cart.item_added"}); err != nil {
			panic(err)
		}
	}
	carts := projection.Define("carts", 1, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record) error {
		tx.Pipe().HIncrBy(ctx, tx.Key("cart", rec.StreamID), "items", 1)
		return nil
	}, "cart.item_added")

	var redisURL string
	root := &cobra.Command{Use: "cart", SilenceErrors: true}
	root.PersistentFlags().StringVar(&redisURL, "redis", "redis://"+mr.Addr(), "Redis URL")
	root.AddCommand(cli.Commands(cli.Config{
		Projections: []projection.Projection{carts},
		OpenStore:   func(context.Context) (eventstore.Store, error) { return keepOpen{store}, nil },
		OpenRedis: func(context.Context) (redis.UniversalClient, error) {
			opts, err := redis.ParseURL(redisURL)
			if err != nil {
				return nil, err
			}
			return redis.NewClient(opts), nil
		},
	})...)
	root.SetOut(os.Stdout)

	// In main: ctx, stop := signal.NotifyContext(...); and on error print
	// it and os.Exit(1).
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	root.SetArgs([]string{"replay", "carts", "--progress", "none"})
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Println("error:", err)
	}
	root.SetArgs([]string{"replay", "nope"})
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Println("error:", err)
	}
	// Output:
	// carts: v1 built and active at 3
	// error: unknown projection ["nope"] (known: [carts])
}

// keepOpen lets the example reuse one in-memory store across commands, which
// close what OpenStore returns.
type keepOpen struct{ eventstore.Store }

func (keepOpen) Close() error { return nil }
