package main

import (
	"context"
	"os"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/projection/cli"
	"github.com/eventline/eventline/sample/app"
)

// extraCommands are the replay and status commands of projection/cli, given
// --store and --redis flags (with their EVENTLINE_* variables) to find the
// application's store and Redis.
func extraCommands() []*cobra.Command {
	var storeURL, redisURL string
	cmds := cli.Commands(cli.Config{
		Projections: app.Projections(),
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
	}
	return cmds
}
