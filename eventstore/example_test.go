package eventstore_test

import (
	"context"
	"fmt"

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
