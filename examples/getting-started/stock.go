package main

import (
	"errors"
	"fmt"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
)

// Item is the state of one stock-keeping unit: the units on hand.
type Item struct {
	OnHand int
}

// Command is what a client asks of an item.
type Command interface{ isCommand() }

// Receive records units arriving at the warehouse.
type Receive struct{ Quantity int }

// Ship takes units out of stock.
type Ship struct{ Quantity int }

func (Receive) isCommand() {}
func (Ship) isCommand()    {}

// Event is what happened to an item.
type Event interface{ isEvent() }

// Received says that units arrived.
type Received struct{ Quantity int }

// Shipped says that units left.
type Shipped struct{ Quantity int }

func (Received) isEvent() {}
func (Shipped) isEvent()  {}

// The domain's refusals.
var (
	ErrInvalidQuantity = errors.New("quantity must be positive")
	ErrNotEnoughStock  = errors.New("not enough stock")
)

// Stock is the domain logic: pure functions, no I/O, no framework type but
// the Decider.
var Stock = command.Decider[Item, Command, Event]{
	Initial: func() Item { return Item{} },
	Decide: func(s Item, c Command) ([]Event, error) {
		switch c := c.(type) {
		case Receive:
			if c.Quantity <= 0 {
				return nil, ErrInvalidQuantity
			}
			return []Event{Received(c)}, nil
		case Ship:
			if c.Quantity <= 0 {
				return nil, ErrInvalidQuantity
			}
			if c.Quantity > s.OnHand {
				return nil, fmt.Errorf("%w: %d on hand, %d asked", ErrNotEnoughStock, s.OnHand, c.Quantity)
			}
			return []Event{Shipped(c)}, nil
		}
		return nil, fmt.Errorf("unknown command %T", c)
	},
	Evolve: func(s Item, e Event) Item {
		switch e := e.(type) {
		case Received:
			s.OnHand += e.Quantity
		case Shipped:
			s.OnHand -= e.Quantity
		}
		return s
	},
}

// NewRegistry names the events in the store. The names are a stored
// contract: rename a Go type freely, never its name here.
func NewRegistry() *eventstore.Registry {
	reg := eventstore.NewRegistry()
	eventstore.Register[Received](reg, "stock.received")
	eventstore.Register[Shipped](reg, "stock.shipped")
	return reg
}
