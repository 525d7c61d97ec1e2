package app

import (
	"context"

	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/esdb"
	"github.com/eventline/eventline/eventstore/postgres"
	"github.com/eventline/eventline/eventstore/sqlite"
	"github.com/eventline/eventline/redisurl"
)

// storeSpec is a parsed EVENTLINE_STORE_URL.
type storeSpec struct {
	esdbURL     string // set for EventStoreDB
	postgresURL string // set for PostgreSQL
	sqlitePath  string // set for SQLite
	// sqliteSync is the SQLite store's durability: FULL unless a sqlite: URL
	// says sync=normal.
	sqliteSync sqlite.SyncMode
}

func parseStoreURL(s string) (storeSpec, error) {
	switch {
	case s == "":
		return storeSpec{}, storeError("required: a SQLite file path (e.g. ./data/events.db), a postgres:// or an esdb:// URL", nil)
	case strings.HasPrefix(s, "esdb://") || strings.HasPrefix(s, "esdb+discover://"):
		if err := (esdb.Config{URL: s}).Validate(); err != nil {
			return storeSpec{}, storeError("not a usable EventStoreDB URL", err)
		}
		return storeSpec{esdbURL: s}, nil
	case strings.HasPrefix(s, "sqlite:"):
		return parseSQLiteURL(s)
	case strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://"):
		if err := (postgres.Config{URL: s}).Validate(); err != nil {
			return storeSpec{}, storeError(fmt.Sprintf("%s is not a usable PostgreSQL URL", redisurl.Redact(s)), nil)
		}
		return storeSpec{postgresURL: s}, nil
	case strings.Contains(s, "://"):
		scheme, _, _ := strings.Cut(s, "://")
		return storeSpec{}, storeError(fmt.Sprintf("unsupported scheme %q; want a SQLite file path, postgres://user@host/db or esdb://host:2113?tls=false", scheme), nil)
	}
	return storeSpec{sqlitePath: s}, nil
}

// parseSQLiteURL reads sqlite:PATH, sqlite://PATH or sqlite:///ABSOLUTE/PATH,
// with an optional ?sync=full (the default: an acknowledged command survives
// a power loss) or ?sync=normal (a power loss may lose the last commits).
func parseSQLiteURL(s string) (storeSpec, error) {
	rest := strings.TrimPrefix(strings.TrimPrefix(s, "sqlite:"), "//")
	path, query, _ := strings.Cut(rest, "?")
	if path == "" {
		return storeSpec{}, storeError("the sqlite: URL names no file; want e.g. sqlite://data/events.db?sync=normal", nil)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return storeSpec{}, storeError("not a usable sqlite: URL", err)
	}
	for k := range q {
		if k != "sync" {
			return storeSpec{}, storeError(fmt.Sprintf("unknown setting %q in a sqlite: URL; want sync=full or sync=normal", k), nil)
		}
	}
	mode, err := sqlite.ParseSyncMode(q.Get("sync"))
	if err != nil {
		return storeSpec{}, storeError("not a usable sqlite: URL", err)
	}
	return storeSpec{sqlitePath: path, sqliteSync: mode}, nil
}

// openStore opens the event store. EventStoreDB is not contacted here (a
// process may start before its server); SQLite opens its file at once;
// PostgreSQL is connected to and its schema checked or created, so that a
// wrong URL, password or database name stops the process at once.
func openStore(ctx context.Context, s storeSpec, log *slog.Logger, reg prometheus.Registerer) (eventstore.Store, error) {
	if s.postgresURL != "" {
		st, err := postgres.Open(ctx, postgres.Config{URL: s.postgresURL, Logger: log, Registerer: reg})
		if err != nil {
			return nil, storeError("cannot open the PostgreSQL event store at "+redisurl.Redact(s.postgresURL), err)
		}
		return st, nil
	}
	if s.esdbURL != "" {
		st, err := esdb.Open(ctx, esdb.Config{URL: s.esdbURL, Logger: log})
		if err != nil {
			return nil, storeError("cannot open EventStoreDB", err)
		}
		return st, nil
	}
	if fi, err := os.Stat(s.sqlitePath); err == nil && fi.IsDir() {
		return nil, storeError(fmt.Sprintf("%q is a directory; want a file path such as %s", s.sqlitePath,
			filepath.Join(s.sqlitePath, "events.db")), nil)
	}
	st, err := sqlite.Open(ctx, sqlite.Config{Path: s.sqlitePath, Sync: s.sqliteSync, Logger: log, Registerer: reg})
	if err != nil {
		return nil, storeError("cannot open the SQLite event store", err)
	}
	return st, nil
}

