package eventstore_test

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
)

// Append events to a stream, expecting it to be new, then read the stream and
// decode its events with a Registry.
func Example() {
	ctx := context.Background()
	store := memory.New()
	defer store.Close()

	registry := eventstore.NewRegistry()
	eventstore.Register[itemAdded](registry, "cart.item_added.v2")
	eventstore.Register[cartClosed](registry, "cart.closed")

	var events []eventstore.Event
	for _, v := range []any{itemAdded{SKU: "tea", Quantity: 2}, cartClosed{}} {
		e, err := registry.Encode(v)
		if err != nil {
			fmt.Println(err)
			return
		}
		events = append(events, e)
	}
	res, err := store.Append(ctx, "cart-1", eventstore.NoStream, events...)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("appended versions %d to %d, position %s\n", res.FirstVersion, res.LastVersion, res.Position)

	// A second writer that still expects a new stream is refused.
	_, err = store.Append(ctx, "cart-1", eventstore.NoStream, events...)
	fmt.Println(err)

	for rec, err := range store.ReadStream(ctx, "cart-1", 1) {
		if err != nil {
			fmt.Println(err)
			return
		}
		v, err := registry.Decode(rec)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("version %d at %s: %s %+v\n", rec.Version, rec.Position, rec.Type, v)
	}
	// Output:
	// appended versions 1 to 2, position 2
	// eventstore: wrong expected version for stream "cart-1": expected no stream, actual 2
	// version 1 at 1: cart.item_added.v2 {SKU:tea Quantity:2}
	// version 2 at 2: cart.closed {}
}

// Two subscriptions through a SharedLog, as two projection runners of one
// process would use it: one reading of the log feeds both, and each sees every
// record once, in order.
func ExampleNewSharedLog() {
	ctx := context.Background()
	store := memory.New()
	defer store.Close()
	for _, stream := range []string{"cart-1", "cart-2", "cart-1"} {
		if _, err := store.Append(ctx, stream, eventstore.Any, eventstore.Event{Type: "cart.touched"}); err != nil {
			fmt.Println(err)
			return
		}
	}

	log := eventstore.NewSharedLog(store, eventstore.SharedLogOptions{})
	seen := make([][]string, 2)
	var wg sync.WaitGroup
	for i := range seen {
		wg.Go(func() {
			for rec, err := range log.Subscribe(ctx, eventstore.Position{}) {
				if err != nil {
					return
				}
				seen[i] = append(seen[i], rec.Position.String()+":"+rec.StreamID)
				if rec.Position.Commit == 3 {
					return // a runner would go on following the head
				}
			}
		})
	}
	wg.Wait()
	fmt.Println(strings.Join(seen[0], " "))
	fmt.Println(strings.Join(seen[1], " "))
	// Output:
	// 1:cart-1 2:cart-2 3:cart-1
	// 1:cart-1 2:cart-2 3:cart-1
}
