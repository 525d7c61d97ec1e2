// Package consume is the consuming side of the relay: what a watermill
// consumer of the events a [relay.Relay] publishes needs to handle them
// safely.
//
//   - [RecordFrom] turns a message back into the [eventstore.Record] it was
//     made from ([relay.NewMessage] is the other way).
//   - [Deduplicator] de-duplicates by event id, in two phases (claim, then
//     mark done), with a [DedupStore]: [RedisDedup] shares the marks between
//     consumer processes, [MemoryDedup] keeps them in one process.
//   - [NewRouter] returns a watermill router with CorrelationID, a
//     Deduplicator, a poison queue, Retry and Recoverer, in that order
//     (outermost first); its documentation says why. [Permanent] marks an
//     error no retry can cure.
//
// # At least once, handled once
//
// The relay publishes every event at least once, so a consumer sees
// duplicates. The Deduplicator marks an event handled only once the handler
// succeeded and the router published the messages the handler produced (its
// publisher decorator marks the event after the publish, and releases the
// claim when the publish fails), so a failed or interrupted handling, or an
// output that could not be published, is redelivered and handled again rather
// than lost; and it claims the event while handling it, so two deliveries
// never run at once. The guarantee is at least once: a crash between the
// handler's effects (or the publish of its output) and the mark handles the
// event again, so effects must be idempotent and produced messages may arrive
// twice. [Deduplicate] is the middleware alone, for consumer handlers; it
// refuses a handler that produces messages ([ErrProducedMessages]) rather than
// mark its event done before they are out.
package consume
