package app

import (
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/domain/customer"
	"github.com/eventline/eventline/sample/domain/order"
)

// NewRegistry returns a Registry with every event type of the sample: carts,
// orders and customers.
func NewRegistry() *eventstore.Registry {
	reg := eventstore.NewRegistry()
	cart.RegisterEvents(reg)
	order.RegisterEvents(reg)
	customer.RegisterEvents(reg)
	return reg
}
