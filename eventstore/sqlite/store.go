package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/internal/groupcommit"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// SchemaVersion is the version of the file layout this package writes, kept in
// PRAGMA user_version.
const SchemaVersion = 1

// applicationID marks a file as an eventline event store (PRAGMA
// application_id), so that a foreign SQLite file is refused, not altered.
const applicationID = 0x45564c4e // "EVLN"

// ErrSchemaVersion means the file was written by a newer version of this
// package (or is not an eventline event store); the store refuses to open it
// rather than misread it.
var ErrSchemaVersion = errors.New("sqlite: unsupported schema version")

// The schema. Streams get a small integer id so that the per-event index is on
// two integers instead of a text id (an index over many text ids roughly halves
// insert speed). Metadata is kept in columns (headers as JSON, NULL when
// absent), so reading it back is cheap. An event's global position is the rowid of events, which the
// single writer assigns in commit order.
const schema = `
CREATE TABLE streams (
	id   INTEGER PRIMARY KEY,
	name TEXT NOT NULL UNIQUE
);
CREATE TABLE events (
	position    INTEGER PRIMARY KEY,
	stream      INTEGER NOT NULL,
	version     INTEGER NOT NULL,
	id          BLOB NOT NULL,
	type        TEXT NOT NULL,
	recorded_at INTEGER NOT NULL,
	correlation_id TEXT,
	causation_id   TEXT,
	headers     BLOB,
	data        BLOB NOT NULL
);
CREATE UNIQUE INDEX events_stream_version ON events (stream, version);
CREATE UNIQUE INDEX events_id ON events (id);
`

// Store is an eventstore.Store on one SQLite file. Create it with Open; it is
// safe for concurrent use. Appends are group-committed by a single writer
// goroutine; reads use a separate pool of read-only connections.
type Store struct {
	cfg     Config
	path    string
	metrics *groupcommit.Metrics // nil: no Config.Registerer
	wdb     *sql.DB              // one connection, owned by the writer
	rdb     *sql.DB              // read-only pool
	w       *writer
	reads   readStmts
	closed  atomic.Bool
	// done is closed by Close; stopped is closed when the writer has exited,
	// checkpointStopped when the checkpointer has.
	done, stopped, checkpointStopped chan struct{}
	checkpointer                     *sql.Conn
	// checkpointWanted wakes the checkpointer after a commit.
	checkpointWanted chan struct{}
	// notify is closed and replaced after every commit that wrote events, waking
	// subscriptions without polling.
	notify    atomic.Pointer[chan struct{}]
	closeOnce sync.Once
	closeErr  error
}

var _ eventstore.Store = (*Store)(nil)

// Open opens the store at cfg.Path, creating the file, its parent directory and
// the schema when missing. It refuses a file of a newer schema version with an
// error matching ErrSchemaVersion. The caller must Close the store.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	s, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	go s.w.run()
	return s, nil
}

