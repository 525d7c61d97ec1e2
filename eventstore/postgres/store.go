package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/internal/groupcommit"
)

// SchemaVersion is the version of the table layout this package writes, kept
// in the schema_version table of the store's schema.
const SchemaVersion = 1

var (
	// ErrSchemaVersion means the schema was written by a newer version of this
	// package, or holds tables that are not an eventline store; the store
	// refuses to open it rather than misread or alter it.
	ErrSchemaVersion = errors.New("postgres: unsupported schema version")
	// ErrOutcomeUnknown means the connection broke while the request that
	// commits was in flight: the append may or may not have been written. Retrying it with the
	// same event ids is safe; the retry returns the original result (Repeated)
	// if the first attempt was written. Errors matching it also match
	// eventstore.ErrUnavailable.
	ErrOutcomeUnknown = errors.New("postgres: outcome of the commit unknown")
)

// The schema, in the store's own PostgreSQL schema (%[1]s).
//
// The head table is one row holding the position of the last event. Every
// transaction that writes events updates it at its end, which both hands out
// the next positions and, through the row lock held until COMMIT, makes
// writers take positions in commit order: positions are gapless and a record
// is visible before any record with a higher position (see doc.go).
//
// streams maps a stream name to a small integer id (events are indexed on two
// integers instead of a text id) and keeps the stream's version and last
// position, so an append reads and locks its stream in one row. Indexes:
// events' primary key on position serves ReadAll and Subscribe (range scans in
// log order); events_stream_version serves ReadStream and keeps versions
// unique; events_id keeps event ids unique across the log and finds a repeated
// append; streams' unique name is how appends find their stream.
const schemaSQL = `
CREATE TABLE %[1]s.schema_version (version integer NOT NULL);
CREATE TABLE %[1]s.head (
	one      boolean PRIMARY KEY DEFAULT true CHECK (one),
	position bigint NOT NULL
);
CREATE TABLE %[1]s.streams (
	id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name     text NOT NULL UNIQUE,
	version  bigint NOT NULL DEFAULT 0,
	position bigint NOT NULL DEFAULT 0
);
CREATE TABLE %[1]s.events (
	position       bigint PRIMARY KEY,
	stream         bigint NOT NULL,
	version        bigint NOT NULL,
	id             uuid NOT NULL,
	type           text NOT NULL,
	recorded_at    timestamptz NOT NULL,
	correlation_id text,
	causation_id   text,
	headers        bytea,
	data           bytea NOT NULL
);
CREATE UNIQUE INDEX events_stream_version ON %[1]s.events (stream, version);
CREATE UNIQUE INDEX events_id ON %[1]s.events (id);
INSERT INTO %[1]s.head (position) VALUES (0);
`

// Store is an eventstore.Store on a PostgreSQL database. Create it with Open;
// it is safe for concurrent use, and any number of Stores in any number of
// processes may share one database and schema.
type Store struct {
	cfg     Config
	schema  string
	channel string        // the LISTEN/NOTIFY channel of the schema
	pool    *pgxpool.Pool // reads
	// wpool holds the writer's one connection, apart from the reads, so that
	// busy readers never make a commit wait for a connection.
	wpool *pgxpool.Pool
	w     *writer
	// metrics records the group commits; nil without Config.Registerer.
	metrics *groupcommit.Metrics
	sql     statements
	closed  atomic.Bool
	// done is closed by Close; stopped is closed when the writer has exited.
	done, stopped chan struct{}
	// notify is closed and replaced after every commit seen (ours, or another
	// process's through NOTIFY), waking subscriptions.
	notify atomic.Pointer[chan struct{}]
	// The listener starts with the first subscription.
	listenOnce    sync.Once
	listenStop    context.CancelFunc
	listenStopped chan struct{}
	closeOnce     sync.Once
	closeErr      error
}

var _ eventstore.Store = (*Store)(nil)

// Open connects to cfg.URL, creates the schema when missing and starts the
// writer. It refuses a schema of a newer version with an error matching
// ErrSchemaVersion, and a server it cannot reach or log in to with an error
// matching eventstore.ErrUnavailable that says why. The caller must Close the
// store.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: URL: %v", ErrInvalidConfig, err)
	}
	// Fail fast while the server is down rather than after the OS's TCP
	// timeout, unless the URL chose a timeout itself.
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	var metrics *groupcommit.Metrics
	if cfg.Registerer != nil {
		if metrics, err = groupcommit.NewMetrics(cfg.Registerer, "postgres"); err != nil {
			return nil, fmt.Errorf("postgres: metrics: %w", err)
		}
	}
	pc.MaxConns = int32(cfg.MaxConns)
	pc.MinConns = 0
	wc := pc.Copy()
	wc.MaxConns = 1
	// Every statement of the writer finds a few rows by key (streams by
	// name, event ids) in tables that only grow. The planner, costing
	// cached index probes as disk reads, scans a table of some thousand
	// streams whole instead, and a plan made while the tables were small
	// keeps doing so once they are large. Without sequential scans (its
	// one-row head table has a primary key) every plan of the writer's
	// statements probes indexes, whatever the tables' sizes, so the writer
	// plans each statement once per connection (a generic plan) instead of
	// once per group commit: planning the one-statement group cost more
	// than running it (1.6 ms against 2.0 ms per commit). It does not JIT
	// compile statements that run in a millisecond. A URL that sets any of
	// these keeps its own.
	for k, v := range map[string]string{"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off", "jit": "off"} {
		if _, set := wc.ConnConfig.RuntimeParams[k]; !set {
			wc.ConnConfig.RuntimeParams[k] = v
		}
	}
	where := describe(pc.ConnConfig)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("%w: postgres %s: %v", eventstore.ErrUnavailable, where, err)
	}
	wpool, err := pgxpool.NewWithConfig(ctx, wc)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("%w: postgres %s: %v", eventstore.ErrUnavailable, where, err)
	}
	s := &Store{
		cfg:     cfg,
		schema:  cfg.Schema,
		channel: "eventline_" + cfg.Schema,
		pool:    pool,
		wpool:   wpool,
		metrics: metrics,
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	ch := make(chan struct{})
	s.notify.Store(&ch)
	s.sql = newStatements(cfg.Schema)
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		wpool.Close()
		if errors.Is(err, ErrSchemaVersion) || ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: postgres %s: %v", eventstore.ErrUnavailable, where, err)
	}
	s.w = newWriter(s)
	go s.w.run()
	cfg.Logger.Debug("postgres event store open", "server", where, "schema", cfg.Schema, "schema_version", SchemaVersion)
	return s, nil
}

