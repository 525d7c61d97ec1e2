// Command getting-started is the service docs/getting-started.md builds: a
// stock keeper whose commands go to an embedded SQLite event store and whose
// queries read a Redis read model, with read-your-writes.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore/sqlite"
	"github.com/eventline/eventline/projection"
	"github.com/redis/go-redis/v9"
)

func main() {
	storePath := flag.String("store", "data/stock.db", "the SQLite file of the event store")
	redisURL := flag.String("redis", "redis://localhost:6379/0", "the Redis of the read model")
	addr := flag.String("addr", "localhost:8080", "the address to serve HTTP on")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err == nil {
		err = run(ctx, *storePath, *redisURL, ln)
	}
	if err != nil {
		slog.Error("getting-started", "error", err)
		os.Exit(1)
	}
}

// run serves on ln until ctx ends: the command handler, the projection runner
// and the HTTP API in one process.
func run(ctx context.Context, storePath, redisURL string, ln net.Listener) error {
	store, err := sqlite.Open(ctx, sqlite.Config{Path: storePath})
	if err != nil {
		return err
	}
	defer store.Close()
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()

	reg := NewRegistry()
	stock, err := command.NewHandler(store, reg, Stock, command.Config{Name: "stock"})
	if err != nil {
		return err
	}
	runner, err := projection.NewRunner(projection.Config{Store: store, Redis: rdb, Projection: Levels(reg)})
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	projected := make(chan error, 1)
	go func() { projected <- runner.Run(ctx) }()
	srv := &http.Server{Handler: (&Service{Stock: stock, Redis: rdb, MaxWait: 2 * time.Second}).Routes()}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	// Stop on ctx, or when the server or the runner fails; then stop both.
	var serveErr, projErr error
	projStopped := false
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	case projErr = <-projected:
		projStopped = true
	}
	cancel()
	shutdownCtx, done := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer done()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		serveErr = errors.Join(serveErr, err)
	}
	if !projStopped {
		projErr = <-projected
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return errors.Join(serveErr, projErr)
}
