package consume_test

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/relay/consume"
	"github.com/google/uuid"
)

// A consumer router that handles an event once although the transport
// delivers it twice, as an at-least-once relay may.
func ExampleNewRouter() {
	// Publish waits for the handler's ack, so the two deliveries are
	// handled one after the other.
	pubsub := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, nil)
	defer pubsub.Close()
	dedup, err := consume.NewMemoryDedup(consume.MemoryDedupConfig{})
	if err != nil {
		panic(err)
	}
	router, err := consume.NewRouter(consume.RouterConfig{Dedup: dedup, PoisonPublisher: pubsub})
	if err != nil {
		panic(err)
	}
	router.AddConsumerHandler("billing", "orders", pubsub, func(msg *message.Message) error {
		rec, err := consume.RecordFrom(msg)
		if err != nil {
			return consume.Permanent(err) // a malformed message: no retry
		}
		fmt.Printf("handled %s %s v%d\n", rec.Type, rec.StreamID, rec.Version)
		return nil
	})
	go func() { _ = router.Run(context.Background()) }()
	<-router.Running()
	defer router.Close()

	rec := eventstore.Record{
		Event:    eventstore.Event{ID: uuid.New(), Type: "order.placed", Data: []byte(`{}`)},
		StreamID: "order-42", Version: 1, Position: eventstore.Position{Commit: 7, Prepare: 7}, RecordedAt: time.Now(),
	}
	for range 2 {
		if err := pubsub.Publish("orders", relay.NewMessage(context.Background(), rec)); err != nil {
			panic(err)
		}
	}
	// Output:
	// handled order.placed order-42 v1
}