// describe names the server and database of cc for messages, without the
// password.
func describe(cc *pgx.ConnConfig) string {
	return fmt.Sprintf("%s:%d/%s (user %s)", cc.Host, cc.Port, cc.Database, cc.User)
}

// migrate creates the schema in a new database and checks the version of an
// existing one. A transaction-level advisory lock keyed on the schema name
// makes processes that start together create it once.
func (s *Store) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "eventline schema "+s.schema); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", s.schema+".schema_version").Scan(&exists); err != nil {
			return err
		}
		if exists {
			var version int
			if err := tx.QueryRow(ctx, fmt.Sprintf("SELECT max(version) FROM %s.schema_version", s.schema)).Scan(&version); err != nil {
				return fmt.Errorf("%w: schema %q: reading its version: %v", ErrSchemaVersion, s.schema, err)
			}
			switch {
			case version > SchemaVersion:
				return fmt.Errorf("%w: schema %q has version %d, this build reads up to %d; upgrade eventline",
					ErrSchemaVersion, s.schema, version, SchemaVersion)
			case version < SchemaVersion:
				// Later versions migrate here, keyed on version.
				return fmt.Errorf("%w: schema %q has version %d, which this build cannot migrate",
					ErrSchemaVersion, s.schema, version)
			}
			return nil
		}
		var foreign []string
		rows, err := tx.Query(ctx, `SELECT table_name FROM information_schema.tables
			WHERE table_schema = $1 AND table_name IN ('head', 'streams', 'events') ORDER BY 1`, s.schema)
		if err != nil {
			return err
		}
		if foreign, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		if len(foreign) > 0 {
			return fmt.Errorf("%w: schema %q already has tables %s but no schema_version: not an eventline store; choose another Schema",
				ErrSchemaVersion, s.schema, strings.Join(foreign, ", "))
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE SCHEMA IF NOT EXISTS %s", s.schema)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf(schemaSQL, s.schema)); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, fmt.Sprintf("INSERT INTO %s.schema_version (version) VALUES (%d)", s.schema, SchemaVersion))
		return err
	})
}

// Head implements eventstore.Store.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	if s.closed.Load() {
		return eventstore.Position{}, eventstore.ErrClosed
	}
	head, err := s.head(ctx)
	if err != nil {
		return eventstore.Position{}, s.readError(ctx, err, "head")
	}
	return eventstore.SeqPosition(head), nil
}

func (s *Store) head(ctx context.Context) (uint64, error) {
	var head int64
	err := s.pool.QueryRow(ctx, s.sql.head).Scan(&head)
	return uint64(head), err
}

// readError turns a failed read into the error to yield: the context's error,
// ErrClosed, or err wrapped with what was being read (matching
// eventstore.ErrUnavailable when the server could not be reached).
func (s *Store) readError(ctx context.Context, err error, what string) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case s.closed.Load():
		return eventstore.ErrClosed
	case isTransient(err):
		return fmt.Errorf("%w: postgres: %s: %v", eventstore.ErrUnavailable, what, err)
	}
	return fmt.Errorf("postgres: %s: %w", what, err)
}

// Close stops the writer, fails queued and later appends with
// eventstore.ErrClosed, ends subscriptions with eventstore.ErrClosed and
// closes the connections. An append already being committed finishes first.
// Close is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.done)
		<-s.stopped
		s.listenOnce.Do(func() {}) // no listener starts after Close
		if s.listenStop != nil {
			s.listenStop()
			<-s.listenStopped
		}
		s.pool.Close()
		s.wpool.Close()
	})
	return s.closeErr
}

// notifyChan returns the channel that the next commit closes.
func (s *Store) notifyChan() <-chan struct{} { return *s.notify.Load() }

// wake wakes everyone waiting on notifyChan.
func (s *Store) wake() {
	ch := make(chan struct{})
	close(*s.notify.Swap(&ch))
}
