package order

import "github.com/eventline/eventline/eventstore"

// Event is something that happened to an order: Placed, Confirmed or
// Rejected.
type Event interface{ isOrderEvent() }

// Placed is the first event of an order, which is then pending.
type Placed struct {
	OrderID    string `json:"order_id"`
	CartID     string `json:"cart_id"`
	CustomerID string `json:"customer_id"`
	Items      []Line `json:"items"`
	TotalCents int64  `json:"total_cents"`
}

// Confirmed ends a pending order successfully.
type Confirmed struct{}

// Rejected ends a pending order unsuccessfully.
type Rejected struct {
	Reason string `json:"reason"`
}

func (Placed) isOrderEvent()    {}
func (Confirmed) isOrderEvent() {}
func (Rejected) isOrderEvent()  {}

// Type names of the order's events in the log. They are stable.
const (
	TypePlaced    = "order.placed"
	TypeConfirmed = "order.confirmed"
	TypeRejected  = "order.rejected"
)

// RegisterEvents maps every order event to its type name in reg.
func RegisterEvents(reg *eventstore.Registry) {
	eventstore.Register[Placed](reg, TypePlaced)
	eventstore.Register[Confirmed](reg, TypeConfirmed)
	eventstore.Register[Rejected](reg, TypeRejected)
}
