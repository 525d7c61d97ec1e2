package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/relay/consume"
	"github.com/eventline/eventline/sample/cart"
	"github.com/eventline/eventline/sample/customer"
	"github.com/eventline/eventline/sample/saga"
)

// Redis keys of the saga's relay and de-duplication. The hash tag keeps the
// relay's checkpoint and lease in one Redis Cluster slot.
const (
	relayCheckpointKey = "{el:relay:saga}:checkpoint"
	relayLeaseKey      = "{el:relay:saga}:lease"
	sagaDedupPrefix    = "el:saga:dedup:"
	sagaGroup          = "order-credit"
)

// startSaga starts the relay that forwards the saga's events and the saga
// itself, owned by wg until ctx ends. In serve they meet on an in-process
// GoChannel; in the saga role on Redis Streams, with a lease so that one
// replica's relay publishes at a time and a consumer group so that replicas
// share the messages. The returned func closes the transport after wg is
// done.
func startSaga(ctx context.Context, wg *sync.WaitGroup, role Role, store eventstore.Store, rdb redis.UniversalClient,
	reg *eventstore.Registry, metrics prometheus.Registerer, log *slog.Logger) (closeTransport func(), err error) {
	wlog := watermill.NewSlogLogger(log.With("component", "watermill"))
	var pub message.Publisher
	var sub message.Subscriber
	var lease relay.Lease
	var dedup consume.DedupStore
	if role == RoleServe {
		// BlockPublishUntilSubscriberAck keeps the events in order.
		ch := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, wlog)
		pub, sub = ch, ch
		closeTransport = func() { _ = ch.Close() }
	} else {
		p, err := relay.NewRedisStreamsPublisher(rdb, relay.RedisStreamsConfig{})
		if err != nil {
			return nil, fmt.Errorf("app: saga publisher: %w", err)
		}
		host, _ := os.Hostname()
		s, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
			Client: rdb, ConsumerGroup: sagaGroup, Consumer: host + "-" + strconv.Itoa(os.Getpid()),
		}, wlog)
		if err != nil {
			_ = p.Close()
			return nil, fmt.Errorf("app: saga subscriber: %w", err)
		}
		pub, sub = p, s
		if lease, err = relay.NewRedisLease(relay.RedisLeaseConfig{Redis: rdb, Key: relayLeaseKey}); err != nil {
			_ = s.Close()
			_ = p.Close()
			return nil, fmt.Errorf("app: saga relay lease: %w", err)
		}
		if dedup, err = consume.NewRedisDedup(consume.RedisDedupConfig{Redis: rdb, Prefix: sagaDedupPrefix}); err != nil {
			_ = s.Close()
			_ = p.Close()
			return nil, fmt.Errorf("app: saga dedup: %w", err)
		}
		closeTransport = func() { _ = s.Close(); _ = p.Close() }
	}
	sg, err := saga.New(saga.Config{
		Store: store, Registry: reg, Subscriber: sub, Publisher: pub, Dedup: dedup,
		Logger: log, Registerer: metrics,
	})
	if err != nil {
		closeTransport()
		return nil, fmt.Errorf("app: %w", err)
	}
	rl, err := relay.New(relay.Config{
		Name: "saga", Store: store, Publisher: pub, Lease: lease,
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
