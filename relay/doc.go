// Package relay forwards committed events from an eventstore.Store to a
// watermill message.Publisher, and gives consumers the watermill pieces they
// need to handle those events safely: de-duplication by event id, a router with
// retry and a poison queue, and RecordFrom to turn a message back into a record.
//
// # The event store is the outbox
//
// A command appends its events to the store and nothing else: there is no
// second write to a broker that could succeed while the first fails. The Relay
// subscribes to the store from its own checkpoint, publishes what it reads, and
// moves the checkpoint afterwards. Transports: watermill's GoChannel inside one
// process (use gochannel.Config{BlockPublishUntilSubscriberAck: true}; without
// it GoChannel delivers each message from its own goroutine and order is lost),
// Redis Streams between processes.
//
// # Redis Streams
//
// NewRedisStreamsPublisher returns the publisher to use for Redis Streams. It
// writes entries in watermill-redisstream's format (through its Marshaller),
// so watermill-redisstream's Subscriber reads them, but it sends all the XADDs
// of a Publish call in one pipeline: one round trip per batch, where
// redisstream.Publisher waits for one per message: the relay runs at the
// pipelined-XADD ceiling, seven times faster (docs/benchmarks.md). A failed
// pipeline fails the whole call, though Redis may have added part of it, and
// the relay retries the batch: duplicates, never loss, as below. Its Close
// leaves the Redis client open, unlike redisstream.Publisher's, which closes
// the client it was given.
//
// # At least once
//
// Every committed event is published at least once, in position order, per
// topic. The relay publishes a batch (one Publish call per run of consecutive
// records with the same topic) and only then saves the checkpoint. So:
//
//   - A crash, kill or Save failure between a publish and its checkpoint save
//     publishes that batch again on restart (at most Config.BatchSize messages
//     per relay): duplicates, never loss.
//   - A Publish error is retried, with exponential back-off and jitter between
//     Config.MinBackoff and Config.MaxBackoff, until it succeeds; the relay
//     never moves on, and never saves a checkpoint past an unpublished event.
//     A publisher that fails half-way through a call may have sent some of the
//     messages (RedisStreamsPublisher's pipeline included); the retry sends
//     them again.
//   - A failing checkpoint save is retried the same way before the next batch
//     is read, so at most one batch is ever unsaved.
//   - Records the Config.Filter refuses are skipped and the checkpoint moves
//     past them.
//
// Consumers therefore de-duplicate by event id: the message UUID and the
// MetaEventID metadata are the event's id, stable across re-publication.
// A Deduplicator does that in a watermill router.
//
// # Metadata
//
// Each message's UUID is the event id and its payload the event data. Its
// metadata holds MetaEventID, MetaType, MetaStream, MetaVersion, MetaPosition
// (the position's opaque token), MetaRecordedAt (RFC 3339, UTC),
// MetaCorrelationID and MetaCausationID when set, and each event header under
// MetaHeaderPrefix. watermill's middleware.CorrelationIDMetadataKey carries the
// correlation id (the event id when the event has none) so watermill's
// CorrelationID middleware passes it on to the messages a handler produces.
// RecordFrom reverses the mapping.
//
// # Back-pressure
//
// The relay reads the store through its subscription into a buffer of
// Config.BatchSize records. While the publisher is slow or failing, the buffer
// fills and the subscription stops reading: nothing piles up in memory and
// the store is not read ahead of the transport. The lag shows as the distance
// between the store's head and Status().Position (metric
// eventline_relay_position). With Redis Streams, bound each stream with
// RedisStreamsConfig.Maxlens or DefaultMaxlen (approximate trimming, as
// watermill's) if consumers may fall far behind: entries trimmed before a
// consumer group read them are lost to it.
//
// # Failures and logs
//
// Run keeps going through transient failures (publish, checkpoint load and
// save, subscription errors; a broken subscription is resumed from the last
// checkpointed position). Each operation logs once when it starts failing and
// once when it recovers, not once per attempt; Status and the metrics
// (eventline_relay_*_total, eventline_relay_failing) show the rest. Run returns
// nil when its context ends, and an error only when the store is closed or Run
// is already running.
//
// # Running several instances
//
// Two relays with the same checkpoint and no Lease both publish everything:
// each event arrives twice, none is lost. Config.Lease (RedisLease, the same
// Redis lease the projection runner uses: one hash key with a fencing token,
// expiring by the Redis server's clock) lets one instance publish at a time
// while the others wait to take over. The holder stops as soon as it cannot
// prove it still holds the lease (a renewal finds it taken, or Redis has not
// answered for a TTL counted from before its last successful renewal). The
// lease is advisory: an instance that stalls past the lease TTL can publish
// one more batch after another took over, which again means duplicates, not
// loss.
//
// # Consumers
//
// NewRouter returns a watermill router with CorrelationID, a Deduplicator,
// PoisonQueue, Retry and Recoverer in that order (outermost first); its
// documentation says why. The Deduplicator marks an event handled only once
// the handler succeeded and the router published the messages the handler
// produced (its publisher decorator marks the event after the publish, and
// releases the claim when the publish fails), so a failed or interrupted
// handling, or an output that could not be published, is redelivered and
// handled again rather than lost; and it claims the event while handling it,
// so two deliveries never run at once. The guarantee is at least once: a
// crash between the handler's effects (or the publish of its output) and the
// mark handles the event again, so effects must be idempotent and produced
// messages may arrive twice. Deduplicate is the middleware alone, for
// consumer handlers; it refuses a handler that produces messages
// (ErrProducedMessages) rather than mark its event done before they are out.
// RedisDedup shares the marks between consumer processes; MemoryDedup keeps
// them in one process.
package relay
