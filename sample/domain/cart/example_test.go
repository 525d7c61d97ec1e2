package cart_test

import (
	"errors"
	"fmt"

	"github.com/eventline/eventline/sample/domain/cart"
)

// The decider alone: fold the cart's past events, decide a command, and fold
// the decided events. A command.Handler does the same around a store.
func Example() {
	state := cart.Decider.Fold(
		cart.Opened{CustomerID: "ann"},
		cart.ItemAdded{ProductID: "apple", Quantity: 2, UnitPriceCents: 150},
	)

	events, err := cart.Decide(state, cart.AddItem{ProductID: "apple", Quantity: 1, UnitPriceCents: 150})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range events {
		state = cart.Evolve(state, e)
	}
	fmt.Printf("%d × %s, total %d cents\n", state.Lines[0].Quantity, state.Lines[0].ProductID, state.TotalCents)

	events, _ = cart.Decide(state, cart.CheckOut{OrderID: "order-7"})
	fmt.Printf("%+v\n", events[0])
	state = cart.Evolve(state, events[0])

	_, err = cart.Decide(state, cart.RemoveItem{ProductID: "apple"})
	fmt.Println(err)
	fmt.Println(errors.Is(err, cart.ErrCheckedOut), errors.Is(err, cart.ErrRuleViolated))
	// Output:
	// 3 × apple, total 450 cents
	// {OrderID:order-7 CustomerID:ann Items:[{ProductID:apple Quantity:3 UnitPriceCents:150}] TotalCents:450}
	// cart: checked out: for order "order-7"
	// true true
}
