package relay_test

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/alicebob/miniredis/v2"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/relay/consume"
	"github.com/redis/go-redis/v9"
)

// A relay forwarding an event store to an in-process GoChannel, and a consumer
// turning the messages back into records.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := memory.New()
	defer store.Close()
	// BlockPublishUntilSubscriberAck keeps the messages in order.
	pubsub := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, nil)
	defer pubsub.Close()
	messages, err := pubsub.Subscribe(ctx, "orders")
	if err != nil {
		panic(err)
	}

	r, err := relay.New(relay.Config{
		Store:      store,
		Publisher:  pubsub,
		Checkpoint: &relay.MemoryCheckpoint{},
		Topic:      "orders",
	})
	if err != nil {
		panic(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	_, err = store.Append(ctx, "order-42", eventstore.NoStream,
		eventstore.Event{Type: "order.placed", Data: []byte(`{"total":30}`),
			Metadata: eventstore.Metadata{CorrelationID: "checkout-7"}},
		eventstore.Event{Type: "order.confirmed", Data: []byte(`{}`)},
	)
	if err != nil {
		panic(err)
	}
	for range 2 {
		msg := <-messages
		rec, err := consume.RecordFrom(msg)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s v%d %s at %s %s correlation=%q\n",
			rec.StreamID, rec.Version, rec.Type, rec.Position, rec.Data, rec.Metadata.CorrelationID)
		msg.Ack()
	}
	cancel()
	fmt.Println("run:", <-done)
	// Output:
	// order-42 v1 order.placed at 1 {"total":30} correlation="checkout-7"
	// order-42 v2 order.confirmed at 2 {} correlation=""
	// run: <nil>
}

// A relay publishing to Redis Streams with one round trip per batch, read back
// by watermill-redisstream's Subscriber. (Redis here is miniredis, so that the
// example runs anywhere; use redis.NewClient(&redis.Options{Addr: ...}).)
func ExampleNewRedisStreamsPublisher() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := miniredis.NewMiniRedis()
	if err := srv.Start(); err != nil {
		panic(err)
	}
	defer srv.Close()
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer client.Close()
	store := memory.New()
	defer store.Close()

	pub, err := relay.NewRedisStreamsPublisher(client, relay.RedisStreamsConfig{DefaultMaxlen: 100_000})
	if err != nil {
		panic(err)
	}
	defer pub.Close() // leaves client open
	r, err := relay.New(relay.Config{Store: store, Publisher: pub, Topic: "orders",
		Checkpoint: relay.NewRedisCheckpoint(client, "relay:orders:checkpoint")})
	if err != nil {
		panic(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	_, err = store.Append(ctx, "order-42", eventstore.NoStream,
		eventstore.Event{Type: "order.placed", Data: []byte(`{"total":30}`)},
		eventstore.Event{Type: "order.confirmed", Data: []byte(`{}`)},
	)
	if err != nil {
		panic(err)
	}

	// The subscriber closes the client it is given.
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client: redis.NewClient(&redis.Options{Addr: srv.Addr()}), ConsumerGroup: "billing"}, nil)
	if err != nil {
		panic(err)
	}
	defer sub.Close()
	messages, err := sub.Subscribe(ctx, "orders")
	if err != nil {
		panic(err)
	}
	for range 2 {
		msg := <-messages
		rec, err := consume.RecordFrom(msg)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s v%d %s %s\n", rec.StreamID, rec.Version, rec.Type, rec.Data)
		msg.Ack()
	}
	cancel()
	fmt.Println("run:", <-done)
	// Output:
	// order-42 v1 order.placed {"total":30}
	// order-42 v2 order.confirmed {}
	// run: <nil>
}
