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
// A batch transaction makes two round trips: (1) BEGIN, create and lock the
// rows of the streams it writes, in name order (so writers of different
// processes never deadlock), and look up the batch's event ids; (2) take the
// batch's positions from the one-row head table, insert the events as arrays
// in one statement, update the streams' versions, NOTIFY and COMMIT. The
// writer has a connection of its own, apart from the pool of reads. Another process that inserted one of the batch's event ids
// meanwhile makes the insert fail; the batch then runs again and sees it.
//
// # Global order without gaps
//
// PostgreSQL sequences hand out numbers before commit, and transactions commit
// in any order, so a reader paging by a sequence can pass number 7 while the
// transaction holding 6 has not committed yet, and never see 6. This store
// takes positions from a row instead: UPDATE head SET position = position + n,
// the last statement before COMMIT. The row lock is held until COMMIT, so the
// next transaction that writes events gets its positions only after this one
// committed and became visible. Hence positions are gapless (a rolled-back
// transaction returns its numbers with the row), they increase in commit
// order, and a snapshot that sees position P sees every position below P: a
// reader that has seen P never later finds a record below it. The lock is
// held only for the insert and the commit, and group commit shares it among
// all the appends of a batch; processes take turns.
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
// When the connection broke while COMMIT was in flight, the error also
// matches ErrOutcomeUnknown: the append may have been written. Otherwise it
// was not. Retrying with the same event ids is always safe: a retry of an
// append that was written returns the original result with Repeated set.
//
// # Reads and subscriptions
//
// ReadStream and ReadAll page (Config.PageSize records or 4 MiB per query) on pooled
// connections released between pages, so memory stays flat. Subscribe
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
