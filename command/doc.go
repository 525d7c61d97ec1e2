// Package command is eventline's write side: domain logic written as a
// [Decider], and a [Handler] that applies commands to entities kept in an
// [eventstore.Store].
//
// # Deciders
//
// A Decider is three pure functions over the domain's own types: Initial
// state, Decide(state, command) ([]event, error) and Evolve(state, event)
// state. Domain code needs nothing else from eventline;
// [github.com/eventline/eventline/command/commandtest] tests it as given events, when command, then events or error.
//
// # Handling a command
//
// [NewHandler] binds a Decider to a Store, an [eventstore.Registry] (which turns the domain's
// event values into stored events and back) and a [Config].
// [Handler.Handle](ctx, id, cmd) then:
//
//  1. names the entity's stream Config.Name + "-" + id, e.g. "cart-42". Entity
//     ids are 1 to [MaxIDLen] bytes of [A-Za-z0-9._~-], safe in stream names,
//     Redis keys and URLs; anything else is refused with [ErrInvalidID];
//  2. reads the stream and folds it with Evolve (no stream: the initial state),
//     or, when the state cache holds the stream, starts from the cached state
//     without reading (see State cache);
//  3. calls Decide;
//  4. appends the decided events expecting exactly the version it read
//     ([eventstore.Exact]), so that a concurrent write can never be overwritten.
//
// If another writer appended first ([eventstore.ErrWrongVersion]), Handle waits a
// jittered, exponentially growing pause and starts again from step 2, at most
// Config.MaxAttempts times (default 10); then it returns an error matching both
// [ErrConflict] and eventstore.ErrWrongVersion. Calls for the same entity on one
// Handler take turns instead of racing, so retries only happen between
// processes (or Handlers) writing the same stream.
//
// Handle returns a [Result]: the stream, its new version, the global position of
// the last event written (pass it to the read side to wait for your own
// write), and the events. A decision of no events writes nothing and succeeds,
// with the stream's current version and position.
//
// # State cache
//
// A Handler keeps the folded state of the Config.CacheSize most recently used
// streams (default [DefaultCacheSize], least recently used evicted first;
// Config.NoCache turns it off). After a successful command the entry holds the
// state after the command's own events — folded as the registry decodes them
// from their encoded form, as a reload would see them. Events are immutable
// and versions only grow, so an entry is never wrong, only behind.
//
// The stream's next command decides on the cached state without reading the
// stream: when it decides events, the append expects the cached version, so
// if another Handler or process appended meanwhile the store refuses it
// (eventstore.ErrWrongVersion) and the retry reloads the stream. A refusal or
// a decision of no events cannot be checked by an append, so those are decided
// again after reading the events the stream gained since the cached version
// (usually none). A command on a hot stream therefore costs one append and no
// read.
//
// Evolve may update a state in place (a map, a slice), so an entry is never
// shared: a command takes it out of the cache while it holds the stream's turn
// and puts it back only when loading, deciding and appending all succeeded.
// After any error — a refusal, a failed or conflicting append, a decoding
// error — the entry is dropped and the next command reloads the whole stream.
//
// [Handler.HandleNew] extends the same trust to a stream that is not cached,
// for commands that create their entity (opening a cart): it decides on the
// initial state without reading the stream and appends expecting no stream.
// A stream that exists after all makes the store refuse the append, and the
// command is then read and decided as Handle would, at once; a refusal or a
// decision of no events on the initial state is decided again after reading,
// as for a cached entry. The answers are Handle's; a new entity's first
// command saves the read of its empty stream (on SQLite about half of an
// open's CPU, BenchmarkOpenCarts).
//
// Each entry also remembers the command ids its stream holds (up to 1,024;
// past that, commands with an id reload the stream), so idempotent commands
// keep working as described below without reading the stream from its start.
//
// # Errors
//
// An error from Decide is a domain refusal. Handle returns it wrapped in a
// [*RejectedError], which unwraps to it: errors.Is(err, cart.ErrCheckedOut) and
// errors.As work unchanged, and errors.Is(err, [ErrRejected]) separates every
// domain refusal from infrastructure failures (store errors such as
// eventstore.ErrUnavailable, decoding errors, ErrConflict, ctx's error), which
// are never ErrRejected. A refusal writes nothing; retrying it unchanged is
// pointless, retrying an infrastructure failure may succeed.
//
// # Idempotent commands
//
// A command id set with [WithID] (an HTTP API takes it from its Idempotency-Key
// header) makes the command idempotent: handling it again — after a timeout,
// a crash, or from 32 goroutines at once — writes its events once and returns
// the same Result every time. It works like this:
//
//   - every event of the command carries the id in the [HeaderCommandID] header
//     and a hash of the command (Go type and JSON) in HeaderCommandHash;
//   - while folding, Handle looks for the id in the stream (or in the ids the
//     state cache remembers for it); if found, it decides nothing and returns
//     the Result of the command's events. If the hash differs, the id was
//     reused for another command: ErrIdempotencyConflict;
//   - the event ids are derived from the stream, the command id and the
//     event's index (UUIDv5), so two racing handlings append events with the
//     same ids and the store itself recognises the second append as a repeat
//     (eventstore.AppendResult.Repeated); a loser whose ids land elsewhere
//     meets eventstore.ErrDuplicateEvent, reloads and finds the winner's
//     events. Downstream consumers can de-duplicate by event id too;
//   - a repeat the store recognised is never answered with the events this
//     Handler decided: the second handling may run on another replica whose
//     cached state is behind, or for another command under the same id, and
//     decide other events that the store did not write. Handle reads what the
//     stream holds after its cached version, folds that into the cache, and
//     answers as for any repeat: the stored Result, or ErrIdempotencyConflict
//     when the stored events carry another command's hash. So every replica
//     refuses a reused id whatever its cache holds, and a cache never holds
//     state the store does not have.
//
// The window is the stream's lifetime: the record of the command is the
// stream itself, so it never expires and needs no separate table, and a
// command id is scoped to one stream (the same id on another entity is another
// command). What is not remembered: a command that was refused or decided no
// events wrote nothing, so handling its id again decides again, on the state
// of that moment.
//
// # Metadata
//
// Correlation id, causation id and headers travel on the context
// ([WithMetadata], [MetadataFrom]) and are written onto every event Handle appends.
// Left empty, the correlation id is the command id, or a new UUID per Handle
// call, and the causation id is the command id. A saga or process manager
// reacting to a recorded event uses [CausedBy](ctx, rec): the events it causes
// carry rec's id as causation id and continue rec's correlation id.
//
// # Long streams and snapshots
//
// There are no snapshots. A stream's first command (or its first after its
// cache entry was evicted, or after an error) reads and folds the whole
// stream; every later one, with the state cache on, reads only what is new.
// Loading costs grow with the stream (BenchmarkLoad measures them; the
// project's docs/benchmarks.md holds the figures): a cart of about 200 events
// costs well under a millisecond on its first command, and almost nothing
// after. Streams that grow without bound still want closing the books into a
// new stream (or snapshots) so that restarts and cache misses stay cheap.
//
// # Throughput
//
// BenchmarkHandleCarts runs the shopping-cart workload (10,000 carts × open,
// 5 add-item, checkout) on SQLite, and BenchmarkHandle one hot stream: with
// many callers a Handler gains from the SQLite store's group commit and from
// the state cache.
package command