// parseRedisURL reads a Redis URL as package redisurl does: redis://host:port/db
// for one server, redis+cluster://host:port?addr=host:port for a Redis Cluster.
func parseRedisURL(s string) (redisurl.Options, error) {
	o, err := redisurl.Parse(s)
	if err != nil {
		// redisurl's errors never quote a password.
		return redisurl.Options{}, redisError(fmt.Sprintf("%s is not a Redis URL (want redis://host:port/db, or "+
			"redis+cluster://host:port?addr=host:port for a Redis Cluster)", redisurl.Redact(s)), err)
	}
	return o, nil
}

// redisClient returns a client for url, or for a new embedded server when url
// is empty; stop stops the embedded server (after the client is closed).
func redisClient(url string, log *slog.Logger) (rdb redis.UniversalClient, stop func(), err error) {
	var opts redisurl.Options
	stop = func() {}
	if url == "" {
		m := miniredis.NewMiniRedis()
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			return nil, nil, redisError("cannot start the embedded Redis", err)
		}
		log.Info("embedded Redis started", "addr", m.Addr())
		opts = redisurl.Options{Single: &redis.Options{Addr: m.Addr()}}
		stop = m.Close
	} else if opts, err = parseRedisURL(url); err != nil {
		return nil, nil, err
	}
	return boundRedis(opts).NewClient(), stop, nil
}

// boundRedis sets the client timeouts of every Redis connection of the
// sample: fail fast while Redis is down, so that a query answers 503 at once
// rather than after the client's default retries (and the breaker opens
// after a few of them). Blocking commands (XREADGROUP BLOCK) get their
// block time on top of ReadTimeout from go-redis. The same bounds apply to
// each node of a Redis Cluster.
func boundRedis(opts redisurl.Options) redisurl.Options {
	if c := opts.Cluster; c != nil {
		c.DialTimeout, c.ReadTimeout, c.WriteTimeout, c.MaxRetries = time.Second, 2*time.Second, 2*time.Second, 1
	}
	if o := opts.Single; o != nil {
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries = time.Second, 2*time.Second, 2*time.Second, 1
	}
	return opts
}

// pingStore checks that the event store answers.
func pingStore(ctx context.Context, st eventstore.Store) error {
	_, err := st.Head(ctx)
	return err
}

// pingRedis checks that Redis answers.
func pingRedis(ctx context.Context, rdb redis.UniversalClient) error {
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// OpenStore opens the event store named by url (a SQLite path, a PostgreSQL
// URL or an EventStoreDB URL), for tools that run beside the roles, such as replay.
// Errors are *SettingError values naming EVENTLINE_STORE_URL.
func OpenStore(ctx context.Context, url string, log *slog.Logger) (eventstore.Store, error) {
	spec, err := parseStoreURL(url)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return openStore(ctx, spec, log, nil)
}

// OpenRedis returns a client of the Redis named by url, which is required
// here: a single server (redis://) or a Redis Cluster (redis+cluster://).
// Errors are *SettingError values naming EVENTLINE_REDIS_URL.
func OpenRedis(url string) (redis.UniversalClient, error) {
	if url == "" {
		return nil, redisError("required, e.g. redis://localhost:6379 (the embedded Redis of serve is not reachable from another process)", nil)
	}
	opts, err := parseRedisURL(url)
	if err != nil {
		return nil, err
	}
	return boundRedis(opts).NewClient(), nil
}
