package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/breaker/pubbreaker"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/relay/broker"
	"github.com/eventline/eventline/relay/consume"
	"github.com/eventline/eventline/relay/tracing"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/domain/customer"
	"github.com/eventline/eventline/sample/saga"
)

// Redis keys of the saga's relay and de-duplication. The hash tag keeps the
// relay's checkpoint and lease in one Redis Cluster slot.
const (
	relayCheckpointKey = "{el:relay:saga}:checkpoint"
	relayLeaseKey      = "{el:relay:saga}:lease"
	sagaDedupPrefix    = "el:saga:dedup:"
	sagaGroup          = "order-credit"
	// sagaClaimTTL bounds how long a delivery of an event stays claimed
	// when its handling could not be settled (the process died, or Redis
	// was cut off while marking it done). The transport redelivers the
	// event in order, so until the claim expires the saga handles nothing
	// else: relay.DefaultClaimTTL (5 min) made a 7-second partition cost
	// minutes of pending orders (found by cart chaos). A saga step takes
	// milliseconds, and handling an event twice is safe (every step decides
	// from the order's state, with command ids), so a short claim suffices.
	sagaClaimTTL = 15 * time.Second
)

// startSaga starts the relay that forwards the saga's events and the saga
// itself, owned by wg until ctx ends. With brokerURL set they meet on that
// broker (NATS JetStream, RabbitMQ or Redis Streams, package relay/broker);
// otherwise serve uses an in-process GoChannel and the saga role Redis Streams
// on rdb. Between processes a lease lets one replica's relay publish at a time
// and a consumer group lets replicas share the messages; the lease, the relay's
// checkpoint and the de-duplication marks stay in rdb whatever the broker.
// The returned func closes the transport after wg is done.
func startSaga(ctx context.Context, wg *sync.WaitGroup, role Role, brokerURL string, store eventstore.Store, rdb redis.UniversalClient,
	reg *eventstore.Registry, metrics prometheus.Registerer, log *slog.Logger, deps *breakers, tp trace.TracerProvider) (closeTransport func(), err error) {
	wlog := watermill.NewSlogLogger(log.With("component", "watermill"))
	var pub message.Publisher
	var sub message.Subscriber
	var lease relay.Lease
	var dedup consume.DedupStore
	switch {
	case brokerURL != "":
		b, err := broker.Open(broker.Config{URL: brokerURL, Group: sagaGroup, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("app: saga broker: %w", err)
		}
		pub, sub = b.Publisher(), b.Subscriber()
		closeTransport = func() { _ = b.Close() }
	case role == RoleServe:
		// BlockPublishUntilSubscriberAck keeps the events in order.
		ch := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, wlog)
		pub, sub = ch, ch
		closeTransport = func() { _ = ch.Close() }
	default:
		p, err := relay.NewRedisStreamsPublisher(rdb, relay.RedisStreamsConfig{})
		if err != nil {
			return nil, fmt.Errorf("app: saga publisher: %w", err)
		}
		host, _ := os.Hostname()
		s, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
			Client: rdb, ConsumerGroup: sagaGroup, Consumer: host + "-" + strconv.Itoa(os.Getpid()),
			// A nacked message (its event still claimed by an unsettled
			// delivery) is redelivered at once by default: a busy loop that
			// logged ~3,000 errors a second under cart chaos.
			NackResendSleep: 100 * time.Millisecond,
		}, wlog)
		if err != nil {
			_ = p.Close()
			return nil, fmt.Errorf("app: saga subscriber: %w", err)
		}
		pub, sub = p, s
		wg.Go(func() { keepConsumerGroup(ctx, rdb, relay.DefaultTopic, sagaGroup, time.Second, log) })
		closeTransport = func() { _ = s.Close(); _ = p.Close() }
	}
	if role != RoleServe || brokerURL != "" {
		// A broker outlives the process: de-duplicate across processes and
		// restarts.
		if lease, err = relay.NewRedisLease(relay.RedisLeaseConfig{Redis: rdb, Key: relayLeaseKey}); err != nil {
			closeTransport()
			return nil, fmt.Errorf("app: saga relay lease: %w", err)
		}
		if dedup, err = consume.NewRedisDedup(consume.RedisDedupConfig{Redis: rdb, Prefix: sagaDedupPrefix, ClaimTTL: sagaClaimTTL}); err != nil {
			closeTransport()
			return nil, fmt.Errorf("app: saga dedup: %w", err)
		}
	}
	// The relay and the saga publish to the broker through its breaker.
	b, err := deps.get(breakerBroker)
	if err != nil {
		closeTransport()
		return nil, err
	}
	if pub, err = pubbreaker.Wrap(pub, b); err != nil {
		closeTransport()
		return nil, fmt.Errorf("app: %w", err)
	}
	sg, err := saga.New(saga.Config{
		Store: store, Registry: reg, Subscriber: sub, Publisher: pub, Dedup: dedup,
		Logger: log, Registerer: metrics, TracerProvider: tp,
	})
	if err != nil {
		closeTransport()
		return nil, fmt.Errorf("app: %w", err)
	}
	rl, err := relay.New(relay.Config{
		// A producer span per event published, child of the span the event
		// was written under (its traceparent header); nil tp: pub itself.
		Name: "saga", Store: store, Publisher: tracing.Publisher(pub, tp), Lease: lease,
		Checkpoint: relay.NewRedisCheckpoint(rdb, relayCheckpointKey),
		Filter:     relay.Types(cart.TypeCheckedOut, customer.TypeCreditReserved, customer.TypeCreditRefused),
		Logger:     log, Registerer: metrics,
	})
	if err != nil {
		closeTransport()
		return nil, fmt.Errorf("app: %w", err)
	}
	wg.Go(func() {
		if err := sg.Run(ctx); err != nil {
			log.Error("saga stopped", "error", err)
		}
	})
	wg.Go(func() {
		// GoChannel drops what is published before anyone subscribed.
		select {
		case <-sg.Running():
		case <-ctx.Done():
			return
		}
		if err := rl.Run(ctx); err != nil {
			log.Error("relay stopped", "error", err)
		}
	})
	return closeTransport, nil
}

// keepConsumerGroup creates the consumer group of topic again whenever it is
// gone, checking every interval until ctx ends. The Redis Streams subscriber
// creates it only when it subscribes; a Redis restarted empty (no
// persistence, or a failover to a replica that lacked it) loses it, and the
// subscriber then fails every read with NOGROUP for good (found by cart
// chaos). The relay's checkpoint went with it, so the relay publishes the
// log again from the start into the new stream; the group is created at "0"
// to read all of it, and the saga's steps are idempotent.
func keepConsumerGroup(ctx context.Context, rdb redis.UniversalClient, topic, group string, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := rdb.XGroupCreateMkStream(ctx, topic, group, "0").Err()
		switch {
		case err == nil:
			log.Warn("saga: consumer group was gone; created it again", "topic", topic, "group", group)
		case redis.HasErrorPrefix(err, "BUSYGROUP"):
			// It exists: the common case.
		}
	}
}
