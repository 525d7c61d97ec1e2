package readmodel_test

import (
	"fmt"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/domain/customer"
	"github.com/eventline/eventline/sample/domain/order"
	"github.com/eventline/eventline/sample/readmodel"
)

// The sample's projections and the events each one reads; run each with a
// projection.Runner.
func ExampleProjections() {
	reg := eventstore.NewRegistry()
	cart.RegisterEvents(reg)
	order.RegisterEvents(reg)
	customer.RegisterEvents(reg)
	for _, p := range readmodel.Projections(reg) {
		fmt.Println(p.Name(), p.Version(), p.Handles())
	}
	// Output:
	// carts 2 [cart.opened cart.item_added cart.quantity_changed cart.item_removed cart.checked_out cart.reopened]
	// customers 1 [cart.opened cart.checked_out customer.registered customer.credit_reserved customer.credit_released]
	// products 2 [cart.checked_out cart.reopened]
	// orders 2 [cart.checked_out order.placed order.confirmed order.rejected]
}
