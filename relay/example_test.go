package relay_test

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/relay"
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
		rec, err := relay.RecordFrom(msg)
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
