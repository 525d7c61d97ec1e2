package saga_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/domain/customer"
	"github.com/eventline/eventline/sample/domain/order"
	"github.com/eventline/eventline/sample/saga"
)

// The saga in one process, as `cart serve` runs it: the relay forwards the
// store's events to a GoChannel, the saga reacts with commands.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := eventstore.NewRegistry()
	cart.RegisterEvents(reg)
	order.RegisterEvents(reg)
	customer.RegisterEvents(reg)
	store := memory.New()
	defer store.Close()
	pubsub := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, nil)
	defer pubsub.Close()

	s, err := saga.New(saga.Config{Store: store, Registry: reg, Subscriber: pubsub, Publisher: pubsub, Logger: quiet})
	if err != nil {
		panic(err)
	}
	sagaDone := make(chan error, 1)
	go func() { sagaDone <- s.Run(ctx) }()
	<-s.Running() // GoChannel drops what nobody subscribed to yet
	r, err := relay.New(relay.Config{Store: store, Publisher: pubsub, Checkpoint: &relay.MemoryCheckpoint{}, Logger: quiet})
	if err != nil {
		panic(err)
	}
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(ctx) }()

	// What the command API does for POST /customers and the cart requests.
	customers, _ := command.NewHandler(store, reg, customer.Decider, command.Config{Name: "customer"})
	carts, _ := command.NewHandler(store, reg, cart.Decider, command.Config{Name: "cart"})
	for _, c := range []struct {
		id  string
		cmd customer.Command
	}{{"ann", customer.Register{CreditLimitCents: 1000}}, {"bob", customer.Register{CreditLimitCents: 100}}} {
		if _, err := customers.Handle(ctx, c.id, c.cmd); err != nil {
			panic(err)
		}
	}
	for _, c := range []struct{ cart, customer, order string }{{"c1", "ann", "o1"}, {"c2", "bob", "o2"}} {
		for _, cmd := range []cart.Command{
			cart.Open{CustomerID: c.customer},
			cart.AddItem{ProductID: "apple", Quantity: 3, UnitPriceCents: 150},
			cart.CheckOut{OrderID: c.order},
		} {
			if _, err := carts.Handle(ctx, c.cart, cmd); err != nil {
				panic(err)
			}
		}
	}

	// Poll the order's state until the saga has decided (a read model would
	// show "pending" meanwhile). Handling the same Confirm/Reject again would
	// change nothing, so reading the stream is enough here.
	deadline := time.Now().Add(30 * time.Second)
	for _, id := range []string{"o1", "o2"} {
		for {
			s := order.Decider.Initial()
			for rec, err := range store.ReadStream(ctx, "order-"+id, 1) {
				if err != nil {
					break
				}
				e, _ := reg.Decode(rec)
				s = order.Evolve(s, e.(order.Event))
			}
			if s.Status == order.StatusConfirmed || s.Status == order.StatusRejected {
				fmt.Println(strings.TrimSpace(fmt.Sprintln(id, s.Status, s.Reason)))
				break
			}
			if time.Now().After(deadline) {
				fmt.Println(id, "still", s.Status, "after 30s")
				break
			}
			time.Sleep(time.Millisecond) // polling interval, bounded by deadline
		}
	}
	cancel()
	fmt.Println("relay:", <-relayDone, "saga:", <-sagaDone)
	// Output:
	// o1 confirmed
	// o2 rejected credit limit exceeded: 450 cents requested, 100 available
	// relay: <nil> saga: <nil>
}
