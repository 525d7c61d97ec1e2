package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/projection/cli"
	"github.com/eventline/eventline/sample/app"
	"github.com/eventline/eventline/sample/readmodel"
)

// extraCommands are the replay and status commands of projection/cli, given
// --store and --redis flags (with their EVENTLINE_* variables) to find the
// application's store and Redis, and --carts-partitions to name the carts
// model's version as the projectors run it.
func extraCommands() []*cobra.Command {
	var storeURL, redisURL string
	var cartsPartitions int
	// The commands keep this slice; once the flags are parsed, its entries
	// become the projections at the configured partition count (same
	// names, same order).
	projections := app.Projections()
	cmds := cli.Commands(cli.Config{
		Projections: projections,
		OpenStore: func(ctx context.Context) (eventstore.Store, error) {
			return app.OpenStore(ctx, storeURL, nil)
		},
		OpenRedis: func(context.Context) (redis.UniversalClient, error) { return app.OpenRedis(redisURL) },
	})
	for _, c := range cmds {
		c.Flags().StringVar(&storeURL, "store", os.Getenv(app.EnvStoreURL),
			"event store: a SQLite file path or sqlite:// URL (?sync=normal for speed over power-loss safety), a postgres:// or an esdb:// URL (env "+app.EnvStoreURL+")")
		c.Flags().StringVar(&redisURL, "redis", os.Getenv(app.EnvRedisURL),
			"Redis URL of the read models (env "+app.EnvRedisURL+")")
		def := app.DefaultCartsPartitions
		if v, ok := os.LookupEnv(app.EnvCartsPartitions); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				def = n
			} else {
				def = -1 // refused below
			}
		}
		c.Flags().IntVar(&cartsPartitions, "carts-partitions", def,
			"partitions of the carts read model, as the projectors run it (env "+app.EnvCartsPartitions+")")
		c.PreRunE = func(*cobra.Command, []string) error {
			if cartsPartitions < 1 || cartsPartitions > readmodel.MaxCartsPartitions {
				return fmt.Errorf("%s (--carts-partitions): must be an integer from 1 to %d",
					app.EnvCartsPartitions, readmodel.MaxCartsPartitions)
			}
			copy(projections, app.ProjectionsWith(cartsPartitions))
			return nil
		}
	}
	return cmds
}
