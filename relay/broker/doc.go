// Package broker turns a URL into the watermill Publisher and Subscriber the
// relay and its consumers (the sample's saga) run over, using watermill's own
// transports:
//
//	nats://host:4222     NATS JetStream (watermill-nats/v2, pkg/nats)
//	amqp://user:pw@host  RabbitMQ (watermill-amqp/v3); amqps:// for TLS
//	redis://host:6379/0  Redis Streams (relay.RedisStreamsPublisher and
//	                     watermill-redisstream's Subscriber); rediss:// for TLS
//
// Every transport is set up for the relay's contract: the broker keeps a
// message until a consumer acknowledges it, consumers acknowledge only after
// handling (the router acks when the handler returned and its output was
// published), and the subscribers of one Config.Group share the messages of a
// topic, each message going to one of them (a consumer group), while other
// groups each get every message. Delivery is at least once on every broker;
// consume.Deduplicator turns it into once in effect.
//
// # NATS JetStream
//
// Each topic is a stream of its own (named after the topic, with the
// characters stream names refuse replaced by '_', file storage), created when
// a publisher or subscriber first uses the topic. A group is a durable queue
// consumer (explicit acks, delivery from the first message the stream holds),
// so a group that was away resumes where it stopped. A message not acked
// within Config.AckWait is delivered again. Publishes wait for JetStream's
// acknowledgement and carry the message UUID as Nats-Msg-Id, so JetStream
// itself drops a re-publication within its duplicate window (2 minutes by
// default) — the relay re-publishes after a crash.
//
// # RabbitMQ
//
// Each topic is a durable fanout exchange; a group is a durable queue
// "<topic>_<group>" bound to it, with persistent messages. The publisher
// declares the exchange and, when Config.Group is set, the group's queue, so
// nothing the relay publishes before the first consumer subscribed is lost.
// Each Publish call is one AMQP transaction, committed before it returns: one
// commit per relay batch, where a publisher confirm per message (watermill's
// ConfirmDelivery) gives the same guarantee some twenty times slower here
// (docs/benchmarks.md). A message unacked when its consumer's connection drops
// goes back to the queue; consumers take one message at a time (prefetch 1),
// which keeps a topic's order for one consumer. The client reconnects with
// back-off after a dropped connection, at most AMQPReconnectMaxInterval
// apart, so a restarted broker is in use again within about a second of
// accepting connections; durable queues and persistent messages survive the
// restart (TestRelayAndConsumerRideOutABrokerRestart stops and kills a
// private RabbitMQ node while the relay publishes and a group consumes).
//
// # Redis Streams
//
// A topic is a stream; a group is a consumer group created at the start of the
// stream. A consumer's unacked message is claimed by another consumer of the
// group after Config.AckWait.
package broker
