// Package postgres is eventline's production event store: an
// [eventstore.Store] on PostgreSQL through github.com/jackc/pgx/v5. Any number
// of processes on any number of hosts may share one database.
//
//	store, err := postgres.Open(ctx, postgres.Config{URL: "postgres://app@db/app"})
//	if err != nil { ... }
//	defer store.Close()
//
// # Writes: group commit
//
// Each Store has one writer goroutine. Append hands its events to it and
// waits; the writer takes every append queued at that moment and commits them
// in one transaction, so the goroutines of a process share the cost of a
// commit. Each append is checked against its stream as the appends before it
// in the batch left it; one that conflicts or repeats event ids fails or
// returns alone, its neighbours commit.
//
// A batch whose appends all expect an exact version (or no stream), as
// command handlers' appends do, is one statement in one round trip: the
// writer decides every append in Go, assuming each stream is at the version
// its first append in the batch expects, and the statement takes the head
// row, moves each stream from the assumed version to the decided one (only
// if it is at the assumed version), inserts the events as arrays and
// NOTIFYs; the unique index on event ids refuses an id already in the log,
// including one committed while the statement waited for the head row. If
// any assumption is wrong or an id is already written, the statement fails
// before anything commits and the batch runs on the path that reads first:
// two round trips, (1) BEGIN, lock the head row, create and lock the stream
// rows, look up the event ids; (2) take positions, insert, update the
// streams, NOTIFY, COMMIT. Either way a repeated append gets the original
// result and a wrong version is refused exactly as if the stream had been
// read. The writer has a connection of its own, apart from the pool of reads.
// Another process that inserted one of the batch's event ids meanwhile
// makes the insert fail; the batch then runs again and sees it.
//
// # Global order without gaps
//
// PostgreSQL sequences hand out numbers before commit, and transactions commit
// in any order, so a reader paging by a sequence can pass number 7 while the
// transaction holding 6 has not committed yet, and never see 6. This store
// takes positions from a row instead: UPDATE head SET position = position
// + n, as the first thing a writing transaction does. The row lock is held
// until COMMIT, so the next transaction that writes events gets its
// positions only after this one committed and became visible. Hence
// positions are gapless (a rolled-back transaction returns its numbers with
// the row), they increase in commit order, and a snapshot that sees position
// P sees every position below P: a reader that has seen P never later finds
// a record below it. Because every writer takes the head row before any
// stream row, writers never deadlock. On the one-statement path the lock is
// held for that statement and the commit; group commit shares it among all
// the appends of a batch; processes take turns.
//
// The alternative, ordering by transaction ids (pg_current_xact_id and
// pg_snapshot_xmin), lets transactions commit in parallel but makes every
// reader hold back records until older transactions end, needs a second,
// per-transaction position, and lets a long transaction stall every reader.
// With group commit one serial commit point already carries tens of thousands
// of events per second, so the simpler, exact design wins.
//
// # Failures
//
// An append whose transaction fails on the database (server down, restarted,
// commit timeout) fails with an error matching eventstore.ErrUnavailable.
// When the connection broke while the request that commits was in flight
// (the COMMIT, or on the one-statement path the statement itself), the error
// also matches ErrOutcomeUnknown: the append may have been written.
// Otherwise it was not. Retrying with the same event ids is always safe: a retry of an
// append that was written returns the original result with Repeated set.
//
// # Reads and subscriptions
//
// ReadStream and ReadAll page (Config.PageSize records or 4 MiB per query) on pooled
// connections released between pages, so memory stays flat. Log pages
// carry stream ids; a reader names them from a cache of its own, asking the
// server only for ids it has not seen. Subscribe
// catches up the same way, then waits. Commits through the same Store wake it
// at once; commits of other processes wake it through LISTEN/NOTIFY on a
// dedicated connection, which reconnects with back-off and wakes every
// subscription after reconnecting (notifications sent meanwhile are lost).
// Config.PollInterval bounds the wait should a notification be lost. While
// the server is down, subscriptions retry and resume after the last record
// they yielded.
//
// # Schema
//
// The store keeps its tables in Config.Schema (default "eventline"), created
// on first use under an advisory lock, its version in a schema_version table
// (see SchemaVersion). A schema of a newer version, or one holding foreign
// tables of the same names, is refused with ErrSchemaVersion. Indexes: the
// events' primary key on position (ReadAll, Subscribe), a unique index on
// (stream, version) (ReadStream, one version per event), a unique index on the
// event id (ids unique across the log, repeat detection), and streams' unique
// name (how appends find their stream row).
package postgres
