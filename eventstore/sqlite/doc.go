// Package sqlite is eventline's embedded event store: an [eventstore.Store] on
// one SQLite file, through the pure-Go driver modernc.org/sqlite (no cgo).
//
//	store, err := sqlite.Open(ctx, sqlite.Config{Path: "data/events.db"})
//	if err != nil { ... }
//	defer store.Close()
//
// # Writes: group commit
//
// A single writer goroutine owns the one write connection. Append hands its
// events to the writer and waits; the writer takes every append queued at that
// moment and commits them in one transaction, so concurrent callers share the
// cost of a commit. Each append is checked against its own expected version,
// as its stream stands after the appends before it in the same transaction; an
// append that conflicts (or repeats an event id) writes nothing and fails
// alone, its neighbours commit. Append returns only after the transaction has
// committed. A record's global position is its rowid, assigned by the writer
// in commit order, so positions strictly increase in commit order.
//
// A batch is whatever is queued when the writer is free; a lone caller never
// waits for company. Appends that arrive while a commit runs queue up and
// form the next batch. When the previous batch held several appends, the
// writer also waits a moment for its callers to come back with their next
// append, so that batches track the number of concurrent callers instead of
// a large batch followed by many tiny ones: for as many appends as the
// previous batch, less those still waiting for their fsync (which cannot come
// back before it), at most 200µs (SyncNormal) or 1ms (SyncFull).
//
// Events appended without an id get a time-ordered UUIDv7 (not a random v4):
// new ids then land at the end of the event-id index instead of on random
// pages of it, which on the benchmark doubles insert speed once the log
// outgrows the page cache.
//
// # Durability
//
// The file is in WAL mode. By default (SyncFull) the WAL is fsynced after
// every group commit and before its appends return, so an acknowledged append
// survives a power loss or OS crash, as PostgreSQL and EventStoreDB promise.
// The store runs that fsync itself rather than inside SQLite's COMMIT
// (synchronous=FULL would): the writer commits with synchronous=NORMAL and
// hands the batch to a syncer goroutine, which fsyncs the WAL once for every
// batch committed so far and then answers their callers. So the next group
// commit runs while the disk syncs the last one, and one fsync covers every
// batch committed meanwhile. Head, ReadAll and Subscribe do not show a
// batch's positions before its fsync, so a projection never gets ahead of
// what a power loss keeps (ReadStream may: a command decided on such an event
// is appended after it and synced with or after it). A reader in another
// process sees a commit as soon as SQLite does, before its fsync. Concurrent
// appends share the fsync; a lone caller pays one per append, so its appends
// per second are bounded by the disk's synced writes per second.
//
// When a write fails, callers learn it, readers of the process see nothing
// unsynced, and a retry never writes twice:
//
//   - A failed fsync fails the appends it was to cover (and those committed
//     before the store noticed) with an error matching
//     eventstore.ErrUnavailable that says they may or may not be durable:
//     they are committed, but the disk may have dropped them. Head, ReadAll
//     and Subscribe of this Store never show them. Every later append fails
//     with ErrUnavailable saying it was not written, until the store is
//     closed and reopened (after Linux reports a failed fsync once, it may
//     report the next one as a success). Reopened, the store holds those
//     appends or not, whole either way; retry them as they were, with the
//     same event ids: an append that was kept returns its original result
//     with Repeated set, one that was not is written once.
//   - A failed COMMIT rolls its transaction back and fails the appends of its
//     batch with ErrUnavailable; nothing of them is written. The batches
//     committed before it are answered after their fsync as usual, and the
//     next append commits normally.
//   - Close answers every append it does not refuse: the committed ones
//     after their fsync, which Close waits for, with its outcome; the others
//     with eventstore.ErrClosed.
//
// SyncNormal (synchronous=NORMAL) is the explicit choice to skip the fsync: a
// committed append still survives a crash or kill of the process, but a power
// loss or OS crash can lose the last commits acknowledged before it (the WAL
// is fsynced only at checkpoints). Neither mode can corrupt the file.
//
// # Checkpoints
//
// Committed pages are copied from the WAL back into the database file by
// checkpoints, which is also where synchronous=NORMAL fsyncs. SQLite's
// automatic checkpoint runs on the committing connection: one group commit in
// every few dozen would stall for the copy and two fsyncs while all its
// callers wait. The store instead runs PASSIVE checkpoints on a connection of
// their own after commits, at most one per 20ms, beside the writer (which
// measured 30–50% more concurrent appends per second). The writer still
// checkpoints by itself when the WAL reaches 8,192 pages, as a bound: under a
// sustained load the WAL file grows to about 40–50 MiB and is reused from its
// start after that.
//
// # Reads and subscriptions
//
// ReadStream and ReadAll page through the file (1,000 records or 4 MiB per
// query) on a separate pool of read-only connections, so memory stays flat and
// readers never wait for the writer. A page of ReadStream is one query, which
// also tells a missing stream from one with nothing after the version asked,
// so a caller that only needs the events it has not seen yet (the command
// handler's state cache) pays one query. A page of the log reads each
// record's stream id, not its name: the store keeps stream names by id and
// loads those it lacks by runs of ids, and ReadAll and Subscribe read the
// next page on a goroutine of their own while the caller takes the current
// one. Subscribe catches up the same way, then
// waits: a commit through the same Store wakes it at once; records appended
// by another process (or another Store on the same file) are found by polling
// with back-off from 1ms up to Config.PollInterval (default 250ms), which is
// the worst-case latency for them.
//
// Several processes may open the same file. SQLite serialises their
// transactions; each writer notices the others' commits through PRAGMA
// data_version and reloads what it caches.
//
// # Schema
//
// The store creates its schema in a new file and records its version in
// PRAGMA user_version (see SchemaVersion); a file of a newer version, or a
// SQLite file that is not an event store, is refused with ErrSchemaVersion.
// Streams are mapped to small integer ids in a streams table; events are
// indexed by (stream id, version) and by event id, which keeps inserts fast
// and event ids unique across the log.
package sqlite
