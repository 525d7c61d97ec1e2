package main

import (
	"testing"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/command/commandtest"
)

func TestStock(t *testing.T) {
	// Given past events, when a command, then the events it decides...
	commandtest.For(t, Stock).
		Given(Received{Quantity: 5}).
		When(Ship{Quantity: 2}).
		Then(Shipped{Quantity: 2})
	// ...or the rule it breaks...
	commandtest.For(t, Stock).
		Given(Received{Quantity: 5}, Shipped{Quantity: 4}).
		When(Ship{Quantity: 2}).
		ThenError(ErrNotEnoughStock)
	commandtest.For(t, Stock).
		When(Receive{Quantity: 0}).
		ThenError(ErrInvalidQuantity)
	// ...or the state it leads to.
	commandtest.For(t, Stock).
		Given(Received{Quantity: 5}).
		When(Receive{Quantity: 3}).
		ThenState(Item{OnHand: 8})
}

func TestStockHandler(t *testing.T) {
	// The same, through a command.Handler on a store: given the events of a
	// stream, when a command is handled, then the events it appended.
	commandtest.ForHandler(t, Stock, NewRegistry(), command.Config{Name: "stock"}).
		Given("apple", Received{Quantity: 5}).
		When("apple", Ship{Quantity: 2}).
		ThenAppended(Shipped{Quantity: 2})
	commandtest.ForHandler(t, Stock, NewRegistry(), command.Config{Name: "stock"}).
		Given("apple", Received{Quantity: 1}).
		When("apple", Ship{Quantity: 2}).
		ThenError(ErrNotEnoughStock)
}
