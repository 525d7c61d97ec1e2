// Package relay forwards committed events from an [eventstore.Store] to a
// watermill [message.Publisher]: the producing side of eventline's
// integration events. A [Relay] follows the log from its own [Checkpoint],
// publishes in batches, and moves the checkpoint afterwards; a [Lease] lets
// one of several instances publish at a time. The consuming side (turning a
// message back into a record, de-duplication by event id, a router with retry
// and a poison queue) is package [github.com/eventline/eventline/relay/consume].
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
// [NewRedisStreamsPublisher] returns the publisher to use for Redis Streams. It
// writes entries in watermill-redisstream's format (through its Marshaller),
// so watermill-redisstream's Subscriber reads them, but it sends all the XADDs
// of a Publish call in one pipeline: one round trip per batch, where
// redisstream.Publisher waits for one per message: the relay runs at the
// pipelined-XADD ceiling, about seven times faster in the project's
// benchmarks. A failed
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
//     [Config].MinBackoff and MaxBackoff, until it succeeds; the relay
//     never moves on, and never saves a checkpoint past an unpublished event.
//     A publisher that fails half-way through a call may have sent some of the
//     messages (RedisStreamsPublisher's pipeline included); the retry sends
//     them again.
//   - A failing checkpoint save is retried the same way before the next batch
//     is read, so at most one batch is ever unsaved.
//   - Records the [Config].Filter refuses are skipped and the checkpoint moves
//     past them.
//
// Consumers therefore de-duplicate by event id: the message UUID and the
// [MetaEventID] metadata are the event's id, stable across re-publication.
// consume.Deduplicator does that in a watermill router.
//
// # Metadata
//
// Each message's UUID is the event id and its payload the event data. Its
// metadata holds [MetaEventID], [MetaType], [MetaStream], [MetaVersion],
// [MetaPosition] (the position's opaque token), [MetaRecordedAt] (RFC 3339,
// UTC), [MetaCorrelationID] and [MetaCausationID] when set, and each event
// header under [MetaHeaderPrefix]. watermill's middleware.CorrelationIDMetadataKey carries the
// correlation id (the event id when the event has none) so watermill's
// CorrelationID middleware passes it on to the messages a handler produces.
// [NewMessage] builds such a message; consume.RecordFrom reverses the mapping.
//
// # Back-pressure
//
// The relay reads the store through its subscription into a buffer of
// Config.BatchSize records. While the publisher is slow or failing, the buffer
// fills and the subscription stops reading: nothing piles up in memory and
// the store is not read ahead of the transport. The lag shows as the distance
// between the store's head and [Relay.Status]().Position (metric
// eventline_relay_checkpoint_position). With Redis Streams, bound each stream with
// [RedisStreamsConfig].Maxlens or DefaultMaxlen (approximate trimming, as
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
// each event arrives twice, none is lost. [Config].Lease ([RedisLease], the same
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
// Package [github.com/eventline/eventline/relay/consume] holds what a
// consumer needs: RecordFrom, the Deduplicator with its Redis and in-memory
// stores, and NewRouter, a watermill router with de-duplication, retry and a
// poison queue in the right order.
package relay