// openStore does Open's work except starting the writer; the checkpointer
// runs already.
func openStore(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %q: %w", cfg.Path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("sqlite: open %q: is a directory", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	var metrics *groupcommit.Metrics
	if cfg.Registerer != nil {
		if metrics, err = groupcommit.NewMetrics(cfg.Registerer, "sqlite"); err != nil {
			return nil, fmt.Errorf("sqlite: metrics: %w", err)
		}
	}
	s := &Store{
		metrics:           metrics,
		cfg:               cfg,
		path:              path,
		done:              make(chan struct{}),
		stopped:           make(chan struct{}),
		checkpointStopped: make(chan struct{}),
		checkpointWanted:  make(chan struct{}, 1),
	}
	ch := make(chan struct{})
	s.notify.Store(&ch)
	if err := s.open(ctx); err != nil {
		s.release()
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	go s.checkpoints(s.checkpointer)
	cfg.Logger.Debug("sqlite event store open", "path", path, "sync", cfg.Sync, "schema_version", SchemaVersion)
	return s, nil
}

// open connects, migrates and prepares; on error the caller calls release.
func (s *Store) open(ctx context.Context) error {
	var err error
	// synchronous=NORMAL in both modes: with SyncFull the writer's syncer
	// fsyncs the WAL after each commit and before answering (syncBehind).
	s.wdb, err = sql.Open("sqlite", dsn(s.path, "busy_timeout(10000)", "journal_mode(WAL)",
		"synchronous(NORMAL)", "cache_size(-32768)",
		fmt.Sprintf("wal_autocheckpoint(%d)", writerCheckpointPages)))
	if err != nil {
		return err
	}
	// The writer and the checkpointer each hold a connection for the store's
	// life.
	s.wdb.SetMaxOpenConns(2)
	s.wdb.SetMaxIdleConns(2)
	conn, err := s.wdb.Conn(ctx)
	if err != nil {
		return err
	}
	if err := migrate(ctx, conn); err != nil {
		conn.Close()
		return err
	}
	s.w, err = newWriter(ctx, s, conn)
	if err != nil {
		conn.Close()
		return err
	}
	if s.checkpointer, err = s.wdb.Conn(ctx); err != nil {
		return err
	}
	// No mmap_size: the file grows with every commit, and a mapped reader
	// then remaps it on most read transactions, which costs more (measured)
	// than the page reads it saves.
	s.rdb, err = sql.Open("sqlite", dsn(s.path, "busy_timeout(10000)", "query_only(1)"))
	if err != nil {
		return err
	}
	s.rdb.SetMaxOpenConns(4)
	s.rdb.SetMaxIdleConns(4)
	return s.reads.prepare(ctx, s.rdb)
}

// dsn builds a modernc.org/sqlite data source name for path with the pragmas.
func dsn(path string, pragmas ...string) string {
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// migrate creates the schema in a new file and checks the version of an
// existing one.
func migrate(ctx context.Context, conn *sql.Conn) (err error) {
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	var version, appID, objects int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return err
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return err
	}
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&objects); err != nil {
		return err
	}
	switch {
	case objects > 0 && appID != applicationID:
		return fmt.Errorf("%w: not an eventline event store (application_id %#x)", ErrSchemaVersion, appID)
	case version > SchemaVersion:
		return fmt.Errorf("%w: the file has schema version %d, this build reads up to %d; upgrade eventline",
			ErrSchemaVersion, version, SchemaVersion)
	case version == SchemaVersion:
		_, err = conn.ExecContext(ctx, "COMMIT")
		return err
	}
	// Version 0 with no objects: a new file. Later versions add their
	// migrations here, keyed on version.
	stmts := schema + fmt.Sprintf("PRAGMA application_id = %d; PRAGMA user_version = %d;", applicationID, SchemaVersion)
	if _, err := conn.ExecContext(ctx, stmts); err != nil {
		return err
	}
	_, err = conn.ExecContext(ctx, "COMMIT")
	return err
}

// Sync returns the durability the store commits with (Config.Sync), so that a
// process can log or report it.
func (s *Store) Sync() SyncMode { return s.cfg.Sync }

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
	err := s.reads.head.QueryRowContext(ctx).Scan(&head)
	// Positions committed and not yet fsynced (SyncFull) stay hidden: a
	// reader never gets ahead of what a power loss keeps. Read after the
	// head, since the writer marks a batch before committing it.
	if u := s.w.unsyncedFrom(); u != 0 && uint64(head) >= u {
		head = int64(u - 1)
	}
	return uint64(head), err
}

// dropUnsynced cuts page (in log order) before the first position committed
// and not yet fsynced (SyncFull), which a subscription must not see yet; the
// fsync's commit notification wakes it to read them again. Call it after the
// read: the writer marks a batch before committing it.
func (s *Store) dropUnsynced(page []eventstore.Record) []eventstore.Record {
	u := s.w.unsyncedFrom()
	if u == 0 {
		return page
	}
	for i, rec := range page {
		if rec.Position.Commit >= u {
			return page[:i]
		}
	}
	return page
}

// readError turns a failed read into the error to yield: the context's error,
// ErrClosed, or err wrapped with what was being read.
func (s *Store) readError(ctx context.Context, err error, what string) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case s.closed.Load():
		return eventstore.ErrClosed
	}
	return fmt.Errorf("sqlite: %s: %w", what, err)
}

// Close stops the writer, fails queued and later appends with
// eventstore.ErrClosed, ends subscriptions with eventstore.ErrClosed and
// closes the file. An append already being committed finishes first. Close is
// safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.done)
		<-s.stopped
		<-s.checkpointStopped
		s.closeErr = s.release()
	})
	return s.closeErr
}

// release closes what open opened, in reverse order.
func (s *Store) release() error {
	var errs []error
	if s.rdb != nil {
		errs = append(errs, s.reads.close(), s.rdb.Close())
	}
	if s.checkpointer != nil {
		errs = append(errs, s.checkpointer.Close())
	}
	if s.w != nil {
		errs = append(errs, s.w.close())
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	return errors.Join(errs...)
}

// notifyChan returns the channel that the next commit closes.
func (s *Store) notifyChan() <-chan struct{} { return *s.notify.Load() }

// notifyCommit wakes everyone waiting on notifyChan.
func (s *Store) notifyCommit() {
	ch := make(chan struct{})
	close(*s.notify.Swap(&ch))
}
